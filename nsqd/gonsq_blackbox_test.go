package nsqd_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	nsq "github.com/nsqio/go-nsq"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/nsqd"
)

// These tests drive the daemon with go-nsq v1.1.0, the client most NSQ users run, over real
// TCP sockets: what they check is what a user of NSQ would see.

func TestGoNSQPublishConsume(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		publish func(p *nsq.Producer, topic string, bodies []string) error
	}{
		{"PUB", func(p *nsq.Producer, topic string, bodies []string) error {
			for _, b := range bodies {
				if err := p.Publish(topic, []byte(b)); err != nil {
					return err
				}
			}
			return nil
		}},
		{"MPUB", func(p *nsq.Producer, topic string, bodies []string) error {
			for i := 0; i < len(bodies); i += 25 {
				if err := p.MultiPublish(topic, toBytes(bodies[i:min(i+25, len(bodies))])); err != nil {
					return err
				}
			}
			return nil
		}},
		{"PUB async", func(p *nsq.Producer, topic string, bodies []string) error {
			done := make(chan *nsq.ProducerTransaction, len(bodies))
			for _, b := range bodies {
				if err := p.PublishAsync(topic, []byte(b), done); err != nil {
					return err
				}
			}
			for range bodies {
				if tr := <-done; tr.Error != nil {
					return tr.Error
				}
			}
			return nil
		}},
		{"DPUB zero delay", func(p *nsq.Producer, topic string, bodies []string) error {
			for _, b := range bodies {
				if err := p.DeferredPublish(topic, 0, []byte(b)); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr, d, _ := startNSQD(t, nil)
			bodies := numbered("msg", 200)
			must(t, tc.publish(newProducer(t, addr, nil), "topic", bodies))

			cfg := nsq.NewConfig()
			cfg.MaxInFlight = 50
			col := &collector{}
			newConsumer(t, addr, "topic", "ch", cfg, col, 1)
			col.waitFor(t, len(bodies), 10*time.Second)
			testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "topic", "ch") }, "channel drained")
			checkExactlyOnce(t, col.bodies(), bodies)
			for _, r := range col.snapshot() {
				if r.attempts != 1 {
					t.Errorf("%q delivered with attempts %d, want 1", r.body, r.attempts)
				}
			}
			ts, _ := d.TopicStats("topic")
			if ts.MessageCount != uint64(len(bodies)) {
				t.Errorf("topic message count %d, want %d", ts.MessageCount, len(bodies))
			}
		})
	}
}

func TestGoNSQDeferredPublish(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	col := &collector{}
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 10
	newConsumer(t, addr, "deferred", "ch", cfg, col, 1)
	testutil.Eventually(t, 5*time.Second, func() bool {
		cs, ok := d.ChannelStats("deferred", "ch")
		return ok && cs.ClientCount == 1
	}, "consumer subscribed")

	p := newProducer(t, addr, nil)
	delays := []time.Duration{1200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}
	sent := make(map[string]time.Time)
	for _, delay := range delays {
		body := fmt.Sprintf("after-%v", delay)
		sent[body] = time.Now()
		must(t, p.DeferredPublish("deferred", delay, []byte(body)))
	}
	must(t, p.Publish("deferred", []byte("now")))

	col.waitFor(t, len(delays)+1, 10*time.Second)
	got := col.snapshot()
	if got[0].body != "now" {
		t.Errorf("first delivery %q, want the undeferred message", got[0].body)
	}
	for _, r := range got {
		if r.body == "now" {
			continue
		}
		var delay time.Duration
		if _, err := fmt.Sscanf(r.body, "after-%v", &delay); err != nil {
			t.Fatalf("body %q: %v", r.body, err)
		}
		if early := sent[r.body].Add(delay).Sub(r.at); early > 0 {
			t.Errorf("%q delivered %v before its delay of %v", r.body, early, delay)
		}
		if r.attempts != 1 {
			t.Errorf("%q attempts %d, want 1", r.body, r.attempts)
		}
	}
	// Deferred messages come out in due order, whatever their publish order.
	order := []string{got[1].body, got[2].body, got[3].body}
	want := []string{"after-400ms", "after-800ms", "after-1.2s"}
	if strings.Join(order, ",") != strings.Join(want, ",") {
		t.Errorf("deferred delivery order %v, want %v", order, want)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "deferred", "ch") }, "channel drained")
}

