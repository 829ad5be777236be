package nsqd

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	gonsq "github.com/nsqio/go-nsq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/testutil"
)

// These tests speak to the daemon over its sockets, as clients do, about --max-connections,
// --max-connections-per-ip and clients that connect and then say nothing, or say it one byte
// at a time.

// limitIOTimeout bounds each read and write of the tests here.
const limitIOTimeout = 5 * time.Second

// v2Conn is a raw V2 connection from a chosen local address.
type v2Conn struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// dialFrom connects to addr from the local IP from, without sending anything.
func dialFrom(t *testing.T, addr, from string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: limitIOTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// dialV2 connects from the local IP from and sends the magic.
func dialV2(t *testing.T, addr, from string) *v2Conn {
	t.Helper()
	c := &v2Conn{t: t, conn: dialFrom(t, addr, from)}
	c.r = bufio.NewReader(c.conn)
	c.write(protocol.MagicV2)
	return c
}

func (c *v2Conn) write(s string) {
	c.t.Helper()
	_ = c.conn.SetWriteDeadline(time.Now().Add(limitIOTimeout))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// frame reads the next frame that is not a heartbeat.
func (c *v2Conn) frame() (protocol.FrameType, string) {
	c.t.Helper()
	for {
		_ = c.conn.SetReadDeadline(time.Now().Add(limitIOTimeout))
		ft, data, err := protocol.ReadFrame(c.r, 1<<20)
		if err != nil {
			c.t.Fatalf("read frame: %v", err)
		}
		if ft == protocol.FrameTypeResponse && string(data) == protocol.Heartbeat {
			continue
		}
		return ft, string(data)
	}
}

// publish sends a PUB and expects OK: the connection is served.
func (c *v2Conn) publish(topic string) {
	c.t.Helper()
	c.write(string(protocol.Publish(topic, []byte("m")).AppendTo(nil)))
	if ft, data := c.frame(); ft != protocol.FrameTypeResponse || data != protocol.OK {
		c.t.Fatalf("PUB answered %v %q, want OK", ft, data)
	}
}

// expectRefused reads the refusal's error frame and checks the connection then ends.
func (c *v2Conn) expectRefused(want string) {
	c.t.Helper()
	if ft, data := c.frame(); ft != protocol.FrameTypeError || data != want {
		c.t.Fatalf("got %v %q, want error %q", ft, data, want)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(limitIOTimeout))
	if rest, err := io.ReadAll(c.r); err != nil || len(rest) != 0 {
		c.t.Fatalf("after the refusal: %q, %v; want the connection closed", rest, err)
	}
}

// refusedCount reads nsqd_connections_refused_total for listener and reason from reg.
func refusedCount(t *testing.T, reg prometheus.Gatherer, listener, reason string) float64 {
	t.Helper()
	return testutil.CounterValue(t, reg, "nsqd_connections_refused_total", map[string]string{"listener": listener, "reason": reason})
}

// TestMaxConnectionsTCP checks the connection past --max-connections is refused with an error
// frame naming the limit, that one is served again once a connection closes, and that the
// refusal is counted.
func TestMaxConnectionsTCP(t *testing.T) {
	reg := prometheus.NewRegistry()
	n, _ := startTestDaemon(t, t.TempDir(), func(o *Options) { o.MaxConnections = 2 }, withRegistry(reg))
	addr := n.TCPAddr().String()
	first := dialV2(t, addr, "127.0.0.1")
	first.publish("limited")
	dialV2(t, addr, "127.0.0.2").publish("limited")

	dialV2(t, addr, "127.0.0.1").expectRefused("E_TOO_MANY_CONNECTIONS too many connections (max 2)")
	// Connections already served go on being served.
	first.publish("limited")

	_ = first.conn.Close()
	testutil.Eventually(t, limitIOTimeout, func() bool { return n.limiter.Open() == 1 },
		"open connections = %d after one closed", n.limiter.Open)
	dialV2(t, addr, "127.0.0.1").publish("limited")
	if got := refusedCount(t, reg, "tcp", "max_connections"); got != 1 {
		t.Errorf("refused max_connections on tcp = %v, want 1", got)
	}
}

// TestMaxConnectionsPerIP checks --max-connections-per-ip counts an address's connections
// on every port together, and leaves other addresses alone.
func TestMaxConnectionsPerIP(t *testing.T) {
	reg := prometheus.NewRegistry()
	n, _ := startTestDaemon(t, t.TempDir(), withHTTP(false, func(o *Options) { o.MaxConnectionsPerIP = 1 }), withRegistry(reg))
	addr, httpURL := n.TCPAddr().String(), "http://"+n.HTTPAddr().String()+"/ping"

	held := dialV2(t, addr, "127.0.0.1")
	held.publish("per_ip")
	if status, body := testutil.GetFrom(t, httpURL, "127.0.0.1", nil, limitIOTimeout); status != 503 || body != `{"message":"TOO_MANY_CONNECTIONS"}` {
		t.Fatalf("GET /ping from the address holding a connection: %d %s, want 503 TOO_MANY_CONNECTIONS", status, body)
	}
	dialV2(t, addr, "127.0.0.1").expectRefused("E_TOO_MANY_CONNECTIONS too many connections from 127.0.0.1 (max 1 per IP)")
	if status, body := testutil.GetFrom(t, httpURL, "127.0.0.2", nil, limitIOTimeout); status != 200 || body != "OK" {
		t.Fatalf("GET /ping from another address: %d %s, want 200 OK", status, body)
	}
	// The other address's HTTP connection is gone once the server has seen it close.
	testutil.Eventually(t, limitIOTimeout, func() bool { return n.limiter.Open() == 1 },
		"open connections = %d", n.limiter.Open)
	dialV2(t, addr, "127.0.0.2").publish("per_ip")
	held.publish("per_ip")

	if got := refusedCount(t, reg, "http", "max_connections_per_ip"); got != 1 {
		t.Errorf("refused per IP on http = %v, want 1", got)
	}
	if got := refusedCount(t, reg, "tcp", "max_connections_per_ip"); got != 1 {
		t.Errorf("refused per IP on tcp = %v, want 1", got)
	}
}

// tlsDaemonOptions turns on TLS with a certificate from a CA of the test, and returns the
// client configuration that trusts it.
func tlsDaemonOptions(t *testing.T, o *Options) *tls.Config {
	t.Helper()
	ca := testutil.NewCA(t, "tern-test")
	o.TLSCert, o.TLSKey, _ = ca.Issue(t, testutil.CertOptions{})
	o.HTTPSAddress = "127.0.0.1:0"
	return &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
}

// TestMaxConnectionsHTTPS checks the HTTP and HTTPS ports answer a refused connection with
// NSQ's 503, over TLS on the HTTPS port.
func TestMaxConnectionsHTTPS(t *testing.T) {
	var clientTLS *tls.Config
	n, _ := startTestDaemon(t, t.TempDir(), withHTTP(false, func(o *Options) {
		o.MaxConnections = 1
		clientTLS = tlsDaemonOptions(t, o)
	}))
	held := dialV2(t, n.TCPAddr().String(), "127.0.0.1")
	held.publish("https")
	for _, url := range []string{"http://" + n.HTTPAddr().String() + "/ping", "https://" + n.HTTPSAddr().String() + "/ping"} {
		if status, body := testutil.GetFrom(t, url, "127.0.0.1", clientTLS, limitIOTimeout); status != 503 || body != `{"message":"TOO_MANY_CONNECTIONS"}` {
			t.Errorf("GET %s over the limit: %d %s, want 503 TOO_MANY_CONNECTIONS", url, status, body)
		}
	}
	_ = held.conn.Close()
	testutil.Eventually(t, limitIOTimeout, func() bool { return n.limiter.Open() == 0 },
		"open connections = %d", n.limiter.Open)
	if status, body := testutil.GetFrom(t, "https://"+n.HTTPSAddr().String()+"/ping", "127.0.0.1", clientTLS, limitIOTimeout); status != 200 || body != "OK" {
		t.Errorf("GET /ping over HTTPS under the limit: %d %s", status, body)
	}
}

// TestMaxConnectionsGoNSQ checks what a go-nsq producer's user sees when nsqd refuses it,
// and that the same producer publishes once there is room.
func TestMaxConnectionsGoNSQ(t *testing.T) {
	n, _ := startTestDaemon(t, t.TempDir(), func(o *Options) { o.MaxConnections = 1 })
	held := dialV2(t, n.TCPAddr().String(), "127.0.0.1")
	held.publish("gonsq")

	p, err := gonsq.NewProducer(n.TCPAddr().String(), gonsq.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	p.SetLogger(nil, gonsq.LogLevelError)
	t.Cleanup(p.Stop)
	err = p.Publish("gonsq", []byte("refused"))
	const want = "failed to IDENTIFY - E_TOO_MANY_CONNECTIONS too many connections (max 1)"
	if err == nil || err.Error() != want {
		t.Fatalf("Publish over the limit: %v, want %q", err, want)
	}

	_ = held.conn.Close()
	testutil.Eventually(t, limitIOTimeout, func() bool { return n.limiter.Open() == 0 },
		"open connections = %d", n.limiter.Open)
	if err := p.Publish("gonsq", []byte("accepted")); err != nil {
		t.Fatalf("Publish with room: %v", err)
	}
}

// TestMaxConnectionsValidate checks negative limits are refused with a clear error.
func TestMaxConnectionsValidate(t *testing.T) {
	o := NewOptions()
	o.MaxConnections, o.MaxConnectionsPerIP = -1, -2
	err := o.Validate()
	for _, want := range []string{
		"--max-connections must not be negative (0 is unlimited), got -1",
		"--max-connections-per-ip must not be negative (0 is unlimited), got -2",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to say %q", err, want)
		}
	}
	o.MaxConnections, o.MaxConnectionsPerIP = 0, 0
	if err := o.Validate(); err != nil {
		t.Errorf("0 (unlimited) refused: %v", err)
	}
	if NewOptions().MaxConnections <= 0 {
		t.Errorf("default --max-connections = %d, want the bound derived from the open-file limit", NewOptions().MaxConnections)
	}
}

// TestSlowClientsTCP checks that a V2 client is dropped within the client timeout whether it
// sends nothing or trickles its bytes: the magic, the magic and first command, or a later
// command, each byte well within the timeout but never the whole. A client that answers
// heartbeats, and one that turned them off and stays silent between commands, are kept, as
// NSQ keeps them, and other clients are served meanwhile.
func TestSlowClientsTCP(t *testing.T) {
	const timeout = time.Second
	n, _ := startTestDaemon(t, t.TempDir(), func(o *Options) { o.ClientTimeout = timeout })
	addr := n.TCPAddr().String()
	// The heartbeat interval is half the timeout, so a client has twice that per command.
	const slack = 700 * time.Millisecond

	// identified connects and identifies with the given fields.
	identified := func(fields string) *v2Conn {
		c := dialV2(t, addr, "127.0.0.1")
		c.write(string(mustIdentify(t, `{"feature_negotiation":true`+fields+`}`).AppendTo(nil)))
		if ft, _ := c.frame(); ft != protocol.FrameTypeResponse {
			t.Fatalf("IDENTIFY answered a %v frame", ft)
		}
		return c
	}

	tests := []struct {
		name  string
		start func() (net.Conn, time.Time) // the slow client, and when its clock starts
	}{
		{"silent", func() (net.Conn, time.Time) {
			start := time.Now()
			return dialFrom(t, addr, "127.0.0.1"), start
		}},
		{"magic trickled", func() (net.Conn, time.Time) {
			start := time.Now()
			c := dialFrom(t, addr, "127.0.0.1")
			testutil.Trickle(t, c, protocol.MagicV2, 400*time.Millisecond)
			return c, start
		}},
		{"magic and first command trickled", func() (net.Conn, time.Time) {
			// The magic is in after 900 ms; a deadline started afresh then would hold the
			// client until 1.9 s.
			start := time.Now()
			c := dialFrom(t, addr, "127.0.0.1")
			testutil.Trickle(t, c, protocol.MagicV2+"PUB slow_loris_topic\n", 300*time.Millisecond)
			return c, start
		}},
		{"command trickled after IDENTIFY", func() (net.Conn, time.Time) {
			c := identified("")
			start := time.Now()
			testutil.Trickle(t, c.conn, "PUB slow_loris_topic\n", 100*time.Millisecond)
			return c.conn, start
		}},
		{"command trickled with heartbeats off", func() (net.Conn, time.Time) {
			c := identified(`,"heartbeat_interval":-1`)
			start := time.Now()
			testutil.Trickle(t, c.conn, "PUB slow_loris_topic\n", 100*time.Millisecond)
			return c.conn, start
		}},
	}
	conns := make([]net.Conn, len(tests))
	starts := make([]time.Time, len(tests))
	for i, tc := range tests {
		conns[i], starts[i] = tc.start()
	}

	// Kept: a client answering heartbeats, and a silent one that turned them off.
	answering := identified("")
	silent := identified(`,"heartbeat_interval":-1`)
	answeringDone := make(chan error, 1)
	go func() {
		// Answer heartbeats for three timeouts.
		r := answering.r
		until := time.Now().Add(3 * timeout)
		for time.Now().Before(until) {
			_ = answering.conn.SetReadDeadline(time.Now().Add(limitIOTimeout))
			ft, data, err := protocol.ReadFrame(r, 1<<20)
			if err != nil {
				answeringDone <- err
				return
			}
			if ft != protocol.FrameTypeResponse || string(data) != protocol.Heartbeat {
				answeringDone <- fmt.Errorf("got %v %q, want heartbeats", ft, data)
				return
			}
			if _, err := answering.conn.Write(protocol.Nop().AppendTo(nil)); err != nil {
				answeringDone <- err
				return
			}
		}
		answeringDone <- nil
	}()

	// Everyone else is served meanwhile.
	other := dialV2(t, addr, "127.0.0.2")
	for range 20 {
		other.publish("fast")
	}

	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			testutil.ExpectDropped(t, conns[i], starts[i], timeout, timeout+slack)
		})
	}

	if err := <-answeringDone; err != nil {
		t.Fatalf("the client answering heartbeats: %v", err)
	}
	answering.publish("kept")
	// The silent client without heartbeats has outlived three timeouts too.
	silent.publish("kept")
	// other, silent since and not answering heartbeats, is gone; a new client is served.
	dialV2(t, addr, "127.0.0.2").publish("fast")
}

