package connlimit

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/ternmq/tern/internal/httpapi"
	"github.com/ternmq/tern/internal/testutil"
)

// TestMain fails the package if a test leaves a goroutine behind: a refusal's goroutine
// must end with its deadline or with its listener.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ioTimeout bounds every read a test does, so that a hang fails instead of stalling.
const ioTimeout = 5 * time.Second

func TestDefaultMax(t *testing.T) {
	tests := []struct {
		soft uint64
		want int
	}{
		{0, 0},
		{1, 1},
		{100, 50},    // below the reserve: half
		{256, 128},   // exactly the reserve: half
		{1024, 768},  // the reserve's floor of 256
		{4096, 3072}, // a quarter
		{1 << 20, 786432},
		{1 << 40, 0}, // no real limit
	}
	for _, tc := range tests {
		if got := defaultMax(tc.soft); got != tc.want {
			t.Errorf("defaultMax(%d) = %d, want %d", tc.soft, got, tc.want)
		}
	}
	if DefaultMax() <= 0 {
		t.Errorf("DefaultMax() = %d on this host, want a bound", DefaultMax())
	}
}

func TestRefusalText(t *testing.T) {
	tests := []struct {
		r    Refusal
		want string
	}{
		{Refusal{Reason: ReasonMax, Max: 100}, "E_TOO_MANY_CONNECTIONS too many connections (max 100)"},
		{Refusal{Reason: ReasonPerIP, Max: 4, Addr: mustAddr(t, "10.0.0.7")},
			"E_TOO_MANY_CONNECTIONS too many connections from 10.0.0.7 (max 4 per IP)"},
	}
	for _, tc := range tests {
		if got := tc.r.Text(); got != tc.want {
			t.Errorf("Text() = %q, want %q", got, tc.want)
		}
	}
}

// TestRefuseHTTP checks the 503 is NSQ's shape of an API error, and says the connection ends.
func TestRefuseHTTP(t *testing.T) {
	var buf strings.Builder
	rw := struct {
		io.Reader
		io.Writer
	}{strings.NewReader("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"), &buf}
	if err := RefuseHTTP(rw, Refusal{Reason: ReasonMax, Max: 1}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(buf.String())), nil)
	if err != nil {
		t.Fatalf("not an HTTP response: %v\n%s", err, buf.String())
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 503 || string(body) != `{"message":"TOO_MANY_CONNECTIONS"}` || !resp.Close {
		t.Fatalf("answer %d %q close=%v, want 503 {\"message\":\"TOO_MANY_CONNECTIONS\"} and Connection: close",
			resp.StatusCode, body, resp.Close)
	}
	for h, want := range map[string]string{
		"Content-Type":               httpapi.ContentTypeJSON,
		httpapi.HeaderNSQContentType: httpapi.NSQContentTypeV1,
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
}

// server is a limited listener on 127.0.0.1:0 whose accepted connections a test takes from
// accepted.
type server struct {
	l        *Limiter
	ln       net.Listener
	accepted chan net.Conn
}

func startServer(t *testing.T, cfg Config, p Port) *server {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger = testutil.Logger(t)
	}
	s := &server{l: New(cfg), accepted: make(chan net.Conn, 16)}
	s.ln = s.l.Listen(inner, p)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.accepted <- c
		}
	})
	t.Cleanup(func() {
		_ = s.ln.Close()
		wg.Wait()
		close(s.accepted)
		for c := range s.accepted {
			_ = c.Close()
		}
	})
	return s
}

// textRefusal writes the refusal's text and a newline.
func textRefusal(w io.ReadWriter, r Refusal) error {
	_, err := io.WriteString(w, r.Text()+"\n")
	return err
}

// dialFrom connects to s from the local IP from.
func (s *server) dialFrom(t *testing.T, from string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: ioTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// accept returns the next connection the daemon side accepted.
func (s *server) accept(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-s.accepted:
		return c
	case <-time.After(ioTimeout):
		t.Fatal("no connection accepted")
		return nil
	}
}

// expectRefused reads the refusal from c and checks the connection then ends.
func expectRefused(t *testing.T, c net.Conn, want string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the refusal: %v (read %q)", err, got)
	}
	if string(got) != want+"\n" {
		t.Fatalf("refused with %q, want %q", got, want)
	}
}

