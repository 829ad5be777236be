package nsqd_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	nsq "github.com/nsqio/go-nsq"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/internal/wiretest"
	"github.com/ternmq/tern/nsqd"
)

// These tests drive the engine's administration calls (what the HTTP API and nsqadmin will
// use) while real clients are connected, and check what the clients see.

// consume connects a go-nsq consumer that finishes everything and returns its collector,
// once the daemon counts it as a client of the channel.
func consume(t *testing.T, addr string, d *nsqd.NSQD, topic, channel string) *collector {
	t.Helper()
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 20
	col := &collector{}
	newConsumer(t, addr, topic, channel, cfg, col, 1)
	testutil.Eventually(t, 5*time.Second, func() bool {
		cs, ok := d.ChannelStats(topic, channel)
		return ok && cs.ClientCount >= 1
	}, "consumer of %s/%s subscribed", topic, channel)
	return col
}

// barrier publishes to a topic of its own and waits for the message to be consumed: by then
// the daemon has had every chance to deliver what it should not have.
type barrier struct {
	t    *testing.T
	d    *nsqd.NSQD
	col  *collector
	seen int
}

func newBarrier(t *testing.T, addr string, d *nsqd.NSQD) *barrier {
	return &barrier{t: t, d: d, col: consume(t, addr, d, "barrier", "ch")}
}

func (b *barrier) pass() {
	b.t.Helper()
	must(b.t, b.d.Publish("barrier", [][]byte{[]byte("sync")}, 0))
	b.seen++
	b.col.waitFor(b.t, b.seen, 5*time.Second)
}

func TestEnginePauseTopic(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	col := consume(t, addr, d, "pt", "ch")
	b := newBarrier(t, addr, d)

	before := numbered("before", 3)
	must(t, d.Publish("pt", toBytes(before), 0))
	col.waitFor(t, 3, 5*time.Second)

	must(t, d.PauseTopic("pt", true))
	if ts, _ := d.TopicStats("pt"); !ts.Paused || !d.Topic("pt").Paused() {
		t.Fatalf("topic not reported paused")
	}
	// Publishing to a paused topic is accepted; the topic holds the messages.
	during := numbered("during", 5)
	must(t, newProducer(t, addr, nil).MultiPublish("pt", toBytes(during)))
	testutil.Eventually(t, 5*time.Second, func() bool {
		ts, _ := d.TopicStats("pt")
		cs, _ := d.ChannelStats("pt", "ch")
		return ts.Depth == 5 && cs.Depth == 0
	}, "paused topic holds 5 messages")
	// A channel created during the pause starts where the pause froze the topic, so it gets
	// what the topic held back, as in NSQ.
	_, err := d.CreateChannel("pt", "late")
	must(t, err)
	b.pass()
	if n := col.count(); n != 3 {
		t.Fatalf("%d messages delivered, want 3: a paused topic delivered", n)
	}

	must(t, d.PauseTopic("pt", false))
	col.waitFor(t, 8, 5*time.Second)
	testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "pt", "ch") }, "channel drained")
	checkExactlyOnce(t, col.bodies(), append(before, during...))
	late := consume(t, addr, d, "pt", "late")
	late.waitFor(t, 5, 5*time.Second)
	testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "pt", "late") }, "late channel drained")
	checkExactlyOnce(t, late.bodies(), during)
	if ts, _ := d.TopicStats("pt"); ts.Paused || ts.Depth != 0 {
		t.Errorf("after unpause: paused %v, depth %d", ts.Paused, ts.Depth)
	}
}

func TestEnginePauseChannel(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	a := consume(t, addr, d, "pc", "a")
	other := consume(t, addr, d, "pc", "b")

	must(t, d.PauseChannel("pc", "a", true))
	if cs, _ := d.ChannelStats("pc", "a"); !cs.Paused {
		t.Fatalf("channel a not reported paused")
	}
	bodies := numbered("m", 10)
	must(t, d.Publish("pc", toBytes(bodies), 0))
	// The unpaused channel getting everything is the barrier for the paused one.
	other.waitFor(t, 10, 5*time.Second)
	testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "pc", "b") }, "channel b drained")
	if n := a.count(); n != 0 {
		t.Fatalf("paused channel delivered %d messages", n)
	}
	if cs, _ := d.ChannelStats("pc", "a"); cs.Depth != 10 || cs.InFlightCount != 0 {
		t.Errorf("paused channel: depth %d, in flight %d; want 10 and 0", cs.Depth, cs.InFlightCount)
	}

	must(t, d.PauseChannel("pc", "a", false))
	a.waitFor(t, 10, 5*time.Second)
	testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "pc", "a") }, "channel a drained")
	checkExactlyOnce(t, a.bodies(), bodies)
	checkExactlyOnce(t, other.bodies(), bodies)
}

