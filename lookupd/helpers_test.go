package lookupd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/testutil"
)

// ioTimeout bounds every read and write a test does, so that a hang fails the test instead of
// stalling it.
const ioTimeout = 5 * time.Second

// startLookupd runs a Lookupd on 127.0.0.1:0 until the test ends. (Package lookupdtest does
// the same for other packages; it cannot be imported here.)
func startLookupd(t testing.TB, configure func(*Options)) *Lookupd {
	t.Helper()
	return startLookupdWith(t, configure, nil)
}

// startLookupdWith is startLookupd that runs before, when not nil, between New and Run, to
// set what the daemon reads once it starts (its timeouts).
func startLookupdWith(t testing.TB, configure func(*Options), before func(*Lookupd)) *Lookupd {
	t.Helper()
	opts := NewOptions()
	opts.TCPAddress = "127.0.0.1:0"
	opts.HTTPAddress = "127.0.0.1:0"
	opts.BroadcastAddress = "127.0.0.1"
	opts.LogLevel = "debug"
	if configure != nil {
		configure(opts)
	}
	l, err := New(opts, testutil.Logger(t), nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if before != nil {
		before(l)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return within 10s of cancel")
		}
	})
	return l
}

// testPeer is a raw V1 connection, playing nsqd.
type testPeer struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

// dial connects to l without sending anything.
func dial(t testing.TB, l *Lookupd) *testPeer {
	t.Helper()
	conn, err := net.DialTimeout("tcp", l.TCPAddr().String(), ioTimeout)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &testPeer{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// connect dials l and sends the V1 magic.
func connect(t testing.TB, l *Lookupd) *testPeer {
	t.Helper()
	p := dial(t, l)
	p.write([]byte(protocol.MagicV1))
	return p
}

func (p *testPeer) write(b []byte) {
	p.t.Helper()
	_ = p.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := p.conn.Write(b); err != nil {
		p.t.Fatalf("write: %v", err)
	}
}

// read reads one answer.
func (p *testPeer) read() (string, error) {
	_ = p.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	b, err := protocol.ReadV1Response(p.r, 1<<20)
	return string(b), err
}

// mustRead reads one answer, failing the test if there is none.
func (p *testPeer) mustRead() string {
	p.t.Helper()
	s, err := p.read()
	if err != nil {
		p.t.Fatalf("read answer: %v", err)
	}
	return s
}

// do sends a command and returns its answer.
func (p *testPeer) do(cmd *protocol.Command) string {
	p.t.Helper()
	p.write(cmd.AppendTo(nil))
	return p.mustRead()
}

// expectOK sends a command that must be answered OK.
func (p *testPeer) expectOK(cmd *protocol.Command) {
	p.t.Helper()
	if got := p.do(cmd); got != protocol.OK {
		p.t.Fatalf("%s answered %q, want OK", cmd, got)
	}
}

// identity is an IDENTIFY body for a fake nsqd on 127.0.0.1 with the given ports.
func identity(tcpPort, httpPort int) map[string]any {
	return map[string]any{
		"broadcast_address": "127.0.0.1",
		"tcp_port":          tcpPort,
		"http_port":         httpPort,
		"version":           "1.3.0",
		"hostname":          "test-host",
		"topology_zone":     "z1",
		"topology_region":   "r1",
	}
}

// identify sends IDENTIFY with body v and returns lookupd's answer, decoded.
func (p *testPeer) identify(v any) identifyResponse {
	p.t.Helper()
	cmd, err := protocol.Identify(v)
	if err != nil {
		p.t.Fatal(err)
	}
	ans := p.do(cmd)
	var resp identifyResponse
	if err := json.Unmarshal([]byte(ans), &resp); err != nil {
		p.t.Fatalf("IDENTIFY answered %q: %v", ans, err)
	}
	return resp
}

// registerPeer connects a fake nsqd with the given ports, identifies it and registers each
// "topic" or "topic/channel".
func registerPeer(t testing.TB, l *Lookupd, tcpPort, httpPort int, regs ...string) *testPeer {
	t.Helper()
	p := connect(t, l)
	p.identify(identity(tcpPort, httpPort))
	for _, r := range regs {
		topic, channel, _ := strings.Cut(r, "/")
		p.expectOK(protocol.Register(topic, channel))
	}
	return p
}

// expectClosed fails the test unless lookupd has closed the connection: the next read ends
// without an answer.
func (p *testPeer) expectClosed() {
	p.t.Helper()
	s, err := p.read()
	if err == nil {
		p.t.Fatalf("got answer %q, want the connection closed", s)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		p.t.Fatalf("connection still open after %v", ioTimeout)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !isReset(err) {
		p.t.Fatalf("read: %v, want EOF", err)
	}
}

// isReset reports a connection reset: lookupd closing with unread input makes the kernel
// reset the connection.
func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}

// httpDo sends a request to l's HTTP API and returns the status, the body and the headers.
func httpDo(t testing.TB, l *Lookupd, method, path string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+l.HTTPAddr().String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.nsq; version=1.0")
	client := &http.Client{Timeout: ioTimeout}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, body, resp.Header
}

// getJSON GETs path, requires 200, and decodes the answer into v.
func getJSON(t testing.TB, l *Lookupd, path string, v any) {
	t.Helper()
	status, body, _ := httpDo(t, l, "GET", path)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

// lookupPorts returns the TCP ports of /lookup?topic's producers, or nil with the status when
// it is not 200.
func lookupPorts(t testing.TB, l *Lookupd, topic string) ([]int, int) {
	t.Helper()
	status, body, _ := httpDo(t, l, "GET", "/lookup?topic="+topic)
	if status != http.StatusOK {
		return nil, status
	}
	var resp lookupResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("/lookup: %v in %s", err, body)
	}
	ports := []int{}
	for _, p := range resp.Producers {
		ports = append(ports, p.TCPPort)
	}
	return ports, status
}
