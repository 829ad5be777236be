package nsq_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gonsq "github.com/nsqio/go-nsq"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/nsq"
	"github.com/ternmq/tern/nsqd"
)

// collector is a Handler that counts the bodies it receives.
type collector struct {
	mu   sync.Mutex
	seen map[string]int
	n    atomic.Int64
	// fail, when set, decides whether a message fails.
	fail func(m *nsq.Message) bool
}

func newCollector() *collector { return &collector{seen: make(map[string]int)} }

func (c *collector) HandleMessage(m *nsq.Message) error {
	if c.fail != nil && c.fail(m) {
		return errors.New("handler failed on purpose")
	}
	c.mu.Lock()
	c.seen[string(m.Body)]++
	c.mu.Unlock()
	c.n.Add(1)
	return nil
}

// check fails the test unless every body in want was handled exactly once and nothing
// else was.
func (c *collector) check(t *testing.T, want [][]byte) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range want {
		if n := c.seen[string(b)]; n != 1 {
			t.Errorf("message %q handled %d times, want once", b, n)
		}
	}
	if len(c.seen) != len(want) {
		t.Errorf("handled %d distinct messages, want %d", len(c.seen), len(want))
	}
}

// newConsumer returns a Consumer stopped when the test ends, logging through t.
func newConsumer(t testing.TB, topic, channel string, h nsq.Handler, cfg *nsq.Config) *nsq.Consumer {
	t.Helper()
	if cfg == nil {
		cfg = nsq.NewConfig()
	}
	cfg.Logger = testutil.Logger(t)
	c, err := nsq.NewConsumer(topic, channel, h, cfg)
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(ctxTimeout(t, 10*time.Second)); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return c
}

