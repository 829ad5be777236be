package nsq_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/nsq"
	"github.com/ternmq/tern/nsqd"
	"github.com/ternmq/tern/nsqd/nsqdtest"
)

// server is an in-process Tern nsqd.
type server struct {
	d    *nsqd.NSQD
	stop func()
}

// tcpAddr and httpAddr return where the server listens.
func (s *server) tcpAddr() string  { return s.d.TCPAddr().String() }
func (s *server) httpAddr() string { return "http://" + s.d.HTTPAddr().String() }

// startNSQD runs an nsqd on loopback until the test ends or stop is called. mutate, when not
// nil, adjusts the options first; the data path is a fresh temporary directory unless
// mutate sets one.
func startNSQD(t testing.TB, mutate func(*nsqd.Options)) *server {
	t.Helper()
	d, stop := nsqdtest.StartWithStop(t, mutate)
	return &server{d: d, stop: stop}
}

// restartableNSQD picks a free loopback address and returns it with a function that starts
// an nsqd there, on the same data path each time: a test stops one and starts the next to
// see clients reconnect to it.
func restartableNSQD(t testing.TB) (addr string, start func() *server) {
	t.Helper()
	addr = freePort(t)
	dataPath := t.TempDir()
	return addr, func() *server {
		return startNSQD(t, func(o *nsqd.Options) {
			o.TCPAddress = addr
			o.HTTPAddress = ""
			o.DataPath = dataPath
		})
	}
}

// fastReconnectConfig returns a Config that retries a lost connection within milliseconds.
func fastReconnectConfig() *nsq.Config {
	cfg := nsq.NewConfig()
	cfg.ReconnectBackoff = 10 * time.Millisecond
	cfg.MaxReconnectBackoff = 50 * time.Millisecond
	return cfg
}

// freePort returns a loopback address nothing listens on now, so that a test can restart a
// daemon on the same address.
func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// newProducer returns a Producer stopped when the test ends, logging through t.
func newProducer(t testing.TB, addr string, cfg *nsq.Config) *nsq.Producer {
	t.Helper()
	if cfg == nil {
		cfg = nsq.NewConfig()
	}
	cfg.Logger = testutil.Logger(t)
	p, err := nsq.NewProducer(addr, cfg)
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	t.Cleanup(p.Stop)
	return p
}

// messageCount returns how many messages the topic has taken in, 0 if it does not exist.
func messageCount(s *server, topic string) uint64 {
	ts, _ := s.d.TopicStats(topic)
	return ts.MessageCount
}

// waitCount fails the test unless topic reaches want messages within a few seconds.
func waitCount(t testing.TB, s *server, topic string, want uint64) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() bool { return messageCount(s, topic) == want },
		"topic %s: want %d messages, have %d", topic, want, func() uint64 { return messageCount(s, topic) })
	// Published exactly once each: the count must not keep growing.
	if got := messageCount(s, topic); got != want {
		t.Fatalf("topic %s: %d messages, want %d", topic, got, want)
	}
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func bodies(prefix string, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, "%s-%04d", prefix, i)
	}
	return out
}

// asyncResult collects the outcomes of asynchronous publishes.
type asyncResult struct {
	mu   sync.Mutex
	errs []error
	n    int
	all  chan struct{}
	want int
}

func newAsyncResult(want int) *asyncResult {
	return &asyncResult{all: make(chan struct{}), want: want}
}

func (r *asyncResult) done(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	if err != nil {
		r.errs = append(r.errs, err)
	}
	if r.n == r.want {
		close(r.all)
	}
}

func (r *asyncResult) wait(t testing.TB) []error {
	t.Helper()
	select {
	case <-r.all:
	case <-time.After(10 * time.Second):
		t.Fatalf("asynchronous publishes: %d of %d answered", r.n, r.want)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errs
}
