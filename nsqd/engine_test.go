package nsqd

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/internal/wiretest"
)

func segmentCount(t *testing.T, dataPath, topic string) int {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dataPath, "topics", topic, "log", "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return len(segs)
}

// TestRetentionDeletesSegmentsEveryChannelPassed checks that a segment goes only when every
// durable channel has finished everything in it, and that one message in flight holds it.
func TestRetentionDeletesSegmentsEveryChannelPassed(t *testing.T) {
	dir := t.TempDir()
	n, _ := startTestDaemon(t, dir, func(o *Options) { o.MaxBytesPerFile = 4096 })
	addr := n.TCPAddr().String()

	a := dialRaw(t, addr)
	a.send(protocol.Subscribe("ret", "a"))
	a.expectOK()
	b := dialRaw(t, addr)
	b.send(protocol.Subscribe("ret", "b"))
	b.expectOK()

	pub := dialRaw(t, addr)
	var bodies [][]byte
	for i := range 500 {
		bodies = append(bodies, fmt.Appendf(nil, "%0100d", i))
	}
	cmd, _ := protocol.MultiPublish("ret", bodies)
	pub.send(cmd)
	pub.expectOK()
	topic := n.Topic("ret")
	before := segmentCount(t, dir, "ret")
	if before < 10 {
		t.Fatalf("only %d segments; the test needs the log to roll", before)
	}

	// Channel a finishes everything but its first message; channel b finishes nothing.
	a.send(protocol.Ready(500))
	var first wiretest.Message
	for i := range 500 {
		m := a.message()
		if i == 0 {
			first = m
			continue
		}
		a.send(protocol.Finish(m.ID))
	}
	a.send(protocol.Publish("sync", []byte("x")))
	a.expectOK()
	if err := topic.retain(); err != nil {
		t.Fatal(err)
	}
	if got := segmentCount(t, dir, "ret"); got != before {
		t.Fatalf("segments went from %d to %d while channel b had read nothing", before, got)
	}

	b.send(protocol.Ready(500))
	for range 500 {
		b.send(protocol.Finish(b.message().ID))
	}
	b.send(protocol.Publish("sync", []byte("x")))
	b.expectOK()
	if err := topic.retain(); err != nil {
		t.Fatal(err)
	}
	if got := segmentCount(t, dir, "ret"); got != before {
		t.Fatalf("segments went from %d to %d while channel a held its first message", before, got)
	}

	a.send(protocol.Finish(first.ID))
	a.send(protocol.Publish("sync", []byte("x")))
	a.expectOK()
	if err := topic.retain(); err != nil {
		t.Fatal(err)
	}
	if got := segmentCount(t, dir, "ret"); got > 1 {
		t.Fatalf("%d segments left after every channel finished everything, want the active one", got)
	}
}