func TestEnginePausedChannelStillAcceptsFIN(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	c := dialRaw(t, addr)
	must(t, c.Subscribe("pf", "ch", 5))
	// Published by another client: on a subscribed connection the message may overtake the OK.
	must(t, d.Publish("pf", [][]byte{[]byte("held")}, 0))
	m, err := c.ExpectMessage()
	must(t, err)
	must(t, d.PauseChannel("pf", "ch", true))
	// FIN has no answer; the PUB after it would be preceded by an error frame if it failed.
	must(t, c.Send(protocol.Finish(m.ID)))
	must(t, c.Publish("pf", "while paused"))
	if cs, _ := d.ChannelStats("pf", "ch"); cs.InFlightCount != 0 || cs.Depth != 1 {
		t.Errorf("in flight %d, depth %d; want 0 and 1", cs.InFlightCount, cs.Depth)
	}
	must(t, d.PauseChannel("pf", "ch", false))
	m2, err := c.ExpectMessage()
	must(t, err)
	if m2.Body != "while paused" {
		t.Errorf("got %q after unpause", m2.Body)
	}
}

func TestEngineEmptyTopic(t *testing.T) {
	t.Parallel()
	t.Run("without channels", func(t *testing.T) {
		t.Parallel()
		addr, d, _ := startNSQD(t, nil)
		must(t, d.Publish("et", toBytes(numbered("old", 10)), 0))
		if ts, _ := d.TopicStats("et"); ts.Depth != 10 {
			t.Fatalf("depth %d before empty, want 10", ts.Depth)
		}
		must(t, d.EmptyTopic("et"))
		if ts, _ := d.TopicStats("et"); ts.Depth != 0 {
			t.Fatalf("depth %d after empty, want 0", ts.Depth)
		}
		fresh := numbered("new", 3)
		must(t, d.Publish("et", toBytes(fresh), 0))
		col := consume(t, addr, d, "et", "ch")
		col.waitFor(t, 3, 5*time.Second)
		testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "et", "ch") }, "channel drained")
		checkExactlyOnce(t, col.bodies(), fresh)
	})
	t.Run("paused with a channel", func(t *testing.T) {
		t.Parallel()
		addr, d, _ := startNSQD(t, nil)
		col := consume(t, addr, d, "etp", "ch")
		must(t, d.PauseTopic("etp", true))
		must(t, d.Publish("etp", toBytes(numbered("held", 4)), 0))
		must(t, d.EmptyTopic("etp"))
		if ts, _ := d.TopicStats("etp"); ts.Depth != 0 {
			t.Fatalf("depth %d after empty, want 0", ts.Depth)
		}
		must(t, d.PauseTopic("etp", false))
		must(t, d.Publish("etp", [][]byte{[]byte("after")}, 0))
		col.waitFor(t, 1, 5*time.Second)
		testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "etp", "ch") }, "channel drained")
		checkExactlyOnce(t, col.bodies(), []string{"after"})
	})
}

func TestEngineEmptyChannel(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	_, err := d.CreateTopic("ec")
	must(t, err)
	_, err = d.CreateChannel("ec", "ch")
	must(t, err)
	must(t, d.Publish("ec", toBytes(numbered("old", 10)), 0))
	testutil.Eventually(t, 5*time.Second, func() bool {
		cs, _ := d.ChannelStats("ec", "ch")
		return cs.Depth == 10
	}, "channel depth 10")

	c := dialRaw(t, addr)
	must(t, c.Subscribe("ec", "ch", 2))
	var held []wiretest.Message
	for range 2 {
		m, err := c.ExpectMessage()
		must(t, err)
		held = append(held, m)
	}
	must(t, d.EmptyChannel("ec", "ch"))
	if cs, _ := d.ChannelStats("ec", "ch"); cs.Depth != 0 || cs.InFlightCount != 0 || cs.ClientCount != 1 {
		t.Fatalf("after empty: depth %d, in flight %d, clients %d; want 0, 0, 1", cs.Depth, cs.InFlightCount, cs.ClientCount)
	}
	// What was in flight is gone: FIN fails, without closing the connection.
	must(t, c.Send(protocol.Finish(held[0].ID)))
	must(t, c.ExpectError("E_FIN_FAILED"))

	fresh := numbered("new", 3)
	must(t, d.Publish("ec", toBytes(fresh), 0))
	must(t, c.Send(protocol.Ready(10)))
	got := map[string]int{}
	for range 3 {
		m, err := c.ExpectMessage()
		must(t, err)
		got[m.Body]++
		must(t, c.Send(protocol.Finish(m.ID)))
	}
	checkExactlyOnce(t, got, fresh)
	testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "ec", "ch") }, "channel drained")
}