func TestGoNSQFanOutToChannels(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 20
	cols := map[string]*collector{"alpha": {}, "beta": {}}
	for ch, col := range cols {
		newConsumer(t, addr, "fanout", ch, cfg, col, 1)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		a, ok1 := d.ChannelStats("fanout", "alpha")
		b, ok2 := d.ChannelStats("fanout", "beta")
		return ok1 && ok2 && a.ClientCount == 1 && b.ClientCount == 1
	}, "both channels subscribed")

	bodies := numbered("fan", 300)
	must(t, newProducer(t, addr, nil).MultiPublish("fanout", toBytes(bodies)))
	for ch, col := range cols {
		col.waitFor(t, len(bodies), 10*time.Second)
		testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "fanout", ch) }, "channel %s drained", ch)
		t.Run(ch, func(t *testing.T) { checkExactlyOnce(t, col.bodies(), bodies) })
	}
}

func TestGoNSQSharedChannelExactlyOnce(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 8
	a, b := &collector{}, &collector{}
	newConsumer(t, addr, "shared", "workers", cfg, a, 2)
	newConsumer(t, addr, "shared", "workers", cfg, b, 2)
	testutil.Eventually(t, 5*time.Second, func() bool {
		cs, ok := d.ChannelStats("shared", "workers")
		return ok && cs.ClientCount == 2
	}, "two consumers subscribed")

	bodies := numbered("work", 2000)
	p := newProducer(t, addr, nil)
	for i := 0; i < len(bodies); i += 100 {
		must(t, p.MultiPublish("shared", toBytes(bodies[i:i+100])))
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return a.count()+b.count() >= len(bodies) }, "all delivered")
	testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "shared", "workers") }, "channel drained")

	got := a.bodies()
	for body, n := range b.bodies() {
		got[body] += n
	}
	checkExactlyOnce(t, got, bodies)
	if a.count() == 0 || b.count() == 0 {
		t.Errorf("one consumer got everything: %d and %d", a.count(), b.count())
	}
	t.Logf("split %d / %d", a.count(), b.count())
}

func TestGoNSQRequeueWithDelay(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	const delay = 700 * time.Millisecond
	var (
		mu         sync.Mutex
		deliveries []received
		requeuedAt time.Time
	)
	handler := nsq.HandlerFunc(func(m *nsq.Message) error {
		mu.Lock()
		defer mu.Unlock()
		deliveries = append(deliveries, received{body: string(m.Body), attempts: m.Attempts, id: m.ID, at: time.Now()})
		if len(deliveries) == 1 {
			requeuedAt = time.Now()
			m.RequeueWithoutBackoff(delay)
		}
		return nil // ignored for the requeued one: go-nsq responds once
	})
	newConsumer(t, addr, "requeue", "ch", nil, handler, 1)
	must(t, newProducer(t, addr, nil).Publish("requeue", []byte("again")))

	testutil.Eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(deliveries) >= 2
	}, "redelivery after REQ")
	testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "requeue", "ch") }, "channel drained")

	mu.Lock()
	defer mu.Unlock()
	if len(deliveries) != 2 {
		t.Fatalf("%d deliveries, want 2", len(deliveries))
	}
	first, second := deliveries[0], deliveries[1]
	if first.id != second.id || second.body != "again" {
		t.Errorf("redelivered %q (%s), want the same message %s", second.body, second.id[:], first.id[:])
	}
	if first.attempts != 1 || second.attempts != 2 {
		t.Errorf("attempts %d then %d, want 1 then 2", first.attempts, second.attempts)
	}
	if gap := second.at.Sub(requeuedAt); gap < delay {
		t.Errorf("redelivered %v after REQ, before its delay of %v", gap, delay)
	}
	if cs, _ := d.ChannelStats("requeue", "ch"); cs.RequeueCount != 1 || cs.TimeoutCount != 0 {
		t.Errorf("requeue count %d, timeout count %d; want 1 and 0", cs.RequeueCount, cs.TimeoutCount)
	}
}