// TestLimitTotal checks the connection past the limit is refused with the limit in its
// text, and that one is accepted again once a connection closes.
func TestLimitTotal(t *testing.T) {
	s := startServer(t, Config{Max: 2}, Port{Name: "tcp", Refuse: textRefusal})
	s.dialFrom(t, "127.0.0.1")
	s.dialFrom(t, "127.0.0.2")
	first := s.accept(t)
	s.accept(t)

	expectRefused(t, s.dialFrom(t, "127.0.0.1"), "E_TOO_MANY_CONNECTIONS too many connections (max 2)")
	_ = first.Close()
	_ = first.Close() // a second close gives nothing back twice
	testutil.Eventually(t, ioTimeout, func() bool { return s.l.Open() == 1 }, "open = %d after a close", s.l.Open)
	s.dialFrom(t, "127.0.0.1")
	s.accept(t)
	if n := s.l.Open(); n != 2 {
		t.Fatalf("open = %d, want 2", n)
	}
}

// TestLimitPerIP checks one address's connections are bounded while another's are not.
func TestLimitPerIP(t *testing.T) {
	s := startServer(t, Config{PerIP: 1}, Port{Name: "tcp", Refuse: textRefusal})
	s.dialFrom(t, "127.0.0.1")
	one := s.accept(t)
	expectRefused(t, s.dialFrom(t, "127.0.0.1"),
		"E_TOO_MANY_CONNECTIONS too many connections from 127.0.0.1 (max 1 per IP)")
	s.dialFrom(t, "127.0.0.2")
	s.accept(t)

	_ = one.Close()
	s.dialFrom(t, "127.0.0.1")
	s.accept(t)
}

// TestRefusalReadableWhileClientWrites checks a client that sends its request before
// reading still reads the refusal: the connection is not reset under it.
func TestRefusalReadableWhileClientWrites(t *testing.T) {
	s := startServer(t, Config{Max: 1}, Port{Name: "http", Refuse: RefuseHTTP})
	s.dialFrom(t, "127.0.0.1")
	s.accept(t)
	c := s.dialFrom(t, "127.0.0.1")
	if _, err := io.WriteString(c, "POST /pub?topic=t HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	if resp.StatusCode != 503 {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
}

// TestRefusalOverTLS checks a TLS port refuses over TLS, readably.
func TestRefusalOverTLS(t *testing.T) {
	ca := testutil.NewCA(t, "connlimit")
	_, _, pair := ca.Issue(t, testutil.CertOptions{})
	s := startServer(t, Config{Max: 1},
		Port{Name: "https", TLS: &tls.Config{Certificates: []tls.Certificate{pair}}, Refuse: textRefusal})
	dial := func() *tls.Conn {
		c := tls.Client(s.dialFrom(t, "127.0.0.1"), &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	ok := dial()
	accepted := s.accept(t)
	if _, isTLS := accepted.(*tls.Conn); !isTLS {
		t.Fatalf("accepted a %T, want a *tls.Conn", accepted)
	}
	go func() { _, _ = io.WriteString(ok, "x") }() // drives the client's handshake
	_ = accepted.SetReadDeadline(time.Now().Add(ioTimeout))
	if _, err := accepted.Read(make([]byte, 1)); err != nil {
		t.Fatalf("read over the accepted TLS connection: %v", err)
	}
	expectRefused(t, dial(), "E_TOO_MANY_CONNECTIONS too many connections (max 1)")
}

// TestRefusalsBounded checks that with maxRefusing refusals under way the next refused
// connection is closed at once, without an answer and without a goroutine.
func TestRefusalsBounded(t *testing.T) {
	s := startServer(t, Config{Max: 1}, Port{Name: "tcp", Refuse: textRefusal})
	s.dialFrom(t, "127.0.0.1")
	s.accept(t)
	for range maxRefusing {
		s.l.refusing <- struct{}{}
	}
	c := s.dialFrom(t, "127.0.0.1")
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	got, err := io.ReadAll(c)
	if err != nil || len(got) != 0 {
		t.Fatalf("read %q, %v; want the connection closed without a word", got, err)
	}
	for range maxRefusing {
		<-s.l.refusing
	}
	expectRefused(t, s.dialFrom(t, "127.0.0.1"), "E_TOO_MANY_CONNECTIONS too many connections (max 1)")
}

// TestCloseEndsRefusals checks closing the listener ends a refusal still lingering on a
// client that neither reads nor closes, at once rather than at its deadline.
func TestCloseEndsRefusals(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(Config{Max: 1})
	ln := l.Listen(inner, Port{Name: "tcp", Refuse: textRefusal})
	accepted := make(chan net.Conn, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	d := net.Dialer{Timeout: ioTimeout}
	held, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	c := <-accepted
	defer c.Close()
	mute, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	// The refusal is under way once its text arrives.
	_ = mute.SetReadDeadline(time.Now().Add(ioTimeout))
	if _, err := bufio.NewReader(mute).ReadString('\n'); err != nil {
		t.Fatalf("no refusal: %v", err)
	}
	start := time.Now()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d >= refuseTimeout {
		t.Fatalf("Close took %v: it waited for the refusal's deadline", d)
	}
}

// TestRefusalsLoggedRateLimited checks a flood of refusals logs one record, and that the
// next record, once LogInterval has passed, counts those that were not logged.
func TestRefusalsLoggedRateLimited(t *testing.T) {
	rec := &recordCounter{}
	s := startServer(t, Config{Max: 1, Logger: slog.New(rec)}, Port{Name: "tcp", Refuse: textRefusal})
	s.dialFrom(t, "127.0.0.1")
	s.accept(t)
	const flood = 20
	for range flood {
		expectRefused(t, s.dialFrom(t, "127.0.0.1"), "E_TOO_MANY_CONNECTIONS too many connections (max 1)")
	}
	if got := rec.messages(); len(got) != 1 {
		t.Fatalf("%d records for %d refusals, want 1: %q", len(got), flood, got)
	}
	// As if LogInterval had passed.
	s.l.logMu.Lock()
	s.l.lastLog = s.l.lastLog.Add(-LogInterval)
	s.l.logMu.Unlock()
	expectRefused(t, s.dialFrom(t, "127.0.0.1"), "E_TOO_MANY_CONNECTIONS too many connections (max 1)")
	got := rec.messages()
	if len(got) != 2 || !strings.Contains(got[1], "refused=20") || !strings.Contains(got[1], "listener=tcp") ||
		!strings.Contains(got[1], "reason=max_connections") {
		t.Fatalf("records %q, want a second one counting the 20 refusals since the first", got)
	}
}

// recordCounter is a slog.Handler that keeps each record as "msg key=value ...".
type recordCounter struct {
	mu   sync.Mutex
	recs []string
}

func (r *recordCounter) Enabled(context.Context, slog.Level) bool { return true }
func (r *recordCounter) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recordCounter) WithGroup(string) slog.Handler            { return r }
func (r *recordCounter) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.Key + "=" + a.Value.String())
		return true
	})
	r.mu.Lock()
	r.recs = append(r.recs, b.String())
	r.mu.Unlock()
	return nil
}

