package nsqd_test

import (
	"fmt"
	"log"
	"strings"
	"sync"
	"testing"
	"time"

	nsq "github.com/nsqio/go-nsq"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/internal/wiretest"
	"github.com/ternmq/tern/nsqd"
	"github.com/ternmq/tern/nsqd/nsqdtest"
)

// ioTimeout bounds the black-box tests' waits for a single answer.
const ioTimeout = wiretest.DefaultTimeout

// startNSQD runs an nsqd in-process on 127.0.0.1:0 with a fresh data path, a test logger and
// no HTTP listener (mutate may turn it on). stop cancels Run and waits for it to return; it
// runs at cleanup if the test does not call it first, and fails the test if Run returns an
// error or does not return.
func startNSQD(t *testing.T, mutate func(*nsqd.Options)) (addr string, d *nsqd.NSQD, stop func()) {
	t.Helper()
	d, stop = nsqdtest.StartWithStop(t, func(o *nsqd.Options) {
		o.HTTPAddress = ""
		if mutate != nil {
			mutate(o)
		}
	})
	return d.TCPAddr().String(), d, stop
}

// must fails the test with err unless it is nil. The raw-client helpers return errors
// rather than failing, so that goroutines can use them too.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// holdsFor checks cond repeatedly for the whole of d and fails the first time it is false.
// It asserts an invariant over a period (a connection stays up while idle), which is the one
// thing a deadline poll cannot express.
func holdsFor(t testing.TB, d time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	end := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(end) {
		if !cond() {
			t.Fatalf("stopped holding after %v of %v: %s", d-time.Until(end), d, testutil.Sprintf(msg, args...))
		}
		<-tick.C
	}
}

// drained reports whether a channel exists and has nothing left to deliver or acknowledge.
func drained(d *nsqd.NSQD, topic, channel string) bool {
	cs, ok := d.ChannelStats(topic, channel)
	return ok && cs.Depth == 0 && cs.InFlightCount == 0 && cs.DeferredCount == 0
}

// dialRaw connects a raw V2 client that is closed when the test ends.
func dialRaw(t testing.TB, addr string) *wiretest.Conn {
	t.Helper()
	c, err := wiretest.Dial(addr)
	must(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// mpubCmd is an MPUB of bodies, which must be valid for the builder.
func mpubCmd(topic string, bodies ...string) *protocol.Command {
	bs := make([][]byte, len(bodies))
	for i, b := range bodies {
		bs[i] = []byte(b)
	}
	cmd, err := protocol.MultiPublish(topic, bs)
	if err != nil {
		// Only reachable through a mistake in a test table.
		panic(fmt.Sprintf("mpubCmd: %v", err))
	}
	return cmd
}

// quietLogger routes go-nsq's log lines through t.Log until the test ends, and drops them
// after, since go-nsq's goroutines can outlive a test by a moment.
func quietLogger(t testing.TB) *log.Logger {
	w := &gonsqLogWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return log.New(w, "go-nsq ", 0)
}

type gonsqLogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *gonsqLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// newProducer returns a go-nsq producer stopped when the test ends.
func newProducer(t testing.TB, addr string, cfg *nsq.Config) *nsq.Producer {
	t.Helper()
	if cfg == nil {
		cfg = nsq.NewConfig()
	}
	p, err := nsq.NewProducer(addr, cfg)
	must(t, err)
	p.SetLogger(quietLogger(t), nsq.LogLevelError)
	t.Cleanup(p.Stop)
	return p
}

// newConsumer connects a go-nsq consumer for topic/channel to addr with handler run by
// concurrency goroutines. It is stopped when the test ends; handlers must have answered every
// message by then, or go-nsq waits up to 30 s for them.
func newConsumer(t testing.TB, addr, topic, channel string, cfg *nsq.Config, handler nsq.Handler, concurrency int) *nsq.Consumer {
	t.Helper()
	if cfg == nil {
		cfg = nsq.NewConfig()
	}
	c, err := nsq.NewConsumer(topic, channel, cfg)
	must(t, err)
	c.SetLogger(quietLogger(t), nsq.LogLevelError)
	c.AddConcurrentHandlers(handler, max(concurrency, 1))
	must(t, c.ConnectToNSQD(addr))
	t.Cleanup(func() {
		c.Stop()
		select {
		case <-c.StopChan:
		case <-time.After(10 * time.Second):
			t.Logf("consumer %s/%s did not stop within 10s", topic, channel)
		}
	})
	return c
}

// received is one delivery seen by a go-nsq handler.
type received struct {
	body     string
	attempts uint16
	id       nsq.MessageID
	at       time.Time
}

// collector is a go-nsq handler that records every delivery and finishes it.
type collector struct {
	mu   sync.Mutex
	msgs []received
}

// HandleMessage records m; returning nil makes go-nsq send FIN.
func (c *collector) HandleMessage(m *nsq.Message) error {
	c.mu.Lock()
	c.msgs = append(c.msgs, received{body: string(m.Body), attempts: m.Attempts, id: m.ID, at: time.Now()})
	c.mu.Unlock()
	return nil
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

func (c *collector) snapshot() []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]received(nil), c.msgs...)
}

// bodies counts deliveries per body.
func (c *collector) bodies() map[string]int {
	m := make(map[string]int)
	for _, r := range c.snapshot() {
		m[r.body]++
	}
	return m
}

// waitFor waits until the collector has seen at least n deliveries.
func (c *collector) waitFor(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	testutil.Eventually(t, timeout, func() bool { return c.count() >= n }, "%d deliveries (have %d)", n, c.count)
}

// checkExactlyOnce fails unless bodies were each delivered exactly once and nothing else was.
func checkExactlyOnce(t testing.TB, got map[string]int, want []string) {
	t.Helper()
	wantSet := make(map[string]bool, len(want))
	for _, w := range want {
		wantSet[w] = true
		if got[w] != 1 {
			t.Errorf("message %q delivered %d times, want 1", w, got[w])
		}
	}
	for b, n := range got {
		if !wantSet[b] {
			t.Errorf("unexpected message %q delivered %d times", b, n)
		}
	}
}

// numbered returns n bodies "<prefix>-<i>".
func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

func toBytes(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}