func TestGoNSQTimeoutRedelivery(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	cfg := nsq.NewConfig()
	cfg.MsgTimeout = time.Second
	var (
		mu         sync.Mutex
		deliveries []*nsq.Message
		times      []time.Time
	)
	handler := nsq.HandlerFunc(func(m *nsq.Message) error {
		mu.Lock()
		defer mu.Unlock()
		deliveries = append(deliveries, m)
		times = append(times, time.Now())
		if len(deliveries) == 1 {
			m.DisableAutoResponse() // let it time out
		}
		return nil
	})
	newConsumer(t, addr, "timeout", "ch", cfg, handler, 1)
	must(t, newProducer(t, addr, nil).Publish("timeout", []byte("slow")))

	testutil.Eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(deliveries) >= 2
	}, "redelivery after the message timeout")
	mu.Lock()
	first, second := deliveries[0], deliveries[1]
	// The server starts the timeout when it writes the first delivery, a moment before this
	// consumer reads it, so the gap between the two readings can be a hair under a second.
	// The publish time is before the delivery: nothing may come back sooner than a second
	// after it.
	gap := times[1].Sub(time.Unix(0, first.Timestamp))
	mu.Unlock()
	if first.ID != second.ID || first.Attempts != 1 || second.Attempts != 2 {
		t.Errorf("deliveries %s attempts %d, then %s attempts %d; want the same message, attempts 1 then 2",
			first.ID[:], first.Attempts, second.ID[:], second.Attempts)
	}
	if gap < time.Second {
		t.Errorf("redelivered %v after the publish, before the 1s timeout", gap)
	}
	// A FIN for the timed-out delivery is refused (E_FIN_FAILED) but not fatal; answering it
	// also lets go-nsq close cleanly at the end of the test.
	first.Finish()
	testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "timeout", "ch") }, "channel drained")
	cs, _ := d.ChannelStats("timeout", "ch")
	if cs.TimeoutCount != 1 || cs.ClientCount != 1 {
		t.Errorf("timeout count %d, clients %d; want 1 and 1", cs.TimeoutCount, cs.ClientCount)
	}
}

func TestGoNSQTouchKeepsMessageAlive(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	cfg := nsq.NewConfig()
	cfg.MsgTimeout = time.Second
	const hold = 2500 * time.Millisecond // well past the timeout
	var deliveries atomic.Int32
	done := make(chan struct{})
	handler := nsq.HandlerFunc(func(m *nsq.Message) error {
		if deliveries.Add(1) > 1 {
			return nil
		}
		m.DisableAutoResponse()
		go func() {
			defer close(done)
			tick := time.NewTicker(250 * time.Millisecond) // simulated long work, touching as it goes
			defer tick.Stop()
			end := time.Now().Add(hold)
			for time.Now().Before(end) {
				<-tick.C
				m.Touch()
			}
			m.Finish()
		}()
		return nil
	})
	newConsumer(t, addr, "touch", "ch", cfg, handler, 1)
	must(t, newProducer(t, addr, nil).Publish("touch", []byte("long job")))

	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not finish")
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "touch", "ch") }, "channel drained")
	cs, _ := d.ChannelStats("touch", "ch")
	if n := deliveries.Load(); n != 1 || cs.TimeoutCount != 0 {
		t.Errorf("%d deliveries and %d timeouts, want 1 and 0: TOUCH did not keep the message alive", n, cs.TimeoutCount)
	}
}

func TestGoNSQMaxInFlight(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	const maxInFlight, total = 5, 60
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = maxInFlight
	var (
		outstanding atomic.Int32
		peak        atomic.Int32
		held        = make(chan *nsq.Message, total)
	)
	handler := nsq.HandlerFunc(func(m *nsq.Message) error {
		n := outstanding.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		m.DisableAutoResponse()
		held <- m
		return nil
	})
	// More handler goroutines than max_in_flight, so that the client never throttles itself
	// and the bound is the server's doing.
	newConsumer(t, addr, "inflight", "ch", cfg, handler, 2*maxInFlight)
	must(t, newProducer(t, addr, nil).MultiPublish("inflight", toBytes(numbered("m", total))))

	var hand []*nsq.Message
	finished := 0
	for finished < total {
		want := min(maxInFlight, total-finished)
		deadline := time.After(10 * time.Second)
		for len(hand) < want {
			select {
			case m := <-held:
				hand = append(hand, m)
			case <-deadline:
				t.Fatalf("holding %d messages after %d finished, want %d in flight", len(hand), finished, want)
			}
		}
		if cs, _ := d.ChannelStats("inflight", "ch"); cs.InFlightCount > maxInFlight {
			t.Fatalf("server has %d in flight, max_in_flight is %d", cs.InFlightCount, maxInFlight)
		}
		// Finish a varying number, so the server refills from different levels.
		n := 1 + finished%3
		for _, m := range hand[:min(n, len(hand))] {
			outstanding.Add(-1) // before FIN leaves, so a refill can never be counted early
			m.Finish()
			finished++
		}
		hand = hand[min(n, len(hand)):]
	}
	if p := peak.Load(); p != maxInFlight {
		t.Errorf("peak unacknowledged %d, want exactly max_in_flight %d", p, maxInFlight)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "inflight", "ch") }, "channel drained")
}