func (r *recordCounter) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.recs...)
}

// TestMetrics checks the refusals and open connections are counted per listener and reason,
// and that the metrics pass promlint.
func TestMetrics(t *testing.T) {
	s := startServer(t, Config{Max: 2, PerIP: 1, Namespace: "testd"}, Port{Name: "tcp", Refuse: textRefusal})
	s.dialFrom(t, "127.0.0.1")
	s.accept(t)
	expectRefused(t, s.dialFrom(t, "127.0.0.1"), "E_TOO_MANY_CONNECTIONS too many connections from 127.0.0.1 (max 1 per IP)")
	s.dialFrom(t, "127.0.0.2")
	s.accept(t)
	expectRefused(t, s.dialFrom(t, "127.0.0.3"), "E_TOO_MANY_CONNECTIONS too many connections (max 2)")
	expectRefused(t, s.dialFrom(t, "127.0.0.3"), "E_TOO_MANY_CONNECTIONS too many connections (max 2)")

	reg := prometheus.NewRegistry()
	reg.MustRegister(s.l)
	testutil.Promlint(t, reg, s.l)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, lp := range m.GetLabel() {
				key += " " + lp.GetName() + "=" + lp.GetValue()
			}
			got[key] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	for key, want := range map[string]float64{
		"testd_connections_refused_total listener=tcp reason=max_connections":        2,
		"testd_connections_refused_total listener=tcp reason=max_connections_per_ip": 1,
		"testd_connections_open listener=tcp":                                        2,
		"testd_connections_max":                                                      2,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v (all: %v)", key, got[key], want, got)
		}
	}
}

// TestCloseWrite checks an accepted connection half-closes as a TCP connection does: the
// daemons linger after an error answer that way.
func TestCloseWrite(t *testing.T) {
	s := startServer(t, Config{Max: 1}, Port{Name: "tcp"})
	c := s.dialFrom(t, "127.0.0.1")
	accepted := s.accept(t)
	cw, ok := accepted.(interface{ CloseWrite() error })
	if !ok {
		t.Fatalf("%T has no CloseWrite", accepted)
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after CloseWrite: %v, want EOF", err)
	}
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