func TestEngineDeleteTopic(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	c := dialRaw(t, addr)
	must(t, c.Subscribe("dt", "ch", 0))
	must(t, d.Publish("dt", toBytes(numbered("old", 5)), 0))

	must(t, d.DeleteTopic("dt"))
	must(t, c.ExpectClosed())
	if d.Topic("dt") != nil {
		t.Fatal("deleted topic still returned by Topic")
	}
	if _, ok := d.TopicStats("dt"); ok {
		t.Fatal("deleted topic still in stats")
	}
	if err := d.DeleteTopic("dt"); !errors.Is(err, nsqd.ErrTopicNotFound) {
		t.Errorf("second delete: %v, want ErrTopicNotFound", err)
	}

	// Publishing again makes a new, empty topic: nothing of the old one comes back.
	must(t, d.Publish("dt", [][]byte{[]byte("reborn")}, 0))
	if ts, _ := d.TopicStats("dt"); ts.MessageCount != 1 || ts.Depth != 1 || len(ts.Channels) != 0 {
		t.Fatalf("recreated topic: %+v", ts)
	}
	col := consume(t, addr, d, "dt", "ch")
	col.waitFor(t, 1, 5*time.Second)
	testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "dt", "ch") }, "channel drained")
	checkExactlyOnce(t, col.bodies(), []string{"reborn"})
}

func TestEngineDeleteChannel(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	a, b := dialRaw(t, addr), dialRaw(t, addr)
	must(t, a.Subscribe("dc", "a", 10))
	must(t, b.Subscribe("dc", "b", 10))

	must(t, d.DeleteChannel("dc", "a"))
	must(t, a.ExpectClosed())
	ts, _ := d.TopicStats("dc")
	if len(ts.Channels) != 1 || ts.Channels[0].Name != "b" {
		t.Fatalf("channels after deleting a: %+v", ts.Channels)
	}
	if err := d.DeleteChannel("dc", "a"); !errors.Is(err, nsqd.ErrChannelNotFound) {
		t.Errorf("second delete: %v, want ErrChannelNotFound", err)
	}
	must(t, d.Publish("dc", [][]byte{[]byte("to b")}, 0))
	m, err := b.ExpectMessage()
	must(t, err)
	must(t, b.Send(protocol.Finish(m.ID)))
	must(t, b.Usable())

	// With its last channel gone the topic keeps what is published, for the next channel,
	// which does not see what the deleted ones consumed.
	must(t, d.DeleteChannel("dc", "b"))
	must(t, b.ExpectClosed())
	kept := numbered("kept", 2)
	must(t, d.Publish("dc", toBytes(kept), 0))
	if ts, _ := d.TopicStats("dc"); ts.Depth != 2 {
		t.Errorf("topic without channels: depth %d, want 2", ts.Depth)
	}
	col := consume(t, addr, d, "dc", "c")
	col.waitFor(t, 2, 5*time.Second)
	testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "dc", "c") }, "channel drained")
	checkExactlyOnce(t, col.bodies(), kept)
}

