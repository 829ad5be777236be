package nsq_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/nsq"
)

// Three nsqds and MaxInFlight 2: RDY 1 rotates, so every nsqd's messages are consumed and
// the RDY in force never exceeds MaxInFlight.
func TestConsumerRDYSpreadFewerThanNodes(t *testing.T) {
	t.Parallel()
	const perNode = 15
	servers := []*server{startNSQD(t, nil), startNSQD(t, nil), startNSQD(t, nil)}
	var want [][]byte
	for i, s := range servers {
		b := bodies(string(rune('a'+i)), perNode)
		publish(t, s, "spread", b)
		want = append(want, b...)
	}
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 2
	cfg.RDYRedistributeInterval = 20 * time.Millisecond
	col := newCollector()
	c := newConsumer(t, "spread", "ch", col, cfg)
	for _, s := range servers {
		if err := c.ConnectToNSQD(ctxTimeout(t, 5*time.Second), s.tcpAddr()); err != nil {
			t.Fatal(err)
		}
	}
	maxRDY := 0
	testutil.Eventually(t, 10*time.Second, func() bool {
		maxRDY = max(maxRDY, c.Stats().RDY)
		return col.n.Load() >= int64(len(want))
	}, "handled %d of %d", col.n.Load(), len(want))
	col.check(t, want)
	if maxRDY > 2 {
		t.Errorf("RDY in force reached %d, above MaxInFlight 2", maxRDY)
	}
	for i, s := range servers {
		if got := channelStats(s, "spread", "ch").FinishCount; got != perNode {
			t.Errorf("nsqd %d: %d finished, want %d", i, got, perNode)
		}
	}
}

// With MaxInFlight above the number of nsqds, a busy nsqd gets the RDY idle ones do not
// need, and an idle one keeps enough to notice new work.
func TestConsumerRDYFollowsNeed(t *testing.T) {
	t.Parallel()
	busy, idle := startNSQD(t, nil), startNSQD(t, nil)
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 10
	cfg.RDYRedistributeInterval = 20 * time.Millisecond
	release := make(chan struct{})
	h := nsq.HandlerFunc(func(m *nsq.Message) error {
		<-release // keep messages in flight, so that the nsqd stays busy
		return nil
	})
	cfg.HandlerConcurrency = 20
	c := newConsumer(t, "need", "ch", h, cfg)
	t.Cleanup(func() { close(release) }) // before Stop, which waits for the handlers
	for _, s := range []*server{busy, idle} {
		if err := c.ConnectToNSQD(ctxTimeout(t, 5*time.Second), s.tcpAddr()); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.Stats().Connections; n != 2 {
		t.Fatalf("%d connections after ConnectToNSQD returned, want 2", n)
	}
	// Nothing to do yet: an even split, as nsqd sees it.
	serverRDY := func(s *server) int64 {
		cs := channelStats(s, "need", "ch")
		if len(cs.Clients) != 1 {
			return -1
		}
		return cs.Clients[0].ReadyCount
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return serverRDY(busy) == 5 && serverRDY(idle) == 5 }, "RDY 5 each")
	publish(t, busy, "need", bodies("work", 50))
	// The idle nsqd has RDY 1 and the busy one the other 9, all in flight.
	var last string
	defer func() {
		if t.Failed() {
			t.Log(last)
		}
	}()
	testutil.Eventually(t, 5*time.Second, func() bool {
		inFlight, st := channelStats(busy, "need", "ch").InFlightCount, c.Stats()
		last = fmt.Sprintf("busy nsqd has %d in flight, consumer %+v", inFlight, st)
		return inFlight == 9 && st.RDY == 10
	}, "busy nsqd gets 9 in flight")
	// New work on the idle nsqd is noticed through its RDY 1.
	publish(t, idle, "need", bodies("more", 5))
	testutil.Eventually(t, 5*time.Second, func() bool { return channelStats(idle, "need", "ch").InFlightCount >= 1 },
		"idle nsqd delivers")
}