// publish puts bodies on topic directly, without a client.
func publish(t testing.TB, s *server, topic string, bodies [][]byte) {
	t.Helper()
	if err := s.d.Publish(topic, bodies, 0); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func channelStats(s *server, topic, channel string) nsqd.ChannelStats {
	cs, _ := s.d.ChannelStats(topic, channel)
	return cs
}

func TestConsumerReceivesAll(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		concurrency int
		maxInFlight int
		snappy      bool
		deflate     bool
	}{
		{"one handler", 1, 1, false, false},
		{"concurrent handlers", 8, 100, false, false},
		{"snappy", 2, 50, true, false},
		{"deflate", 2, 50, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startNSQD(t, nil)
			want := bodies("all", 500)
			publish(t, s, "all", want)
			cfg := nsq.NewConfig()
			cfg.HandlerConcurrency = tc.concurrency
			cfg.MaxInFlight = tc.maxInFlight
			cfg.Snappy, cfg.Deflate = tc.snappy, tc.deflate
			col := newCollector()
			c := newConsumer(t, "all", "ch", col, cfg)
			if err := c.ConnectToNSQD(ctxTimeout(t, 5*time.Second), s.tcpAddr()); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 10*time.Second, func() bool { return col.n.Load() >= int64(len(want)) },
				"handled %d of %d", col.n.Load, len(want))
			testutil.Eventually(t, 5*time.Second, func() bool { return channelStats(s, "all", "ch").FinishCount == uint64(len(want)) },
				"nsqd counts every FIN")
			col.check(t, want)
			st := c.Stats()
			if st.MessagesReceived != uint64(len(want)) || st.MessagesFinished != uint64(len(want)) || st.Connections != 1 || st.RDY != tc.maxInFlight {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestNewConsumerErrors(t *testing.T) {
	t.Parallel()
	h := nsq.HandlerFunc(func(*nsq.Message) error { return nil })
	cases := []struct {
		name           string
		topic, channel string
		h              nsq.Handler
		cfg            *nsq.Config
		wantCode       string
	}{
		{"bad topic", "bad topic!", "ch", h, nil, nsq.ErrCodeBadTopic},
		{"bad channel", "t", "", h, nil, nsq.ErrCodeBadChannel},
		{"no handler", "t", "ch", nil, nil, ""},
		{"bad config", "t", "ch", h, &nsq.Config{HandlerConcurrency: -1}, ""},
		{"no heartbeats", "t", "ch", h, &nsq.Config{HeartbeatInterval: -1}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := nsq.NewConsumer(tc.topic, tc.channel, tc.h, tc.cfg)
			if err == nil {
				t.Fatal("NewConsumer succeeded")
			}
			var e *nsq.Error
			if tc.wantCode != "" && (!errors.As(err, &e) || e.Code != tc.wantCode) {
				t.Fatalf("err = %v, want code %s", err, tc.wantCode)
			}
		})
	}
}

func TestConsumerConnectFails(t *testing.T) {
	t.Parallel()
	c := newConsumer(t, "t", "ch", newCollector(), nil)
	if err := c.ConnectToNSQD(ctxTimeout(t, 5*time.Second), freePort(t)); err == nil {
		t.Fatal("ConnectToNSQD to a closed port succeeded")
	}
	if st := c.Stats(); st.Connections != 0 || st.ConnectErrors != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Requeue delays grow with attempts: DefaultRequeueDelay times the attempts.
func TestConsumerRequeueDelayGrows(t *testing.T) {
	t.Parallel()
	s := startNSQD(t, nil)
	publish(t, s, "retry", [][]byte{[]byte("x")})
	const unit = 100 * time.Millisecond
	cfg := nsq.NewConfig()
	cfg.DefaultRequeueDelay = unit
	cfg.MaxBackoffDuration = -1
	var (
		mu    sync.Mutex
		times []time.Time
	)
	h := nsq.HandlerFunc(func(m *nsq.Message) error {
		mu.Lock()
		defer mu.Unlock()
		times = append(times, time.Now())
		if m.Attempts < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	c := newConsumer(t, "retry", "ch", h, cfg)
	if err := c.ConnectToNSQD(ctxTimeout(t, 5*time.Second), s.tcpAddr()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return c.Stats().MessagesFinished == 1 }, "finished after 3 attempts")
	mu.Lock()
	defer mu.Unlock()
	if len(times) != 3 {
		t.Fatalf("handled %d times, want 3", len(times))
	}
	if d := times[1].Sub(times[0]); d < unit {
		t.Errorf("first requeue delay %v, want >= %v", d, unit)
	}
	if d := times[2].Sub(times[1]); d < 2*unit {
		t.Errorf("second requeue delay %v, want >= %v", d, 2*unit)
	}
	if st := c.Stats(); st.MessagesRequeued != 2 {
		t.Errorf("stats %+v: want 2 requeued", st)
	}
}

// giveUpCollector fails every message and records what its Consumer gives up on.
type giveUpCollector struct {
	calls  atomic.Int64
	gaveUp chan *nsq.Message
}

func (g *giveUpCollector) HandleMessage(m *nsq.Message) error {
	g.calls.Add(1)
	return errors.New("always fails")
}

func (g *giveUpCollector) GiveUp(m *nsq.Message) { g.gaveUp <- m }

func TestConsumerMaxAttemptsGivesUp(t *testing.T) {
	t.Parallel()
	s := startNSQD(t, nil)
	publish(t, s, "doomed", [][]byte{[]byte("poison")})
	cfg := nsq.NewConfig()
	cfg.MaxAttempts = 3
	cfg.DefaultRequeueDelay = -1 // at once
	cfg.MaxBackoffDuration = -1
	g := &giveUpCollector{gaveUp: make(chan *nsq.Message, 10)}
	c := newConsumer(t, "doomed", "ch", g, cfg)
	if err := c.ConnectToNSQD(ctxTimeout(t, 5*time.Second), s.tcpAddr()); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-g.gaveUp:
		if string(m.Body) != "poison" || m.Attempts != 4 {
			t.Errorf("gave up on %q after %d attempts, want poison after 4", m.Body, m.Attempts)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("GiveUp not called")
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return channelStats(s, "doomed", "ch").FinishCount == 1 }, "given-up message is finished")
	if n := g.calls.Load(); n != 3 {
		t.Errorf("handler called %d times, want 3", n)
	}
	if st := c.Stats(); st.MessagesGivenUp != 1 || st.MessagesRequeued != 3 {
		t.Errorf("stats %+v", st)
	}
}

// Stop drains: every message received before CLS is handled and finished, the rest stay
// on nsqd for the next consumer, and nothing is lost or handled twice.
func TestConsumerStopGraceful(t *testing.T) {
	t.Parallel()
	s := startNSQD(t, nil)
	want := bodies("graceful", 3000)
	publish(t, s, "graceful", want)
	col := newCollector()
	release := make(chan struct{})
	var once sync.Once
	slow := nsq.HandlerFunc(func(m *nsq.Message) error {
		if col.n.Load() > 200 {
			once.Do(func() { close(release) })
		}
		return col.HandleMessage(m)
	})
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 200
	cfg.HandlerConcurrency = 4
	cfg.Logger = testutil.Logger(t)
	c, err := nsq.NewConsumer("graceful", "ch", slow, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ConnectToNSQD(ctxTimeout(t, 5*time.Second), s.tcpAddr()); err != nil {
		t.Fatal(err)
	}
	<-release
	if err := c.Stop(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	first := col.n.Load()
	st := c.Stats()
	if st.InFlight != 0 || st.Connections != 0 || st.MessagesFinished != uint64(first) {
		t.Errorf("after Stop: stats %+v, handled %d", st, first)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return channelStats(s, "graceful", "ch").ClientCount == 0 }, "nsqd sees the client leave")
	cs := channelStats(s, "graceful", "ch")
	if cs.FinishCount != uint64(first) || cs.InFlightCount != 0 || cs.RequeueCount != 0 || cs.TimeoutCount != 0 {
		t.Errorf("nsqd channel after Stop: %+v, consumer handled %d", cs, first)
	}
	if first >= int64(len(want)) {
		t.Fatalf("the first consumer handled everything (%d): Stop was not exercised", first)
	}
	if err := c.ConnectToNSQD(context.Background(), s.tcpAddr()); !errors.Is(err, nsq.ErrStopped) {
		t.Errorf("ConnectToNSQD after Stop: %v, want ErrStopped", err)
	}

	// A second consumer gets exactly the rest.
	second := newConsumer(t, "graceful", "ch", col, nsq.NewConfig())
	if err := second.ConnectToNSQD(ctxTimeout(t, 5*time.Second), s.tcpAddr()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return col.n.Load() >= int64(len(want)) }, "handled %d of %d", col.n.Load, len(want))
	col.check(t, want)
}

// A Stop whose context ends closes the connections; nsqd requeues what was in flight.
func TestConsumerStopTimeout(t *testing.T) {
	t.Parallel()
	s := startNSQD(t, nil)
	publish(t, s, "stuck", [][]byte{[]byte("x")})
	entered := make(chan struct{})
	unblock := make(chan struct{})
	h := nsq.HandlerFunc(func(m *nsq.Message) error {
		close(entered)
		<-unblock
		return nil
	})
	cfg := nsq.NewConfig()
	cfg.Logger = testutil.Logger(t)
	c, err := nsq.NewConsumer("stuck", "ch", h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(unblock) })
	if err := c.ConnectToNSQD(ctxTimeout(t, 5*time.Second), s.tcpAddr()); err != nil {
		t.Fatal(err)
	}
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop = %v, want DeadlineExceeded", err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return channelStats(s, "stuck", "ch").Depth == 1 }, "nsqd requeues the message in flight")
}

func TestConsumerReconnectsAfterRestart(t *testing.T) {
	t.Parallel()
	addr, startAgain := restartableNSQD(t)
	first := startAgain()
	cfg := fastReconnectConfig()
	col := newCollector()
	c := newConsumer(t, "restart", "ch", col, cfg)
	if err := c.ConnectToNSQD(ctxTimeout(t, 5*time.Second), addr); err != nil {
		t.Fatal(err)
	}
	before := bodies("before", 10)
	publish(t, first, "restart", before)
	testutil.Eventually(t, 5*time.Second, func() bool { return col.n.Load() == 10 }, "handled before restart")
	// The FINs follow the handlers asynchronously; a stop before nsqd has them delivers the
	// unfinished messages again after the restart, as it must.
	testutil.Eventually(t, 5*time.Second, func() bool { return channelStats(first, "restart", "ch").FinishCount == 10 },
		"nsqd has the FINs before it stops")
	first.stop()
	testutil.Eventually(t, 5*time.Second, func() bool { return c.Stats().Connections == 0 }, "consumer notices nsqd went away")

	second := startAgain()
	testutil.Eventually(t, 5*time.Second, func() bool { return c.Stats().Connections == 1 }, "consumer reconnects")
	after := bodies("after", 10)
	publish(t, second, "restart", after)
	testutil.Eventually(t, 5*time.Second, func() bool { return col.n.Load() == 20 }, "handled after restart: %d", col.n.Load)
	col.check(t, append(before, after...))
	if st := c.Stats(); st.Connects != 2 {
		t.Errorf("stats %+v: want 2 connects", st)
	}
}

// go-nsq's Producer -> Tern nsqd -> our Consumer.
func TestInteropGoNSQProducerToConsumer(t *testing.T) {
	t.Parallel()
	s := startNSQD(t, nil)
	p, err := gonsq.NewProducer(s.tcpAddr(), gonsq.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	want := bodies("gonsq", 90)
	col := newCollector()
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 10
	c := newConsumer(t, "interop2", "ch", col, cfg)
	if err := c.ConnectToNSQD(ctxTimeout(t, 5*time.Second), s.tcpAddr()); err != nil {
		t.Fatal(err)
	}
	for _, b := range want[:30] {
		if err := p.Publish("interop2", b); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.MultiPublish("interop2", want[30:60]); err != nil {
		t.Fatal(err)
	}
	for _, b := range want[60:] {
		if err := p.DeferredPublish("interop2", 10*time.Millisecond, b); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return col.n.Load() >= int64(len(want)) }, "handled %d of %d", col.n.Load, len(want))
	col.check(t, want)
}

// A handler slower than the message timeout keeps its message with AutoTouch.
func TestConsumerAutoTouch(t *testing.T) {
	t.Parallel()
	s := startNSQD(t, nil)
	publish(t, s, "slow", [][]byte{[]byte("x")})
	cfg := nsq.NewConfig()
	cfg.MsgTimeout = time.Second
	cfg.AutoTouch = true
	var calls atomic.Int64
	h := nsq.HandlerFunc(func(m *nsq.Message) error {
		calls.Add(1)
		<-time.After(1600 * time.Millisecond) // the work: longer than the message timeout
		return nil
	})
	c := newConsumer(t, "slow", "ch", h, cfg)
	if err := c.ConnectToNSQD(ctxTimeout(t, 5*time.Second), s.tcpAddr()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return channelStats(s, "slow", "ch").FinishCount == 1 }, "message finished")
	if cs := channelStats(s, "slow", "ch"); cs.TimeoutCount != 0 || calls.Load() != 1 {
		t.Errorf("timeouts %d, handler calls %d: want 0 and 1", cs.TimeoutCount, calls.Load())
	}
}

// A handler may respond itself, later and from another goroutine.
func TestConsumerDisableAutoResponse(t *testing.T) {
	t.Parallel()
	s := startNSQD(t, nil)
	publish(t, s, "manual", bodies("m", 5))
	held := make(chan *nsq.Message, 5)
	h := nsq.HandlerFunc(func(m *nsq.Message) error {
		m.DisableAutoResponse()
		held <- m
		return errors.New("ignored: the application responds")
	})
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 5
	c := newConsumer(t, "manual", "ch", h, cfg)
	if err := c.ConnectToNSQD(ctxTimeout(t, 5*time.Second), s.tcpAddr()); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		m := <-held
		if m.HasResponded() {
			t.Fatal("message responded to before the application did")
		}
		go m.Finish()
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return channelStats(s, "manual", "ch").FinishCount == 5 }, "all finished")
	if st := c.Stats(); st.InFlight != 0 || st.MessagesRequeued != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestConsumerConfigValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cfg  nsq.Config
		want string // "" for valid
	}{
		{"defaults", nsq.Config{}, ""},
		{"negative concurrency", nsq.Config{HandlerConcurrency: -1}, "HandlerConcurrency"},
		{"requeue delay too long", nsq.Config{MaxRequeueDelay: 2 * time.Hour}, "MaxRequeueDelay"},
		{"backoff too long", nsq.Config{MaxBackoffDuration: 2 * time.Hour}, "MaxBackoffDuration"},
		{"backoff disabled", nsq.Config{MaxBackoffDuration: -1}, ""},
		{"redistribute too often", nsq.Config{RDYRedistributeInterval: time.Millisecond}, "RDYRedistributeInterval"},
		{"poll too often", nsq.Config{LookupdPollInterval: time.Millisecond}, "LookupdPollInterval"},
		{"jitter above 1", nsq.Config{LookupdPollJitter: 1.5}, "LookupdPollJitter"},
		{"no jitter", nsq.Config{LookupdPollJitter: -1}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !containsField(err, tc.want)):
				t.Fatalf("Validate = %v, want an error about %s", err, tc.want)
			}
		})
	}
}

