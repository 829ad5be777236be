package nsq_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/nsq"
)

// fakeNSQD serves one connection with a scripted handshake: what Tern's nsqd cannot offer
// (TLS, AUTH) is tested against it.
type fakeNSQD struct {
	t        *testing.T
	ln       net.Listener
	ident    protocol.IdentifyResponse
	cert     *tls.Certificate
	secret   string      // the AUTH secret expected when ident.AuthRequired
	received chan string // the first command after the handshake, or an error text
}

func newFakeNSQD(t *testing.T, ident protocol.IdentifyResponse) *fakeNSQD {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeNSQD{t: t, ln: ln, ident: ident, received: make(chan string, 1)}
	t.Cleanup(func() { _ = ln.Close() })
	return f
}

func (f *fakeNSQD) serve() {
	nc, err := f.ln.Accept()
	if err != nil {
		f.received <- "accept: " + err.Error()
		return
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := f.session(nc); err != nil {
		f.received <- "error: " + err.Error()
	}
}

func (f *fakeNSQD) session(nc net.Conn) error {
	var rw io.ReadWriter = nc
	r := bufio.NewReader(rw)
	magic := make([]byte, 4)
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != protocol.MagicV2 {
		return errors.New("bad magic")
	}
	if _, err := readCommand(r, "IDENTIFY"); err != nil {
		return err
	}
	resp, _ := json.Marshal(f.ident)
	if _, err := rw.Write(protocol.AppendFrame(nil, protocol.FrameTypeResponse, resp)); err != nil {
		return err
	}
	if f.ident.TLSv1 {
		tc := tls.Server(nc, &tls.Config{Certificates: []tls.Certificate{*f.cert}})
		if err := tc.Handshake(); err != nil {
			return err
		}
		rw = tc
		r = bufio.NewReader(tc)
		if _, err := rw.Write(protocol.AppendFrame(nil, protocol.FrameTypeResponse, []byte("OK"))); err != nil {
			return err
		}
	}
	if f.ident.AuthRequired {
		secret, err := readCommand(r, "AUTH")
		if err != nil {
			return err
		}
		if string(secret) != f.secret {
			_, _ = rw.Write(protocol.AppendFrame(nil, protocol.FrameTypeError, []byte("E_AUTH_FAILED AUTH failed")))
			return nil
		}
		ok := []byte(`{"identity":"tester","identity_url":"","permission_count":1}`)
		if _, err := rw.Write(protocol.AppendFrame(nil, protocol.FrameTypeResponse, ok)); err != nil {
			return err
		}
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	body, err := protocol.ReadBody(r, nil, 1<<20, protocol.ErrBadBody, "PUB")
	if err != nil {
		return err
	}
	f.received <- strings.TrimSpace(line) + " " + string(body)
	_, err = rw.Write(protocol.AppendFrame(nil, protocol.FrameTypeResponse, []byte("OK")))
	return err
}

// readCommand reads a command line that must be name, and its body.
func readCommand(r *bufio.Reader, name string) ([]byte, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(line) != name {
		return nil, errors.New("expected " + name + ", got " + line)
	}
	return protocol.ReadBody(r, nil, 1<<20, protocol.ErrBadBody, name)
}

// selfSigned returns a certificate for 127.0.0.1 and a pool trusting it.
func selfSigned(t *testing.T) (*tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "fake nsqd"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func TestHandshakeTLSAndAuth(t *testing.T) {
	t.Parallel()
	cert, pool := selfSigned(t)
	cases := []struct {
		name      string
		ident     protocol.IdentifyResponse
		tls       bool
		secret    string // what the client sends
		wantErr   string // substring of the publish error; empty for success
		wantRecvd string
	}{
		{"TLS", protocol.IdentifyResponse{TLSv1: true}, true, "", "", "PUB t hello"},
		{"TLS and AUTH", protocol.IdentifyResponse{TLSv1: true, AuthRequired: true}, true, "s3cret", "", "PUB t hello"},
		{"AUTH in the clear", protocol.IdentifyResponse{AuthRequired: true}, false, "s3cret", "", "PUB t hello"},
		{"AUTH refused", protocol.IdentifyResponse{AuthRequired: true}, false, "wrong", "E_AUTH_FAILED", ""},
		{"AUTH without a secret", protocol.IdentifyResponse{AuthRequired: true}, false, "", "AuthSecret is empty", ""},
		{"TLS wanted, not offered", protocol.IdentifyResponse{}, true, "", "does not offer TLS", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeNSQD(t, tc.ident)
			f.cert, f.secret = cert, "s3cret"
			go f.serve()
			cfg := nsq.NewConfig()
			if tc.tls {
				cfg.TLS = &tls.Config{RootCAs: pool}
			}
			cfg.AuthSecret = tc.secret
			p := newProducer(t, f.ln.Addr().String(), cfg)
			err := p.Publish(ctxTimeout(t, 500*time.Millisecond), "t", []byte("hello"))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, nsq.ErrNotConnected) {
					t.Fatalf("err = %v, want ErrNotConnected mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := <-f.received; got != tc.wantRecvd {
				t.Fatalf("server received %q, want %q", got, tc.wantRecvd)
			}
		})
	}
}
