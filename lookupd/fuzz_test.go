package lookupd

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/protocol"
)

// scriptConn is a net.Conn that reads a fixed input and records what is written.
type scriptConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (c *scriptConn) Read(p []byte) (int, error)  { return c.in.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error) { return c.out.Write(p) }
func (c *scriptConn) Close() error                { return nil }
func (c *scriptConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4160}
}
func (c *scriptConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
}
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// fuzzSeeds are whole connections: the magic, then commands.
func fuzzSeeds() [][]byte {
	identify := func(body string) []byte {
		return protocol.AppendV1Response([]byte("IDENTIFY\n"), []byte(body))
	}
	good := `{"broadcast_address":"h","tcp_port":4150,"http_port":4151,"version":"1.3.0"}`
	session := func(parts ...[]byte) []byte {
		return bytes.Join(append([][]byte{[]byte(protocol.MagicV1)}, parts...), nil)
	}
	return [][]byte{
		session([]byte("PING\n")),
		session(identify(good), []byte("REGISTER t c\nREGISTER t\nPING\nUNREGISTER t c\nUNREGISTER t\n")),
		session(identify(good), []byte("REGISTER e#ephemeral c#ephemeral\nUNREGISTER e#ephemeral\n")),
		session(identify(good), identify(good)),
		session(identify(`{"tcp_port":"x"}`)),
		session([]byte("IDENTIFY\n\xff\xff\xff\xff")),
		session([]byte("IDENTIFY\n\x7f\xff\xff\xff")),
		session([]byte("IDENTIFY\n\x00\x00\x00\x10{}")),
		session([]byte("REGISTER t\n")),
		session([]byte(strings.Repeat("x", 3000) + "\n")),
		session([]byte("\r\n \n")),
		[]byte("  V2PING\n"),
		[]byte("  V"),
		nil,
	}
}

// FuzzV1Conn runs whole V1 connections from arbitrary input and checks that lookupd never
// panics, answers only in well-formed [size][data] answers, sends an error only as the last
// answer, and leaves no trace of the peer in the registry once the connection is gone.
func FuzzV1Conn(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	opts := NewOptions()
	opts.TCPAddress, opts.HTTPAddress = "127.0.0.1:0", "127.0.0.1:0"
	l, err := New(opts, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		_ = l.tcpListener.Close()
		_ = l.httpListener.Close()
	})
	f.Fuzz(func(t *testing.T, input []byte) {
		conn := &scriptConn{in: bytes.NewReader(input)}
		id := l.nextPeerID.Add(1)
		l.handleConn(id, conn)

		out := conn.out.Bytes()
		var answers []string
		for len(out) > 0 {
			if len(out) < 4 {
				t.Fatalf("trailing %d bytes after %q", len(out), answers)
			}
			n := binary.BigEndian.Uint32(out)
			if uint64(n) > uint64(len(out)-4) {
				t.Fatalf("answer size %d with %d bytes left", n, len(out)-4)
			}
			answers = append(answers, string(out[4:4+n]))
			out = out[4+n:]
		}
		for i, a := range answers {
			if strings.HasPrefix(a, "E_") {
				if i != len(answers)-1 {
					t.Fatalf("error %q followed by more answers: %q", a, answers)
				}
				continue
			}
			if a != protocol.OK && !json.Valid([]byte(a)) {
				t.Fatalf("answer %q is neither OK, JSON nor an error", a)
			}
		}
		l.db.mu.RLock()
		_, left := l.db.byPeer[id]
		l.db.mu.RUnlock()
		if left {
			t.Fatal("the peer is still registered after its connection ended")
		}
		if l.connCount() != 0 {
			t.Fatal("the connection is still tracked")
		}
	})
}

func TestFuzzSeedsCoverErrors(t *testing.T) {
	// The seeds exercise both outcomes the fuzz target checks; this keeps them honest.
	var sawError, sawOK bool
	opts := NewOptions()
	opts.TCPAddress, opts.HTTPAddress = "127.0.0.1:0", "127.0.0.1:0"
	l, err := New(opts, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = l.tcpListener.Close()
		_ = l.httpListener.Close()
	})
	for _, s := range fuzzSeeds() {
		conn := &scriptConn{in: bytes.NewReader(s)}
		l.handleConn(l.nextPeerID.Add(1), conn)
		sawError = sawError || bytes.Contains(conn.out.Bytes(), []byte("E_"))
		sawOK = sawOK || bytes.Contains(conn.out.Bytes(), []byte(protocol.OK))
	}
	if !sawError || !sawOK {
		t.Fatalf("seeds produced an error: %v, an OK: %v", sawError, sawOK)
	}
	assertIndexConsistent(t, l.db)
}
