package lookupd

import (
	"bufio"
	"crypto/tls"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/testutil"
)

// These tests speak to lookupd over its sockets about --max-connections,
// --max-connections-per-ip and peers that connect and then say nothing, or say it one byte at
// a time.

// peerFrom connects to l's TCP port from the local IP from, over TLS when tlsConfig is set,
// without sending anything.
func peerFrom(t *testing.T, l *Lookupd, from string, tlsConfig *tls.Config) *testPeer {
	t.Helper()
	d := net.Dialer{Timeout: ioTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	conn, err := d.Dial("tcp", l.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	if tlsConfig != nil {
		conn = tls.Client(conn, tlsConfig)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &testPeer{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// pinging connects from the local IP from, sends the magic and a PING answered OK: a peer
// being served.
func pinging(t *testing.T, l *Lookupd, from string, tlsConfig *tls.Config) *testPeer {
	t.Helper()
	p := peerFrom(t, l, from, tlsConfig)
	p.write([]byte(protocol.MagicV1))
	p.expectOK(protocol.Ping())
	return p
}

// expectRefused reads the refusal, a V1 error answer, and checks the connection then ends.
func (p *testPeer) expectRefused(want string) {
	p.t.Helper()
	// A refused peer sends its magic and IDENTIFY as nsqd does; the answer was sent first.
	p.write([]byte(protocol.MagicV1 + "PING\n"))
	if got := p.mustRead(); got != want {
		p.t.Fatalf("refused with %q, want %q", got, want)
	}
	p.expectClosed()
}

// getFrom GETs path from l's HTTP API over a connection from the local IP from that is not
// kept alive, over HTTPS when tlsConfig is set.
func getFrom(t *testing.T, l *Lookupd, path, from string, tlsConfig *tls.Config) (int, string) {
	t.Helper()
	scheme := "http://"
	if tlsConfig != nil {
		scheme = "https://"
	}
	return testutil.GetFrom(t, scheme+l.HTTPAddr().String()+path, from, tlsConfig, ioTimeout)
}

// TestMaxConnections checks the connection past --max-connections is refused on the TCP
// port with a V1 error naming the limit and on the HTTP port with NSQ's 503, that TCP and
// HTTP count together, that one is served again once a connection closes, and that the
// refusals are counted.
func TestMaxConnections(t *testing.T) {
	l := startLookupd(t, func(o *Options) { o.MaxConnections = 2 })
	first := pinging(t, l, "127.0.0.1", nil)
	second := pinging(t, l, "127.0.0.2", nil)

	peerFrom(t, l, "127.0.0.1", nil).expectRefused("E_TOO_MANY_CONNECTIONS too many connections (max 2)")
	if status, body := getFrom(t, l, "/ping", "127.0.0.1", nil); status != 503 || body != `{"message":"TOO_MANY_CONNECTIONS"}` {
		t.Fatalf("GET /ping over the limit: %d %s, want 503 TOO_MANY_CONNECTIONS", status, body)
	}
	// Peers already connected go on being served.
	first.expectOK(protocol.Ping())
	second.expectOK(protocol.Ping())

	_ = first.conn.Close()
	testutil.Eventually(t, ioTimeout, func() bool { return l.limiter.Open() == 1 },
		"open connections = %d after one closed", l.limiter.Open)
	if status, body := getFrom(t, l, "/ping", "127.0.0.1", nil); status != 200 || body != "OK" {
		t.Fatalf("GET /ping under the limit: %d %s", status, body)
	}
	testutil.Eventually(t, ioTimeout, func() bool { return l.limiter.Open() == 1 },
		"open connections = %d after the HTTP request", l.limiter.Open)
	pinging(t, l, "127.0.0.1", nil)

	for listener, want := range map[string]float64{"tcp": 1, "http": 1} {
		got := testutil.CounterValue(t, l.registry, "nsqlookupd_connections_refused_total",
			map[string]string{"listener": listener, "reason": "max_connections"})
		if got != want {
			t.Errorf("refused on %s = %v, want %v", listener, got, want)
		}
	}
}

// TestMaxConnectionsPerIP checks --max-connections-per-ip counts an address's TCP and HTTP
// connections together and leaves other addresses alone.
func TestMaxConnectionsPerIP(t *testing.T) {
	l := startLookupd(t, func(o *Options) { o.MaxConnectionsPerIP = 1 })
	held := registerPeer(t, l, 4150, 4151, "orders")
	peerFrom(t, l, "127.0.0.1", nil).expectRefused("E_TOO_MANY_CONNECTIONS too many connections from 127.0.0.1 (max 1 per IP)")
	if status, body := getFrom(t, l, "/ping", "127.0.0.1", nil); status != 503 || body != `{"message":"TOO_MANY_CONNECTIONS"}` {
		t.Fatalf("GET /ping from the address holding a connection: %d %s", status, body)
	}
	status, body := getFrom(t, l, "/lookup?topic=orders", "127.0.0.2", nil)
	if status != 200 || !strings.Contains(body, `"tcp_port":4150`) {
		t.Fatalf("GET /lookup from another address: %d %s", status, body)
	}
	held.expectOK(protocol.Ping())
}

// TestMaxConnectionsTLS checks a lookupd serving TLS refuses over TLS, readably, on both
// ports.
func TestMaxConnectionsTLS(t *testing.T) {
	ca := testutil.NewCA(t, "tern-test")
	cert, key, _ := ca.Issue(t, testutil.CertOptions{})
	l := startLookupd(t, func(o *Options) {
		o.TLSCert, o.TLSKey = cert, key
		o.MaxConnections = 1
	})
	clientTLS := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
	held := pinging(t, l, "127.0.0.1", clientTLS)
	peerFrom(t, l, "127.0.0.1", clientTLS).expectRefused("E_TOO_MANY_CONNECTIONS too many connections (max 1)")
	if status, body := getFrom(t, l, "/ping", "127.0.0.1", clientTLS); status != 503 || body != `{"message":"TOO_MANY_CONNECTIONS"}` {
		t.Fatalf("GET /ping over HTTPS over the limit: %d %s", status, body)
	}
	held.expectOK(protocol.Ping())
}

// TestMaxConnectionsValidate checks negative limits are refused with a clear error, and
// that the default bounds connections.
func TestMaxConnectionsValidate(t *testing.T) {
	o := NewOptions()
	o.MaxConnections, o.MaxConnectionsPerIP = -1, -1
	err := o.Validate()
	for _, want := range []string{
		"--max-connections must not be negative (0 is unlimited), got -1",
		"--max-connections-per-ip must not be negative (0 is unlimited), got -1",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to say %q", err, want)
		}
	}
	if NewOptions().MaxConnections <= 0 {
		t.Errorf("default --max-connections = %d, want a bound", NewOptions().MaxConnections)
	}
}

// TestSlowClients checks lookupd drops a peer that sends nothing, one that trickles the
// magic, one that trickles the magic and its first command (all within the handshake
// timeout of connecting, however the bytes are spaced), one that trickles a later command
// (within --inactive-producer-timeout of its start), and HTTP clients that send nothing or
// trickle a header (within the header timeout), while other peers and clients are served.
func TestSlowClients(t *testing.T) {
	const (
		handshake  = 500 * time.Millisecond
		inactive   = time.Second
		readHeader = 500 * time.Millisecond
		slack      = 700 * time.Millisecond
	)
	l := startLookupdWith(t, func(o *Options) { o.InactiveProducerTimeout = inactive }, func(l *Lookupd) {
		l.timeouts.handshake = handshake
		l.timeouts.httpReadHeader = readHeader
	})
	dialTCP := func() net.Conn { return peerFrom(t, l, "127.0.0.1", nil).conn }
	dialHTTP := func() net.Conn {
		c, err := net.DialTimeout("tcp", l.HTTPAddr().String(), ioTimeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	tests := []struct {
		name    string
		start   func() (net.Conn, time.Time)
		timeout time.Duration
	}{
		{"tcp silent", func() (net.Conn, time.Time) {
			start := time.Now()
			return dialTCP(), start
		}, handshake},
		{"magic trickled", func() (net.Conn, time.Time) {
			start := time.Now()
			c := dialTCP()
			testutil.Trickle(t, c, protocol.MagicV1, 200*time.Millisecond)
			return c, start
		}, handshake},
		{"magic and first command trickled", func() (net.Conn, time.Time) {
			// The magic is in after 450 ms; a deadline started afresh then would hold the
			// peer until 1.45 s.
			start := time.Now()
			c := dialTCP()
			testutil.Trickle(t, c, protocol.MagicV1+"REGISTER slow_loris_topic\n", 150*time.Millisecond)
			return c, start
		}, handshake},
		{"command trickled after IDENTIFY", func() (net.Conn, time.Time) {
			p := registerPeer(t, l, 4350, 4351)
			start := time.Now()
			testutil.Trickle(t, p.conn, "REGISTER slow_loris_topic\n", 100*time.Millisecond)
			return p.conn, start
		}, inactive},
		{"http silent", func() (net.Conn, time.Time) {
			start := time.Now()
			return dialHTTP(), start
		}, readHeader},
		{"http header trickled", func() (net.Conn, time.Time) {
			start := time.Now()
			c := dialHTTP()
			testutil.Trickle(t, c, "GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: slow slow slow\r\n\r\n", 100*time.Millisecond)
			return c, start
		}, readHeader},
	}
	conns := make([]net.Conn, len(tests))
	starts := make([]time.Time, len(tests))
	for i, tc := range tests {
		conns[i], starts[i] = tc.start()
	}
	// Others are served meanwhile.
	served := registerPeer(t, l, 4150, 4151, "orders")
	for range 10 {
		served.expectOK(protocol.Ping())
		if ports, _ := lookupPorts(t, l, "orders"); !slices.Contains(ports, 4150) {
			t.Fatalf("/lookup?topic=orders ports = %v while slow clients hang on", ports)
		}
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			testutil.ExpectDropped(t, conns[i], starts[i], tc.timeout, tc.timeout+slack)
		})
	}
	// served has been silent for longer than the inactive timeout since; a new peer is served.
	registerPeer(t, l, 4450, 4451).expectOK(protocol.Ping())
}
