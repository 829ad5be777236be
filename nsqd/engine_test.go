package nsqd

import (
	"fmt"
	"path/filepath"
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