func containsField(err error, field string) bool {
	return strings.Contains(err.Error(), "config "+field+":")
}

// DisconnectFromNSQD drains one connection and leaves the others.
func TestConsumerDisconnectFromNSQD(t *testing.T) {
	t.Parallel()
	s1, s2 := startNSQD(t, nil), startNSQD(t, nil)
	c := newConsumer(t, "dis", "ch", newCollector(), nil)
	for _, s := range []*server{s1, s2} {
		if err := c.ConnectToNSQD(ctxTimeout(t, 5*time.Second), s.tcpAddr()); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.DisconnectFromNSQD(s1.tcpAddr()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return c.Stats().Connections == 1 }, "one connection left")
	testutil.Eventually(t, 5*time.Second, func() bool { return channelStats(s1, "dis", "ch").ClientCount == 0 }, "nsqd sees the consumer leave")
	if err := c.DisconnectFromNSQD(s1.tcpAddr()); err == nil {
		t.Error("second DisconnectFromNSQD succeeded")
	}
}

// Stop leaves no goroutine behind: not the handlers', the connections', the RDY loop's
// nor the lookupd poller's. Not parallel, so that other tests' goroutines hold still.
func TestConsumerStopLeavesNoGoroutines(t *testing.T) {
	s := startNSQD(t, nil)
	l := newFakeLookupd(t, "leak")
	l.set(s.tcpAddr())
	publish(t, s, "leak", bodies("leak", 100))
	before := runtime.NumGoroutine()

	cfg := nsq.NewConfig()
	cfg.HandlerConcurrency = 4
	cfg.MaxInFlight = 10
	cfg.AutoTouch = true
	cfg.LookupdPollInterval = 20 * time.Millisecond
	cfg.Logger = testutil.Logger(t)
	col := newCollector()
	c, err := nsq.NewConsumer("leak", "ch", col, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ConnectToNSQLookupd(l.srv.URL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return col.n.Load() == 100 }, "handled %d", col.n.Load)
	if err := c.Stop(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	l.srv.CloseClientConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after Stop:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond) // polling the count, bounded by the deadline
	}
}
