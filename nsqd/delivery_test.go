package nsqd_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/internal/wiretest"
	"github.com/ternmq/tern/nsqd"
)

// counter consumes a channel over a raw connection at a given RDY, counting what it
// receives and, unless it holds, finishing it.
type counter struct {
	c    *wiretest.Conn
	n    atomic.Int64
	err  atomic.Pointer[error]
	done chan struct{}
}

func startCounter(t *testing.T, addr, topic, channel string, rdy int, hold bool) *counter {
	t.Helper()
	k := &counter{c: dialRaw(t, addr), done: make(chan struct{})}
	must(t, k.c.Subscribe(topic, channel, rdy))
	go func() {
		defer close(k.done)
		for {
			m, err := k.c.ExpectMessage()
			if err != nil {
				if !wiretest.IsClosed(err) {
					k.err.Store(&err)
				}
				return
			}
			k.n.Add(1)
			if !hold {
				if err := k.c.Send(protocol.Finish(m.ID)); err != nil {
					return
				}
			}
		}
	}()
	t.Cleanup(func() {
		k.c.Close()
		<-k.done
	})
	return k
}

// subscribedWithRDY reports whether a channel has want subscribers, each with its RDY
// applied (RDY has no answer, so only stats show that nsqd has read it).
func subscribedWithRDY(d *nsqd.NSQD, topic, channel string, want int) bool {
	cs, ok := d.ChannelStats(topic, channel)
	if !ok || len(cs.Clients) != want {
		return false
	}
	for _, c := range cs.Clients {
		if c.ReadyCount == 0 {
			return false
		}
	}
	return true
}

// fairnessCase publishes 400 messages to a channel with four consumers at RDY 1000 and
// checks that each receives 100 ± 25.
func fairnessCase(t *testing.T, publish func(t *testing.T, pub *wiretest.Conn, topic string, n int)) {
	addr, d, _ := startNSQD(t, nil)
	const total, consumers = 400, 4
	ks := make([]*counter, consumers)
	for i := range ks {
		ks[i] = startCounter(t, addr, "fair", "ch", 1000, false)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return subscribedWithRDY(d, "fair", "ch", consumers) },
		"consumers subscribed")
	publish(t, dialRaw(t, addr), "fair", total)
	sum := func() (s int64) {
		for _, k := range ks {
			s += k.n.Load()
		}
		return s
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return sum() == total }, "%d of %d delivered", sum, total)
	got := make([]int64, consumers)
	for i, k := range ks {
		got[i] = k.n.Load()
		if p := k.err.Load(); p != nil {
			t.Fatalf("consumer %d: %v", i, *p)
		}
	}
	t.Logf("split %v", got)
	for i, n := range got {
		if n < 75 || n > 125 {
			t.Errorf("consumer %d got %d of %d; split %v, want 100 ± 25 each", i, n, total, got)
		}
	}
}

// TestDeliveryIsFair checks NSQ's promise that a channel's consumers share its messages:
// Tern hands each ready batch out in proportion to the consumers' free RDY.
func TestDeliveryIsFair(t *testing.T) {
	t.Run("one MPUB", func(t *testing.T) {
		fairnessCase(t, func(t *testing.T, pub *wiretest.Conn, topic string, n int) {
			must(t, pub.Send(mpubCmd(topic, numbered("m", n)...)))
			must(t, pub.ExpectResponse(protocol.OK))
		})
	})
	t.Run("PUBs one at a time", func(t *testing.T) {
		fairnessCase(t, func(t *testing.T, pub *wiretest.Conn, topic string, n int) {
			for i := range n {
				must(t, pub.Publish(topic, fmt.Sprint("m", i)))
			}
		})
	})
	t.Run("PUBs pipelined", func(t *testing.T) {
		fairnessCase(t, func(t *testing.T, pub *wiretest.Conn, topic string, n int) {
			var cmds []*protocol.Command
			for i := range n {
				cmds = append(cmds, protocol.Publish(topic, fmt.Appendf(nil, "m%d", i)))
			}
			must(t, pub.Send(cmds...))
			for range n {
				must(t, pub.ExpectResponse(protocol.OK))
			}
		})
	})
}