func TestGoNSQCompression(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		set  func(*nsq.Config)
	}{
		{"snappy", func(c *nsq.Config) { c.Snappy = true }},
		{"deflate", func(c *nsq.Config) { c.Deflate = true; c.DeflateLevel = 5 }},
		{"deflate max level", func(c *nsq.Config) { c.Deflate = true; c.DeflateLevel = 9 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr, d, _ := startNSQD(t, nil)
			pcfg := nsq.NewConfig()
			tc.set(pcfg)
			p := newProducer(t, addr, pcfg)

			// Compressible and incompressible bodies, small and large.
			var bodies []string
			for i := range 150 {
				switch i % 3 {
				case 0:
					bodies = append(bodies, fmt.Sprintf("%d:%s", i, strings.Repeat("abc", 1+i*20)))
				case 1:
					buf := make([]byte, 1+i*40)
					_, _ = rand.Read(buf)
					bodies = append(bodies, fmt.Sprintf("%d:%s", i, buf))
				default:
					bodies = append(bodies, fmt.Sprintf("%d:short", i))
				}
			}
			for i, b := range bodies {
				if i%2 == 0 {
					must(t, p.Publish("compressed", []byte(b)))
				}
			}
			var odd [][]byte
			for i, b := range bodies {
				if i%2 == 1 {
					odd = append(odd, []byte(b))
				}
			}
			must(t, p.MultiPublish("compressed", odd))

			ccfg := nsq.NewConfig()
			tc.set(ccfg)
			ccfg.MaxInFlight = 30
			col := &collector{}
			newConsumer(t, addr, "compressed", "ch", ccfg, col, 1)
			col.waitFor(t, len(bodies), 10*time.Second)
			testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "compressed", "ch") }, "channel drained")
			checkExactlyOnce(t, col.bodies(), bodies)
		})
	}
}

func TestGoNSQHeartbeatsKeepIdleConnection(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	cfg := nsq.NewConfig()
	cfg.HeartbeatInterval = time.Second
	col := &collector{}
	c := newConsumer(t, addr, "idle", "ch", cfg, col, 1)
	connected := func() bool {
		cs, ok := d.ChannelStats("idle", "ch")
		return ok && cs.ClientCount == 1 && c.Stats().Connections == 1
	}
	testutil.Eventually(t, 5*time.Second, connected, "consumer subscribed")
	// The server drops a client it hears nothing from for two intervals; go-nsq answers each
	// heartbeat with NOP, which must be enough to stay connected.
	holdsFor(t, 3500*time.Millisecond, connected, "idle consumer with 1s heartbeats stays connected")
	must(t, newProducer(t, addr, nil).Publish("idle", []byte("wake up")))
	col.waitFor(t, 1, 5*time.Second)
}

func TestGoNSQBadTopicNames(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	cases := []struct {
		topic string
		ok    bool
	}{
		{"valid.name_with-chars", true},
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 54) + "#ephemeral", true},
		{strings.Repeat("a", 65), false},
		{strings.Repeat("a", 55) + "#ephemeral", false},
		{"bad*name", false},
		{"bad/name", false},
		{"#ephemeral", false},
		{"name#other", false},
		{"name#ephemeral#ephemeral", false},
		{"ünïcode", false},
	}
	for _, tc := range cases {
		// A fresh producer each time: a rejected name is a fatal error that closes the
		// connection under the producer.
		err := newProducer(t, addr, nil).Publish(tc.topic, []byte("x"))
		switch {
		case tc.ok && err != nil:
			t.Errorf("PUB to %q: %v", tc.topic, err)
		case !tc.ok && (err == nil || !strings.Contains(err.Error(), "E_BAD_TOPIC")):
			t.Errorf("PUB to %q: got %v, want E_BAD_TOPIC", tc.topic, err)
		}
		if !tc.ok && d.Topic(tc.topic) != nil {
			t.Errorf("invalid topic %q was created", tc.topic)
		}
	}
}