// TestPausedStatePersists restarts a daemon and checks that paused topics and channels come
// back paused, that what was published during a topic's pause is still held back, and that
// channels keep their cursors.
func TestPausedStatePersists(t *testing.T) {
	dir := t.TempDir()
	n, stop := startTestDaemon(t, dir, nil)
	if err := n.Publish("pt", [][]byte{[]byte("before")}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := n.CreateChannel("pt", "c"); err != nil {
		t.Fatal(err)
	}
	if err := n.PauseTopic("pt", true); err != nil {
		t.Fatal(err)
	}
	if err := n.Publish("pt", [][]byte{[]byte("during")}, 0); err != nil {
		t.Fatal(err)
	}
	if err := n.Publish("pc", [][]byte{[]byte("x")}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := n.CreateChannel("pc", "c"); err != nil {
		t.Fatal(err)
	}
	if err := n.PauseChannel("pc", "c", true); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	n, _ = startTestDaemon(t, dir, nil)
	pt := n.Topic("pt")
	if pt == nil || !pt.Paused() {
		t.Fatal("topic pt is not paused after the restart")
	}
	if d := pt.Depth(); d != 1 {
		t.Fatalf("paused topic depth %d, want 1 (the message published during the pause)", d)
	}
	pc := n.Topic("pc")
	if pc == nil || pc.Channel("c") == nil || !pc.Channel("c").Paused() {
		t.Fatal("channel pc/c is not paused after the restart")
	}

	addr := n.TCPAddr().String()
	c := dialRaw(t, addr)
	c.send(protocol.Subscribe("pt", "c"))
	c.expectOK()
	c.send(protocol.Ready(10))
	if m := c.message(); m.Body != "before" {
		t.Fatalf("got %q, want the message published before the pause", m.Body)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return pt.Channel("c").Stats().InFlightCount == 1 }, "in flight")
	if err := n.PauseTopic("pt", false); err != nil {
		t.Fatal(err)
	}
	if m := c.message(); m.Body != "during" {
		t.Fatalf("got %q after unpausing, want the message published during the pause", m.Body)
	}
}

// TestUnreadableCheckpointRedeliversChannel damages a channel's checkpoint the ways a power
// cut can leave it (empty, torn, garbage): nsqd still starts, moves the file aside, logs an
// error, and delivers the channel from the oldest retained message, so nothing unfinished is
// lost (finished ones may come again).
func TestUnreadableCheckpointRedeliversChannel(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(good []byte) []byte
	}{
		{"empty", func([]byte) []byte { return nil }},
		{"torn", func(good []byte) []byte { return good[:len(good)/2] }},
		{"garbage", func(good []byte) []byte { return bytes.Repeat([]byte{0xff}, len(good)) }},
		{"bad checksum", func(good []byte) []byte {
			bad := bytes.Clone(good)
			bad[len(bad)-1] ^= 1
			return bad
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			n, stop := startTestDaemon(t, dir, nil)
			if _, err := n.CreateTopic("ck"); err != nil {
				t.Fatal(err)
			}
			if _, err := n.CreateChannel("ck", "c"); err != nil {
				t.Fatal(err)
			}
			var bodies [][]byte
			for i := range 6 {
				bodies = append(bodies, fmt.Appendf(nil, "m%d", i))
			}
			if err := n.Publish("ck", bodies, 0); err != nil {
				t.Fatal(err)
			}
			c := dialRaw(t, n.TCPAddr().String())
			c.send(protocol.Subscribe("ck", "c"))
			c.expectOK()
			c.send(protocol.Ready(6))
			for range 3 { // m0, m1 and m2 finished; m3-m5 in flight at shutdown
				c.send(protocol.Finish(c.message().ID))
			}
			for range 3 {
				c.message()
			}
			c.Close()
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "topics", "ck", "channels", "c.ckpt")
			good, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.damage(good), 0o644); err != nil {
				t.Fatal(err)
			}

			n, _ = startTestDaemon(t, dir, nil)
			aside, _ := filepath.Glob(path + ".corrupt-*")
			if len(aside) != 1 {
				t.Errorf("the unreadable checkpoint was not moved aside: %v", aside)
			}
			c = dialRaw(t, n.TCPAddr().String())
			c.send(protocol.Subscribe("ck", "c"))
			c.expectOK()
			c.send(protocol.Ready(10))
			got := map[string]bool{}
			for range 6 { // every retained message, from the log's head
				m := c.message()
				got[m.Body] = true
				c.send(protocol.Finish(m.ID))
			}
			for _, b := range bodies {
				if !got[string(b)] {
					t.Errorf("%s was not delivered after the restart", b)
				}
			}
		})
	}
}

// TestMemQueueBytesBoundsManyTopics publishes 64 KiB messages to 200 topics under a 2 MiB
// --mem-queue-bytes: what they hold in memory together never passes it, a consumer that
// comes later reads every message (from disk), and what every channel has read is let go.
func TestMemQueueBytesBoundsManyTopics(t *testing.T) {
	const limit, topics, perTopic = 2 << 20, 200, 4
	n, _ := startTestDaemon(t, t.TempDir(), func(o *Options) { o.MemQueueBytes = limit })
	body := bytes.Repeat([]byte("m"), 64<<10)
	for i := range topics {
		topic := fmt.Sprintf("many%03d", i)
		if _, err := n.CreateTopic(topic); err != nil {
			t.Fatal(err)
		}
		if _, err := n.CreateChannel(topic, "c"); err != nil {
			t.Fatal(err)
		}
		for range perTopic {
			if err := n.Publish(topic, [][]byte{body}, 0); err != nil {
				t.Fatal(err)
			}
			if used := n.memBudget.Used(); used > limit {
				t.Fatalf("topics hold %d bytes in memory, over --mem-queue-bytes %d", used, limit)
			}
		}
	}
	if n.memBudget.Used() < limit/2 {
		t.Errorf("only %d of %d bytes used: the budget should be put to use", n.memBudget.Used(), limit)
	}

	// Read the first and the last topic: one in memory, one from disk.
	for _, topic := range []string{"many000", fmt.Sprintf("many%03d", topics-1)} {
		c := dialRaw(t, n.TCPAddr().String())
		c.send(protocol.Subscribe(topic, "c"))
		c.expectOK()
		c.send(protocol.Ready(perTopic))
		for range perTopic {
			if m := c.message(); len(m.Body) != len(body) {
				t.Fatalf("%s: a message of %d bytes, want %d", topic, len(m.Body), len(body))
			}
		}
		n.Topic(topic).dropConsumedHot()
		if hot := n.Topic(topic).log.HotBytes(); hot != 0 {
			t.Errorf("%s keeps %d bytes in memory its only channel has read", topic, hot)
		}
	}
}