// TestDeliveryStuckConsumerDoesNotStarveOthers has one consumer at RDY 10 that never
// finishes: it holds 10, and the others receive everything else.
func TestDeliveryStuckConsumerDoesNotStarveOthers(t *testing.T) {
	addr, d, _ := startNSQD(t, nil)
	stuck := startCounter(t, addr, "stuck", "ch", 10, true)
	others := []*counter{
		startCounter(t, addr, "stuck", "ch", 1000, false),
		startCounter(t, addr, "stuck", "ch", 1000, false),
		startCounter(t, addr, "stuck", "ch", 1000, false),
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return subscribedWithRDY(d, "stuck", "ch", 4) },
		"consumers subscribed")
	pub := dialRaw(t, addr)
	const rounds, perRound = 10, 100
	for i := range rounds {
		must(t, pub.Send(mpubCmd("stuck", numbered(fmt.Sprint("r", i, "-"), perRound)...)))
		must(t, pub.ExpectResponse(protocol.OK))
	}
	othersGot := func() (s int64) {
		for _, k := range others {
			s += k.n.Load()
		}
		return s
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return othersGot()+stuck.n.Load() == rounds*perRound },
		"stuck %d and the others %d of %d", stuck.n.Load, othersGot, rounds*perRound)
	if n := stuck.n.Load(); n > 10 {
		t.Fatalf("the stuck consumer received %d, over its RDY of 10", n)
	}
	// The others finish what they get; the stuck consumer's messages stay in flight.
	testutil.Eventually(t, 5*time.Second, func() bool {
		cs, _ := d.ChannelStats("stuck", "ch")
		return cs.Depth == 0 && cs.InFlightCount == int(stuck.n.Load())
	}, "channel %+v: want depth 0 and the stuck consumer's messages in flight", func() nsqd.ChannelStats {
		cs, _ := d.ChannelStats("stuck", "ch")
		return cs
	})
}

// TestChannelMessageCountIsRouted checks message_count the way nsq_stat uses it: ingress is
// its growth over an interval, and egress that less the growth of the depth. Messages routed
// to a channel count when they arrive, consumed or not, as in NSQ.
func TestChannelMessageCountIsRouted(t *testing.T) {
	addr, d, _ := startNSQD(t, func(o *nsqd.Options) { o.HTTPAddress = "" })
	_, err := d.CreateTopic("stat")
	must(t, err)
	_, err = d.CreateChannel("stat", "ch")
	must(t, err)
	snap := func() nsqd.ChannelStats {
		cs, ok := d.ChannelStats("stat", "ch")
		if !ok {
			t.Fatal("channel gone")
		}
		return cs
	}
	rates := func(o, c nsqd.ChannelStats) (ingress, egress int64) {
		ingress = int64(c.MessageCount - o.MessageCount)
		return ingress, ingress - (c.Depth - o.Depth)
	}

	// Interval 1: 50 published, nobody consuming.
	o := snap()
	must(t, d.Publish("stat", toBytes(numbered("m", 50)), 0))
	c := snap()
	if in, eg := rates(o, c); in != 50 || eg != 0 {
		t.Errorf("publishing to an idle channel: ingress %d egress %d, want 50 and 0", in, eg)
	}
	if c.MessageCount != 50 {
		t.Errorf("message_count %d, want the 50 routed", c.MessageCount)
	}

	// Interval 2: a consumer takes all 50.
	o = c
	k := startCounter(t, addr, "stat", "ch", 100, false)
	testutil.Eventually(t, 5*time.Second, func() bool { cs := snap(); return k.n.Load() == 50 && cs.Depth == 0 },
		"the consumer drained the channel")
	c = snap()
	if in, eg := rates(o, c); in != 0 || eg != 50 {
		t.Errorf("draining: ingress %d egress %d, want 0 and 50", in, eg)
	}
	if ts, _ := d.TopicStats("stat"); ts.MessageCount != c.MessageCount {
		t.Errorf("topic message_count %d, channel %d: a channel that existed from the start counts what its topic does",
			ts.MessageCount, c.MessageCount)
	}
}

// TestIdleMessageIsNotHeldInTheOutputBuffer checks that a message the pump has no company for
// is flushed at once, whatever the output buffer timeout: with RDY 100 and a 20 s timeout,
// a single message still arrives well within the timeout.
func TestIdleMessageIsNotHeldInTheOutputBuffer(t *testing.T) {
	addr, _, _ := startNSQD(t, nil)
	c := dialRaw(t, addr)
	_, err := c.Identify(`"output_buffer_timeout":20000`)
	must(t, err)
	must(t, c.Subscribe("idle", "ch", 100))
	c.Timeout = 10 * time.Second // half the buffer timeout: a held message fails the read
	for i := range 3 {
		must(t, dialRaw(t, addr).Publish("idle", fmt.Sprint("m", i)))
		m, err := c.ExpectMessage()
		must(t, err)
		must(t, c.Send(protocol.Finish(m.ID)))
	}
}
