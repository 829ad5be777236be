package admin

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/testutil"
)

// These tests speak to the admin over its socket about --max-connections,
// --max-connections-per-ip and clients that connect and then send nothing, or send a header
// one byte at a time.

// limitIOTimeout bounds each request and read of the tests here.
const limitIOTimeout = 5 * time.Second

// startLimitedAdmin runs an admin over an nsqd that does not exist (enough for /ping) with
// the given options, and before, when not nil, run between New and Run.
func startLimitedAdmin(t *testing.T, configure func(*Options), before func(*Admin)) *Admin {
	t.Helper()
	a := newTestAdmin(t, func(o *Options) {
		o.NSQDHTTPAddresses = []string{"127.0.0.1:1"}
		o.HTTPClientConnectTimeout = 100 * time.Millisecond
		if configure != nil {
			configure(o)
		}
	})
	if before != nil {
		before(a)
	}
	_, stop := runAdmin(t, a)
	t.Cleanup(stop)
	return a
}

// dialAdminFrom connects to a from the local IP from, without sending anything.
func dialAdminFrom(t *testing.T, a *Admin, from string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: limitIOTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", a.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// pingFrom GETs /ping over a connection from the local IP from that is not kept alive.
func pingFrom(t *testing.T, a *Admin, from string) (int, string) {
	t.Helper()
	return testutil.GetFrom(t, adminURL(a, "/ping"), from, nil, limitIOTimeout)
}

// TestMaxConnections checks the connection past --max-connections is answered 503
// TOO_MANY_CONNECTIONS, that one is served again once a connection closes, and that the
// refusal is counted.
func TestMaxConnections(t *testing.T) {
	a := startLimitedAdmin(t, func(o *Options) { o.MaxConnections = 1 }, nil)
	held := dialAdminFrom(t, a, "127.0.0.1")
	testutil.Eventually(t, limitIOTimeout, func() bool { return a.limiter.Open() == 1 },
		"open connections = %d", a.limiter.Open)
	if status, body := pingFrom(t, a, "127.0.0.2"); status != 503 || body != `{"message":"TOO_MANY_CONNECTIONS"}` {
		t.Fatalf("GET /ping over the limit: %d %s, want 503 TOO_MANY_CONNECTIONS", status, body)
	}
	_ = held.Close()
	testutil.Eventually(t, limitIOTimeout, func() bool { return a.limiter.Open() == 0 },
		"open connections = %d after the held one closed", a.limiter.Open)
	if status, body := pingFrom(t, a, "127.0.0.2"); status != 200 || body != "OK" {
		t.Fatalf("GET /ping under the limit: %d %s", status, body)
	}
	if got := testutil.CounterValue(t, a.registry, "nsqadmin_connections_refused_total", map[string]string{"listener": "http", "reason": "max_connections"}); got != 1 {
		t.Errorf("refused = %v, want 1", got)
	}
}

// TestMaxConnectionsPerIP checks one address's connections are bounded while another's are
// not.
func TestMaxConnectionsPerIP(t *testing.T) {
	a := startLimitedAdmin(t, func(o *Options) { o.MaxConnectionsPerIP = 1 }, nil)
	dialAdminFrom(t, a, "127.0.0.1")
	testutil.Eventually(t, limitIOTimeout, func() bool { return a.limiter.Open() == 1 },
		"open connections = %d", a.limiter.Open)
	if status, body := pingFrom(t, a, "127.0.0.1"); status != 503 || body != `{"message":"TOO_MANY_CONNECTIONS"}` {
		t.Fatalf("GET /ping from the address holding a connection: %d %s", status, body)
	}
	if status, body := pingFrom(t, a, "127.0.0.2"); status != 200 || body != "OK" {
		t.Fatalf("GET /ping from another address: %d %s", status, body)
	}
	if got := testutil.CounterValue(t, a.registry, "nsqadmin_connections_refused_total", map[string]string{"listener": "http", "reason": "max_connections_per_ip"}); got != 1 {
		t.Errorf("refused per IP = %v, want 1", got)
	}
}

// TestMaxConnectionsValidate checks negative limits are refused with a clear error, and
// that the default bounds connections.
func TestMaxConnectionsValidate(t *testing.T) {
	o := NewOptions()
	o.NSQDHTTPAddresses = []string{"127.0.0.1:4151"}
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

// TestSlowClients checks the admin drops a client that sends nothing and one that trickles
// its request header within the header timeout, however the bytes are spaced, while other
// clients are served.
func TestSlowClients(t *testing.T) {
	const (
		readHeader = 500 * time.Millisecond
		slack      = 700 * time.Millisecond
	)
	a := startLimitedAdmin(t, nil, func(a *Admin) {
		a.timeouts = httpTimeouts{readHeader: readHeader, read: 2 * time.Second, idle: time.Second}
	})
	silentStart := time.Now()
	silent := dialAdminFrom(t, a, "127.0.0.1")
	trickledStart := time.Now()
	trickled := dialAdminFrom(t, a, "127.0.0.1")
	testutil.Trickle(t, trickled, "GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: slow slow slow slow\r\n\r\n", 100*time.Millisecond)
	for range 10 {
		if status, body := pingFrom(t, a, "127.0.0.2"); status != 200 || body != "OK" {
			t.Fatalf("GET /ping while slow clients hang on: %d %s", status, body)
		}
	}
	t.Run("silent", func(t *testing.T) {
		testutil.ExpectDropped(t, silent, silentStart, readHeader, readHeader+slack)
	})
	t.Run("header trickled", func(t *testing.T) {
		testutil.ExpectDropped(t, trickled, trickledStart, readHeader, readHeader+slack)
	})
}