func TestEngineEphemeral(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, topic, channel string
		gone                 func(d *nsqd.NSQD) bool
	}{
		{"channel", "eph", "ch#ephemeral", func(d *nsqd.NSQD) bool {
			t := d.Topic("eph")
			return t != nil && t.Channel("ch#ephemeral") == nil
		}},
		{"topic and channel", "eph#ephemeral", "ch#ephemeral", func(d *nsqd.NSQD) bool { return d.Topic("eph#ephemeral") == nil }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr, d, _ := startNSQD(t, nil)
			first, second := dialRaw(t, addr), dialRaw(t, addr)
			must(t, first.Subscribe(tc.topic, tc.channel, 1))
			must(t, second.Subscribe(tc.topic, tc.channel, 1))
			must(t, d.Publish(tc.topic, [][]byte{[]byte("x")}, 0))
			// Whichever client got it, it is delivered; then the first client leaves.
			first.Close()
			testutil.Eventually(t, 5*time.Second, func() bool {
				cs, ok := d.ChannelStats(tc.topic, tc.channel)
				return ok && cs.ClientCount == 1
			}, "one client left")
			if tc.gone(d) {
				t.Fatal("ephemeral channel or topic went away while a client remained")
			}
			m, err := second.ExpectMessage()
			must(t, err)
			if m.Body != "x" {
				t.Errorf("got %q", m.Body)
			}
			second.Close()
			testutil.Eventually(t, 5*time.Second, func() bool { return tc.gone(d) }, "ephemeral %s removed with its last client", tc.name)
		})
	}
}

// An ephemeral topic goes with its last channel, as in NSQ; a durable channel outlives its
// clients, so the topic stays until that channel is deleted.
func TestEngineEphemeralTopicGoesWithLastChannel(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	c := dialRaw(t, addr)
	must(t, c.Subscribe("eph#ephemeral", "durable", 1))
	c.Close()
	testutil.Eventually(t, 5*time.Second, func() bool {
		cs, ok := d.ChannelStats("eph#ephemeral", "durable")
		return ok && cs.ClientCount == 0
	}, "client gone, channel kept")
	if d.Topic("eph#ephemeral") == nil {
		t.Fatal("ephemeral topic deleted while it still has a channel")
	}
	must(t, d.DeleteChannel("eph#ephemeral", "durable"))
	testutil.Eventually(t, 5*time.Second, func() bool { return d.Topic("eph#ephemeral") == nil }, "ephemeral topic removed with its last channel")
}

// An ephemeral topic lives in memory, bounded by --mem-queue-size: a flood with nobody
// reading drops messages instead of growing without limit or blocking the publisher.
func TestEngineEphemeralTopicIsBounded(t *testing.T) {
	t.Parallel()
	const bound = 10
	addr, d, _ := startNSQD(t, func(o *nsqd.Options) { o.MemQueueSize = bound })
	c := dialRaw(t, addr)
	must(t, c.Subscribe("flood#ephemeral", "ch", 0))
	p := newProducer(t, addr, nil)
	for i := range 50 {
		must(t, p.Publish("flood#ephemeral", []byte(fmt.Sprint(i))))
	}
	cs, _ := d.ChannelStats("flood#ephemeral", "ch")
	if cs.Depth > bound {
		t.Errorf("ephemeral channel depth %d, want at most --mem-queue-size %d", cs.Depth, bound)
	}
	must(t, c.Send(protocol.Ready(100)))
	got := 0
	for {
		m, err := c.ExpectMessage()
		must(t, err)
		got++
		must(t, c.Send(protocol.Finish(m.ID)))
		if m.Body == "49" {
			break // the newest is kept; it comes last
		}
	}
	if got > bound {
		t.Errorf("delivered %d messages from an ephemeral topic bounded at %d", got, bound)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "flood#ephemeral", "ch") }, "channel drained")

	// The same holds for an ephemeral topic that has no channel yet.
	for i := range 50 {
		must(t, p.Publish("nochan#ephemeral", []byte(fmt.Sprint(i))))
	}
	if ts, _ := d.TopicStats("nochan#ephemeral"); ts.Depth > bound {
		t.Errorf("ephemeral topic depth %d, want at most --mem-queue-size %d", ts.Depth, bound)
	}
}

func TestEngineBacklogGoesToFirstChannelOnly(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	backlog := numbered("backlog", 5)
	must(t, d.Publish("bl", toBytes(backlog), 0))
	if ts, _ := d.TopicStats("bl"); ts.Depth != 5 {
		t.Fatalf("topic depth %d before any channel, want 5", ts.Depth)
	}
	first := consume(t, addr, d, "bl", "first")
	first.waitFor(t, 5, 5*time.Second)

	_, err := d.CreateChannel("bl", "later")
	must(t, err)
	if cs, _ := d.ChannelStats("bl", "later"); cs.Depth != 0 {
		t.Fatalf("later channel starts with depth %d, want 0", cs.Depth)
	}
	fresh := numbered("fresh", 3)
	must(t, d.Publish("bl", toBytes(fresh), 0))
	later := consume(t, addr, d, "bl", "later")
	first.waitFor(t, 8, 5*time.Second)
	later.waitFor(t, 3, 5*time.Second)
	testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "bl", "first") && drained(d, "bl", "later") }, "channels drained")
	checkExactlyOnce(t, first.bodies(), append(backlog, fresh...))
	checkExactlyOnce(t, later.bodies(), fresh)
}

