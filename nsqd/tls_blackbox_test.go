package nsqd_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	nsq "github.com/nsqio/go-nsq"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/nsqd"
	"github.com/ternmq/tern/nsqd/nsqdtest"
)

// tlsNSQD starts an nsqd with a server certificate from ca and the given client auth policy
// and --tls-required, with HTTP and HTTPS.
func tlsNSQD(t *testing.T, ca *testutil.CA, policy, required string) *nsqd.NSQD {
	t.Helper()
	cert, key, _ := ca.Issue(t, testutil.CertOptions{})
	return nsqdtest.Start(t, func(o *nsqd.Options) {
		o.TLSCert, o.TLSKey, o.TLSRootCAFile = cert, key, ca.File
		o.TLSClientAuthPolicy, o.TLSRequired = policy, required
	})
}

// tlsConfig is a go-nsq client configuration over TLS, trusting ca, with an optional client
// certificate.
func tlsConfig(ca *testutil.CA, cert *tls.Certificate) *nsq.Config {
	cfg := nsq.NewConfig()
	cfg.TlsV1 = true
	cfg.TlsConfig = &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.TlsConfig.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

// TestTLSGoNSQ: go-nsq upgrades to TLS, alone and under snappy or deflate, publishes and
// consumes, and /stats shows the sessions.
func TestTLSGoNSQ(t *testing.T) {
	t.Parallel()
	ca := testutil.NewCA(t, "tern-test")
	for _, tc := range []struct {
		name string
		set  func(*nsq.Config)
	}{
		{"tls", func(*nsq.Config) {}},
		{"tls and snappy", func(c *nsq.Config) { c.Snappy = true }},
		{"tls and deflate", func(c *nsq.Config) { c.Deflate, c.DeflateLevel = true, 6 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := tlsNSQD(t, ca, "", "true")
			addr := d.TCPAddr().String()
			pcfg := tlsConfig(ca, nil)
			tc.set(pcfg)
			p := newProducer(t, addr, pcfg)
			var bodies []string
			for i := range 50 {
				bodies = append(bodies, fmt.Sprintf("secret %d %s", i, strings.Repeat("x", i*10)))
				must(t, p.Publish("sealed", []byte(bodies[i])))
			}
			ccfg := tlsConfig(ca, nil)
			tc.set(ccfg)
			ccfg.MaxInFlight = 10
			col := &collector{}
			newConsumer(t, addr, "sealed", "ch", ccfg, col, 1)
			col.waitFor(t, len(bodies), 10*time.Second)
			checkExactlyOnce(t, col.bodies(), bodies)

			cs, ok := d.ChannelStats("sealed", "ch")
			if !ok || len(cs.Clients) != 1 {
				t.Fatalf("channel stats: %+v", cs)
			}
			c := cs.Clients[0]
			if !c.TLS || c.TLSVersion != "TLS1.3" || c.CipherSuite == "" || c.Snappy != ccfg.Snappy || c.Deflate != ccfg.Deflate {
				t.Errorf("the consumer's stats: tls %v %q %q snappy %v deflate %v", c.TLS, c.TLSVersion, c.CipherSuite, c.Snappy, c.Deflate)
			}
		})
	}
}

// TestTLSRequired: with --tls-required, a plaintext client may IDENTIFY and nothing else, and
// gets NSQ's error; plain HTTP answers 403 with the HTTPS port, HTTPS serves. With tcp-https
// plain HTTP serves.
func TestTLSRequired(t *testing.T) {
	t.Parallel()
	ca := testutil.NewCA(t, "tern-test")
	https := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	t.Cleanup(https.CloseIdleConnections)
	get := func(c *http.Client, url string) (int, string) {
		t.Helper()
		resp, err := c.Get(url)
		must(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}

	d := tlsNSQD(t, ca, "", "true")
	c := dialRaw(t, d.TCPAddr().String())
	must(t, c.Send(protocol.Publish("t", []byte("in the clear"))))
	must(t, c.ExpectError("E_INVALID cannot PUB in current state (TLS required)"))
	must(t, c.ExpectClosed())
	if _, ok := d.TopicStats("t"); ok {
		t.Error("a plaintext PUB created the topic")
	}
	_, httpsPort, _ := strings.Cut(d.HTTPSAddr().String(), "127.0.0.1:")
	code, body := get(http.DefaultClient, "http://"+d.HTTPAddr().String()+"/ping")
	if code != 403 || body != `{"message":"TLS_REQUIRED","https_port":`+httpsPort+`}` {
		t.Errorf("plain HTTP with TLS required: %d %s", code, body)
	}
	if code, body := get(https, "https://"+d.HTTPSAddr().String()+"/ping"); code != 200 || body != "OK" {
		t.Errorf("HTTPS: %d %s", code, body)
	}

	d2 := tlsNSQD(t, ca, "", "tcp-https")
	c2 := dialRaw(t, d2.TCPAddr().String())
	must(t, c2.Send(protocol.Publish("t", []byte("in the clear"))))
	must(t, c2.ExpectError("E_INVALID cannot PUB in current state (TLS required)"))
	if code, body := get(http.DefaultClient, "http://"+d2.HTTPAddr().String()+"/ping"); code != 200 || body != "OK" {
		t.Errorf("plain HTTP with tcp-https: %d %s", code, body)
	}

	// Without --tls-required, TLS is offered and plaintext still served.
	d3 := tlsNSQD(t, ca, "", "false")
	c3 := dialRaw(t, d3.TCPAddr().String())
	must(t, c3.Publish("t", "fine"))
	p := newProducer(t, d3.TCPAddr().String(), tlsConfig(ca, nil))
	must(t, p.Publish("t", []byte("sealed")))
}

// TestTLSClientCertificates checks --tls-client-auth-policy: require-verify accepts only a
// valid certificate of the root CA, require any certificate; a refused client gets nothing
// and the daemon serves the next.
func TestTLSClientCertificates(t *testing.T) {
	t.Parallel()
	ca := testutil.NewCA(t, "tern-test")
	stranger := testutil.NewCA(t, "stranger")
	_, _, good := ca.Issue(t, testutil.CertOptions{Client: true, Name: "client"})
	_, _, expired := ca.Issue(t, testutil.CertOptions{Client: true, Name: "old", Expired: true})
	_, _, untrusted := stranger.Issue(t, testutil.CertOptions{Client: true, Name: "mallory"})
	verify := tlsNSQD(t, ca, "require-verify", "")
	// Without a root CA, so that the handshake lists no acceptable authorities: Go's client
	// offers only a certificate of an authority the server lists.
	serverCert, serverKey, _ := ca.Issue(t, testutil.CertOptions{})
	anyCert := nsqdtest.Start(t, func(o *nsqd.Options) {
		o.TLSCert, o.TLSKey, o.TLSClientAuthPolicy = serverCert, serverKey, "require"
	})
	for _, tc := range []struct {
		name string
		d    *nsqd.NSQD
		cert *tls.Certificate
		ok   bool
	}{
		{"require-verify, no certificate", verify, nil, false},
		{"require-verify, untrusted", verify, &untrusted, false},
		{"require-verify, expired", verify, &expired, false},
		{"require-verify, valid", verify, &good, true},
		{"require, no certificate", anyCert, nil, false},
		{"require, untrusted", anyCert, &untrusted, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProducer(t, tc.d.TCPAddr().String(), tlsConfig(ca, tc.cert))
			err := p.Publish("t", []byte("x"))
			if (err == nil) != tc.ok {
				t.Errorf("publish: %v, want ok %v", err, tc.ok)
			}
		})
	}
	// The policy implies --tls-required: no plaintext either.
	c := dialRaw(t, verify.TCPAddr().String())
	must(t, c.Send(protocol.Publish("t", []byte("x"))))
	must(t, c.ExpectError("E_INVALID cannot PUB in current state (TLS required)"))
}

// TestTLSReload: new certificates are served after Reload (SIGHUP) and after the files change
// by themselves, while an established TLS connection goes on.
func TestTLSReload(t *testing.T) {
	t.Parallel()
	ca := testutil.NewCA(t, "tern-test")
	certFile, keyFile, _ := ca.Issue(t, testutil.CertOptions{Name: "first"})
	d := nsqdtest.Start(t, func(o *nsqd.Options) { o.TLSCert, o.TLSKey = certFile, keyFile })
	served := func() string {
		conn, err := tls.Dial("tcp", d.HTTPSAddr().String(), &tls.Config{RootCAs: ca.Pool()})
		if err != nil {
			return err.Error()
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := served(); got != "first" {
		t.Fatalf("served %q", got)
	}
	p := newProducer(t, d.TCPAddr().String(), tlsConfig(ca, nil))
	must(t, p.Publish("t", []byte("before")))

	replace := func(name string) {
		c, k, _ := ca.Issue(t, testutil.CertOptions{Name: name})
		for _, f := range [][2]string{{c, certFile}, {k, keyFile}} {
			b, err := os.ReadFile(f[0])
			must(t, err)
			must(t, os.WriteFile(f[1]+".new", b, 0o600))
			must(t, os.Rename(f[1]+".new", f[1]))
		}
	}
	replace("second")
	must(t, d.Reload())
	if got := served(); got != "second" {
		t.Errorf("after Reload, served %q", got)
	}
	replace("third")
	testutil.Eventually(t, 10*time.Second, func() bool { return served() == "third" }, "the changed files are served: %s", served)
	must(t, p.Publish("t", []byte("after"))) // the connection made with the first certificate

	// Garbage in the files: the reload fails and the last good certificate stays.
	must(t, os.WriteFile(certFile, []byte("not a certificate"), 0o600))
	if err := d.Reload(); err == nil {
		t.Error("a reload of garbage succeeded")
	}
	if got := served(); got != "third" {
		t.Errorf("after a failed reload, served %q", got)
	}
}

// TestTLSExpiredServerCertificate: a client refuses an nsqd whose certificate has expired,
// rather than publishing to it.
func TestTLSExpiredServerCertificate(t *testing.T) {
	t.Parallel()
	ca := testutil.NewCA(t, "tern-test")
	cert, key, _ := ca.Issue(t, testutil.CertOptions{Expired: true})
	d := nsqdtest.Start(t, func(o *nsqd.Options) { o.TLSCert, o.TLSKey, o.TLSRequired = cert, key, "true" })
	p := newProducer(t, d.TCPAddr().String(), tlsConfig(ca, nil))
	if err := p.Publish("t", []byte("x")); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("publish to an nsqd with an expired certificate: %v", err)
	}
	if _, ok := d.TopicStats("t"); ok {
		t.Error("the message was published")
	}
}