func mustIdentify(t *testing.T, body string) *protocol.Command {
	t.Helper()
	cmd, err := protocol.Identify(rawJSON(body))
	if err != nil {
		t.Fatal(err)
	}
	return cmd
}

// rawJSON marshals as itself.
type rawJSON string

func (r rawJSON) MarshalJSON() ([]byte, error) { return []byte(r), nil }

// TestSlowClientsHTTP checks the HTTP and HTTPS ports drop a client that sends nothing, one
// that trickles a request header, and one that trickles its TLS handshake, within the
// header timeout, while other clients are served.
func TestSlowClientsHTTP(t *testing.T) {
	const readHeader = 500 * time.Millisecond
	var clientTLS *tls.Config
	n, _ := startTestDaemon(t, t.TempDir(), withHTTP(false, func(o *Options) { clientTLS = tlsDaemonOptions(t, o) }),
		beforeRun(func(n *NSQD) {
			n.httpTimeouts = httpTimeouts{readHeader: readHeader, read: 2 * time.Second, idle: time.Second}
		}))
	httpAddr, httpsAddr := n.HTTPAddr().String(), n.HTTPSAddr().String()
	const header = "GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: slow slow slow slow\r\n\r\n"
	const slack = 700 * time.Millisecond

	tests := []struct {
		name  string
		start func() (net.Conn, time.Time)
	}{
		{"http silent", func() (net.Conn, time.Time) {
			start := time.Now()
			return dialFrom(t, httpAddr, "127.0.0.1"), start
		}},
		{"http header trickled", func() (net.Conn, time.Time) {
			start := time.Now()
			c := dialFrom(t, httpAddr, "127.0.0.1")
			testutil.Trickle(t, c, header, 100*time.Millisecond)
			return c, start
		}},
		{"https silent", func() (net.Conn, time.Time) {
			start := time.Now()
			return dialFrom(t, httpsAddr, "127.0.0.1"), start
		}},
		{"https handshake trickled", func() (net.Conn, time.Time) {
			// A TLS handshake record announcing 512 bytes, which come one at a time.
			start := time.Now()
			c := dialFrom(t, httpsAddr, "127.0.0.1")
			testutil.Trickle(t, c, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc"+strings.Repeat("\x00", 64), 100*time.Millisecond)
			return c, start
		}},
		{"https header trickled", func() (net.Conn, time.Time) {
			tc := tls.Client(dialFrom(t, httpsAddr, "127.0.0.1"), clientTLS)
			_ = tc.SetDeadline(time.Now().Add(limitIOTimeout))
			if err := tc.Handshake(); err != nil {
				t.Fatalf("handshake: %v", err)
			}
			_ = tc.SetDeadline(time.Time{})
			start := time.Now()
			testutil.Trickle(t, tc, header, 100*time.Millisecond)
			return tc, start
		}},
	}
	conns := make([]net.Conn, len(tests))
	starts := make([]time.Time, len(tests))
	for i, tc := range tests {
		conns[i], starts[i] = tc.start()
	}
	for range 10 {
		for _, url := range []string{"http://" + httpAddr + "/ping", "https://" + httpsAddr + "/ping"} {
			if status, body := testutil.GetFrom(t, url, "127.0.0.2", clientTLS, limitIOTimeout); status != 200 || body != "OK" {
				t.Fatalf("GET %s while slow clients hang on: %d %s", url, status, body)
			}
		}
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			testutil.ExpectDropped(t, conns[i], starts[i], readHeader, readHeader+slack)
		})
	}
}

// TestClientTimeoutValidate checks that a client timeout of 0, which would drop every client
// before its magic, is refused.
func TestClientTimeoutValidate(t *testing.T) {
	o := NewOptions()
	o.ClientTimeout = 0
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "client_timeout must be positive, got 0s") {
		t.Errorf("Validate() = %v, want it to refuse client_timeout 0", err)
	}
}