// TestConcurrentTopicCreation has many publishers create the same topics at once: each topic
// is opened once, everyone gets the same one, and every message is in it.
func TestConcurrentTopicCreation(t *testing.T) {
	n, _ := startTestDaemon(t, t.TempDir(), nil)
	const workers, topics = 16, 4
	got := make([][]*Topic, workers)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range topics {
				name := fmt.Sprint("race", i)
				tp, err := n.getOrCreateTopic(name)
				if err == nil {
					err = tp.publish([][]byte{[]byte("m")}, 0)
				}
				if err != nil {
					errs <- err
					return
				}
				got[w] = append(got[w], tp)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range topics {
		want := n.Topic(fmt.Sprint("race", i))
		for w := range workers {
			if got[w][i] != want {
				t.Fatalf("worker %d got a different topic race%d", w, i)
			}
		}
		if d := want.Depth(); d != workers {
			t.Errorf("race%d holds %d messages, want %d", i, d, workers)
		}
	}
}

// TestEmptyPausedTopicSkipsForEveryChannel empties a paused topic: what it held back is
// dropped for every channel, one that lags far behind the pause point too, and still after
// a restart.
func TestEmptyPausedTopicSkipsForEveryChannel(t *testing.T) {
	dir := t.TempDir()
	n, stop := startTestDaemon(t, dir, nil)
	publish := func(prefix string, k int) {
		t.Helper()
		var bodies [][]byte
		for i := range k {
			bodies = append(bodies, fmt.Appendf(nil, "%s%d", prefix, i))
		}
		if err := n.Publish("holes", bodies, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n.CreateTopic("holes"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.CreateChannel("holes", "lagging"); err != nil {
		t.Fatal(err)
	}
	publish("before", 5)
	if err := n.PauseTopic("holes", true); err != nil {
		t.Fatal(err)
	}
	publish("dropped", 5)
	if err := n.EmptyTopic("holes"); err != nil {
		t.Fatal(err)
	}
	if err := n.PauseTopic("holes", false); err != nil {
		t.Fatal(err)
	}
	publish("after", 3)
	if cs, _ := n.ChannelStats("holes", "lagging"); cs.Depth != 8 || cs.MessageCount != 8 {
		t.Errorf("depth %d, message_count %d: want 8 and 8 (the dropped 5 were never routed)", cs.Depth, cs.MessageCount)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	n, _ = startTestDaemon(t, dir, nil)
	c := dialRaw(t, n.TCPAddr().String())
	c.send(protocol.Subscribe("holes", "lagging"))
	c.expectOK()
	c.send(protocol.Ready(20))
	var got []string
	for range 8 {
		m := c.message()
		got = append(got, m.Body)
		c.send(protocol.Finish(m.ID))
	}
	want := []string{"before0", "before1", "before2", "before3", "before4", "after0", "after1", "after2"}
	if !slices.Equal(got, want) {
		t.Fatalf("the lagging channel got %v after the restart, want %v", got, want)
	}
	c.send(protocol.Nop())
	testutil.Eventually(t, 5*time.Second, func() bool {
		cs, _ := n.ChannelStats("holes", "lagging")
		return cs.Depth == 0 && cs.InFlightCount == 0
	}, "nothing more to deliver")
}