func TestEnginePublishDeferred(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	col := consume(t, addr, d, "ed", "ch")
	const delay = 500 * time.Millisecond
	start := time.Now()
	must(t, d.Publish("ed", [][]byte{[]byte("a"), []byte("b")}, delay))
	col.waitFor(t, 2, 5*time.Second)
	for _, r := range col.snapshot() {
		if early := start.Add(delay).Sub(r.at); early > 0 {
			t.Errorf("%q delivered %v early", r.body, early)
		}
	}
}

func TestEngineAdminErrors(t *testing.T) {
	t.Parallel()
	_, d, _ := startNSQD(t, nil)
	_, err := d.CreateTopic("exists")
	must(t, err)
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"CreateTopic invalid", second(d.CreateTopic("bad*name")), nsqd.ErrInvalidName},
		{"CreateChannel invalid", second(d.CreateChannel("exists", "bad*name")), nsqd.ErrInvalidName},
		{"CreateChannel missing topic", second(d.CreateChannel("missing", "ch")), nsqd.ErrTopicNotFound},
		{"Publish invalid", d.Publish("bad*name", [][]byte{[]byte("x")}, 0), nsqd.ErrInvalidName},
		{"DeleteTopic missing", d.DeleteTopic("missing"), nsqd.ErrTopicNotFound},
		{"EmptyTopic missing", d.EmptyTopic("missing"), nsqd.ErrTopicNotFound},
		{"PauseTopic missing", d.PauseTopic("missing", true), nsqd.ErrTopicNotFound},
		{"DeleteChannel missing topic", d.DeleteChannel("missing", "ch"), nsqd.ErrTopicNotFound},
		{"DeleteChannel missing", d.DeleteChannel("exists", "missing"), nsqd.ErrChannelNotFound},
		{"EmptyChannel missing", d.EmptyChannel("exists", "missing"), nsqd.ErrChannelNotFound},
		{"PauseChannel missing", d.PauseChannel("exists", "missing", true), nsqd.ErrChannelNotFound},
	}
	for _, tc := range cases {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	if d.Topic("bad*name") != nil || d.Topic("missing") != nil {
		t.Error("a failed call created a topic")
	}
}

func second[T any](_ T, err error) error { return err }

func TestEngineShutdownDisconnectsClients(t *testing.T) {
	t.Parallel()
	addr, d, stop := startNSQD(t, nil)
	c := dialRaw(t, addr)
	must(t, c.Subscribe("bye", "ch", 5))
	must(t, d.Publish("bye", toBytes(numbered("m", 3)), 0))
	for range 3 {
		_, err := c.ExpectMessage()
		must(t, err)
	}
	idle := dialRaw(t, addr) // connected, never identified
	stop()                   // fails the test if Run errs or hangs
	must(t, c.ExpectClosed())
	must(t, idle.ExpectClosed())
}

// TestShutdownClosesConnectionsWithoutMagic checks that a connection that never sent the
// protocol magic does not hold shutdown until the client timeout (an hour here): shutdown
// closes every accepted connection at once.
func TestShutdownClosesConnectionsWithoutMagic(t *testing.T) {
	addr, d, stop := startNSQD(t, func(o *nsqd.Options) { o.ClientTimeout = time.Hour })
	silent, err := net.Dial("tcp", addr)
	must(t, err)
	t.Cleanup(func() { silent.Close() })
	partial, err := net.Dial("tcp", addr)
	must(t, err)
	t.Cleanup(func() { partial.Close() })
	_, err = partial.Write([]byte("  ")) // half a magic
	must(t, err)
	// Both are accepted before stop begins: a V2 client connected after them is served.
	must(t, dialRaw(t, addr).Publish("order", "m"))
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		stop()
	}()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Run still waits for connections that never sent the magic")
	}
	for _, c := range []net.Conn{silent, partial} {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !wiretest.IsClosed(err) {
			t.Errorf("connection not closed by shutdown: %v", err)
		}
	}
	if err := d.Run(context.Background()); !errors.Is(err, nsqd.ErrRunTwice) {
		t.Errorf("a second Run returned %v, want ErrRunTwice", err)
	}
}