// Failures put the Consumer into backoff (RDY 0, then RDY 1 to test the waters) and
// successes bring it back to its full RDY.
func TestConsumerBackoff(t *testing.T) {
	t.Parallel()
	s := startNSQD(t, nil)
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 8
	cfg.BackoffMultiplier = 50 * time.Millisecond
	cfg.MaxBackoffDuration = time.Second
	cfg.DefaultRequeueDelay = -1
	col := newCollector()
	failing := make(chan bool, 1)
	failing <- true
	col.fail = func(m *nsq.Message) bool {
		f := <-failing
		failing <- f
		return f
	}
	c := newConsumer(t, "backoff", "ch", col, cfg)
	if err := c.ConnectToNSQD(ctxTimeout(t, 5*time.Second), s.tcpAddr()); err != nil {
		t.Fatal(err)
	}
	want := bodies("b", 20)
	publish(t, s, "backoff", want)
	testutil.Eventually(t, 5*time.Second, func() bool { return c.Stats().BackoffLevel >= 2 }, "backoff level rises with failures")
	// While backing off, RDY is 0 or 1 (testing the waters), never the full 8.
	for range 20 {
		if st := c.Stats(); st.RDY > 1 {
			t.Fatalf("RDY %d while backing off at level %d", st.RDY, st.BackoffLevel)
		}
	}
	<-failing
	failing <- false
	testutil.Eventually(t, 10*time.Second, func() bool { st := c.Stats(); return st.BackoffLevel == 0 && st.RDY == 8 },
		"backoff recovers: %+v", c.Stats)
	testutil.Eventually(t, 10*time.Second, func() bool { return col.n.Load() >= int64(len(want)) }, "handled %d", col.n.Load)
	col.check(t, want)
	if st := c.Stats(); st.MessagesRequeued == 0 {
		t.Errorf("stats %+v: want requeues", st)
	}
}

// TestConsumerNeverHoldsMoreThanMaxInFlight has handlers hold every message while the RDY
// distribution moves between two nsqds: nsqd takes nothing back when a connection's RDY is
// lowered, so what a connection holds must count against MaxInFlight when its share goes to
// the other. The total held, as both nsqds count it, never exceeds MaxInFlight.
func TestConsumerNeverHoldsMoreThanMaxInFlight(t *testing.T) {
	t.Parallel()
	a, b := startNSQD(t, nil), startNSQD(t, nil)
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 4
	cfg.RDYRedistributeInterval = 20 * time.Millisecond
	cfg.HandlerConcurrency = 10
	release := make(chan struct{})
	var handled atomic.Int64
	h := nsq.HandlerFunc(func(m *nsq.Message) error {
		<-release
		handled.Add(1)
		return nil
	})
	c := newConsumer(t, "held", "ch", h, cfg)
	t.Cleanup(func() { close(release) }) // before Stop, which waits for the handlers
	for _, s := range []*server{a, b} {
		if err := c.ConnectToNSQD(ctxTimeout(t, 5*time.Second), s.tcpAddr()); err != nil {
			t.Fatal(err)
		}
	}
	held := func() int {
		return channelStats(a, "held", "ch").InFlightCount + channelStats(b, "held", "ch").InFlightCount
	}
	serverRDY := func(s *server) int64 {
		if cs := channelStats(s, "held", "ch"); len(cs.Clients) == 1 {
			return cs.Clients[0].ReadyCount
		}
		return -1
	}
	// The first connection had all 4 until the second came; nsqd sees the split settle.
	testutil.Eventually(t, 5*time.Second, func() bool { return serverRDY(a) == 2 && serverRDY(b) == 2 },
		"RDY 2 each at the nsqds")
	most := 0
	watch := func(until func() bool, what string, args ...any) {
		t.Helper()
		testutil.Eventually(t, 5*time.Second, func() bool {
			most = max(most, held())
			return until()
		}, what, args...)
	}
	// a alone has work: it takes 3 (b keeps RDY 1 to notice work).
	publish(t, a, "held", bodies("a", 20))
	watch(func() bool { return channelStats(a, "held", "ch").InFlightCount == 3 }, "a holds 3: %v %v",
		func() any { return channelStats(a, "held", "ch") }, func() any { return channelStats(b, "held", "ch") })
	// Now b has work too: the split becomes 2 and 2, but a still holds 3.
	publish(t, b, "held", bodies("b", 20))
	watch(func() bool { return channelStats(b, "held", "ch").InFlightCount >= 1 }, "b delivers")
	// Several redistributions later, still no more than MaxInFlight.
	deadline := time.Now().Add(500 * time.Millisecond)
	watch(func() bool { return time.Now().After(deadline) }, "a few redistributions")
	if most > 4 {
		t.Fatalf("the consumer held %d messages at once, above MaxInFlight 4", most)
	}
	if handled.Load() != 0 {
		t.Fatal("a handler returned early")
	}
}