func TestGoNSQOversizedMessageRejected(t *testing.T) {
	t.Parallel()
	const maxMsg = 1024
	addr, d, _ := startNSQD(t, func(o *nsqd.Options) {
		o.MaxMsgSize = maxMsg
		o.MaxBodySize = 64 * maxMsg
	})
	col := &collector{}
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 50
	newConsumer(t, addr, "sized", "ch", cfg, col, 1)

	// A well-behaved producer publishes messages of exactly the limit while another keeps
	// sending oversized ones.
	var good []string
	for i := range 200 {
		b := fmt.Sprintf("%04d", i)
		good = append(good, b+strings.Repeat("x", maxMsg-len(b)))
	}
	// A rejected message is a fatal error that closes the connection under the producer, so
	// each bad publish gets a fresh one.
	const rounds = 20
	badProducers := make([]*nsq.Producer, 2*rounds)
	for i := range badProducers {
		badProducers[i] = newProducer(t, addr, nil)
	}
	var wg sync.WaitGroup
	badErrs := make(chan error, 2*rounds)
	wg.Go(func() {
		for i := range rounds {
			big := bytes.Repeat([]byte("y"), maxMsg+1+i)
			badErrs <- badProducers[2*i].Publish("sized", big)
			badErrs <- badProducers[2*i+1].MultiPublish("sized", [][]byte{[]byte("fine"), big})
		}
	})
	p := newProducer(t, addr, nil)
	for i, b := range good {
		if err := p.Publish("sized", []byte(b)); err != nil {
			t.Fatalf("good PUB %d: %v", i, err)
		}
	}
	wg.Wait()
	close(badErrs)
	for err := range badErrs {
		var perr nsq.ErrProtocol
		if !errors.As(err, &perr) || !strings.HasPrefix(perr.Error(), "E_BAD_MESSAGE") {
			t.Errorf("oversized publish: got %v, want E_BAD_MESSAGE", err)
		}
	}
	col.waitFor(t, len(good), 10*time.Second)
	testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "sized", "ch") }, "channel drained")
	checkExactlyOnce(t, col.bodies(), good) // the valid half of a rejected MPUB is not stored
}

// TestGoNSQManyProducersAndConsumers publishes from several producers at once to a topic with
// two channels, one shared by three consumers that requeue some messages, and checks that
// every message is finished exactly once on each channel.
func TestGoNSQManyProducersAndConsumers(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)

	type finisher struct {
		mu       sync.Mutex
		finished map[string]int
		requeued int
	}
	newFinisher := func() *finisher { return &finisher{finished: map[string]int{}} }
	handler := func(f *finisher, requeueEvery int) nsq.Handler {
		return nsq.HandlerFunc(func(m *nsq.Message) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			// Requeue the first delivery of every requeueEvery-th message, at once.
			if requeueEvery > 0 && m.Attempts == 1 && len(m.Body)%requeueEvery == 0 {
				f.requeued++
				m.RequeueWithoutBackoff(0)
				return nil
			}
			f.finished[string(m.Body)]++
			return nil
		})
	}
	total := func(f *finisher) int {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.finished)
	}

	shared, solo := newFinisher(), newFinisher()
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 16
	for range 3 {
		newConsumer(t, addr, "busy", "shared", cfg, handler(shared, 7), 4)
	}
	newConsumer(t, addr, "busy", "solo", cfg, handler(solo, 0), 4)
	testutil.Eventually(t, 5*time.Second, func() bool {
		a, ok1 := d.ChannelStats("busy", "shared")
		b, ok2 := d.ChannelStats("busy", "solo")
		return ok1 && ok2 && a.ClientCount == 3 && b.ClientCount == 1
	}, "consumers subscribed")

	const producers, each = 4, 500
	var all []string
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for p := range producers {
		bodies := numbered(fmt.Sprintf("p%d-%s", p, strings.Repeat("x", p)), each)
		all = append(all, bodies...)
		prod := newProducer(t, addr, nil)
		wg.Go(func() {
			for i := 0; i < len(bodies); {
				if i%3 == 0 {
					n := min(10, len(bodies)-i)
					if err := prod.MultiPublish("busy", toBytes(bodies[i:i+n])); err != nil {
						errs <- err
						return
					}
					i += n
					continue
				}
				if err := prod.Publish("busy", []byte(bodies[i])); err != nil {
					errs <- err
					return
				}
				i++
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("publish: %v", err)
	}

	testutil.Eventually(t, 30*time.Second, func() bool { return total(shared) == len(all) && total(solo) == len(all) }, "every message finished on both channels")
	testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "busy", "shared") && drained(d, "busy", "solo") }, "channels drained")
	for name, f := range map[string]*finisher{"shared": shared, "solo": solo} {
		f.mu.Lock()
		checkExactlyOnce(t, f.finished, all)
		f.mu.Unlock()
		t.Logf("%s: %d finished, %d requeued", name, len(all), f.requeued)
	}
	shared.mu.Lock()
	requeued := shared.requeued
	shared.mu.Unlock()
	if cs, _ := d.ChannelStats("busy", "shared"); cs.RequeueCount != uint64(requeued) {
		t.Errorf("shared channel requeue count %d, consumers requeued %d", cs.RequeueCount, requeued)
	}
}