// TestConsumerChangeMaxInFlight changes MaxInFlight on a running Consumer: 0 stops delivery,
// a larger value takes effect at once.
func TestConsumerChangeMaxInFlight(t *testing.T) {
	t.Parallel()
	s := startNSQD(t, nil)
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 2
	release := make(chan struct{})
	h := nsq.HandlerFunc(func(m *nsq.Message) error { <-release; return nil })
	cfg.HandlerConcurrency = 10
	c := newConsumer(t, "change", "ch", h, cfg)
	t.Cleanup(func() { close(release) })
	if err := c.ConnectToNSQD(ctxTimeout(t, 5*time.Second), s.tcpAddr()); err != nil {
		t.Fatal(err)
	}
	publish(t, s, "change", bodies("m", 20))
	inFlight := func() int { return channelStats(s, "change", "ch").InFlightCount }
	testutil.Eventually(t, 5*time.Second, func() bool { return inFlight() == 2 }, "2 in flight, have %d", inFlight)
	if err := c.ChangeMaxInFlight(7); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return inFlight() == 7 && c.Stats().RDY == 7 },
		"7 in flight after ChangeMaxInFlight(7), have %d", inFlight)
	if err := c.ChangeMaxInFlight(0); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		cs := channelStats(s, "change", "ch")
		return len(cs.Clients) == 1 && cs.Clients[0].ReadyCount == 0
	}, "RDY 0 after ChangeMaxInFlight(0)")
	if err := c.ChangeMaxInFlight(-1); err == nil {
		t.Error("ChangeMaxInFlight(-1) accepted")
	}
}

// A Consumer whose handler holds every message it was sent is starved once a connection
// holds its RDY, and no longer once they are answered.
func TestConsumerIsStarved(t *testing.T) {
	t.Parallel()
	s := startNSQD(t, nil)
	publish(t, s, "starve", bodies("m", 10))
	held := make(chan *nsq.Message, 10)
	h := nsq.HandlerFunc(func(m *nsq.Message) error {
		m.DisableAutoResponse()
		held <- m
		return nil
	})
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 10
	c := newConsumer(t, "starve", "ch", h, cfg)
	if c.IsStarved() {
		t.Fatal("starved before connecting")
	}
	if err := c.ConnectToNSQD(ctxTimeout(t, 5*time.Second), s.tcpAddr()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return len(held) == 10 }, "%d of 10 messages held", func() int { return len(held) })
	if !c.IsStarved() {
		t.Errorf("not starved holding 10 messages at RDY 10; stats %+v", c.Stats())
	}
	for range 10 {
		(<-held).Finish()
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return c.Stats().InFlight == 0 }, "in flight %d", func() int64 { return c.Stats().InFlight })
	if c.IsStarved() {
		t.Error("starved with nothing in flight")
	}
}
