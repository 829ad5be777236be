package nsqd

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/nsqd/logstore"
)

// requeueAll subscribes to topic/channel and requeues every message it gets until its
// connection fails (the daemon stopped or was killed); wait waits for that.
func requeueAll(t *testing.T, addr, topic, channel string) (wait func()) {
	c := dialRaw(t, addr)
	c.send(protocol.Subscribe(topic, channel))
	c.expectOK()
	c.send(protocol.Ready(100))
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			m, err := c.ExpectMessage()
			if err != nil {
				t.Logf("requeuer stops: %v", err)
				return
			}
			if err := c.Send(protocol.Requeue(m.ID, 0)); err != nil {
				t.Logf("requeuer stops: %v", err)
				return
			}
		}
	})
	return wg.Wait
}

// deadLettersIn reads every dead letter a topic's log holds and counts them by original body.
func deadLettersIn(t *testing.T, n *NSQD, topic string) (byBody map[string]int, total int) {
	t.Helper()
	dead := n.Topic(topic)
	byBody = map[string]int{}
	if dead == nil {
		return byBody, 0
	}
	r := dead.log.NewReader(dead.log.HeadPos())
	defer func() { _ = r.Close() }()
	var ents []logstore.Entry
	for {
		var err error
		if ents, err = r.Read(ents[:0], 256); err != nil {
			t.Fatal(err)
		}
		if len(ents) == 0 {
			return byBody, total
		}
		for _, e := range ents {
			meta, body, err := ParseDeadLetter(e.Body)
			if err != nil {
				t.Fatalf("dead letter %q: %v", e.Body, err)
			}
			if meta.Attempts < 2 || meta.Reason != "requeue" {
				t.Errorf("dead letter of %q: %+v", body, meta)
			}
			byBody[string(body)]++
			total++
		}
	}
}

func publishNumbered(t *testing.T, addr, topic string, count int) map[string]bool {
	t.Helper()
	pub := dialRaw(t, addr)
	want := map[string]bool{}
	for start := 0; start < count; start += 500 {
		var bodies [][]byte
		for i := start; i < min(start+500, count); i++ {
			b := fmt.Sprintf("b%05d", i)
			want[b] = true
			bodies = append(bodies, []byte(b))
		}
		mpub, err := protocol.MultiPublish(topic, bodies)
		if err != nil {
			t.Fatal(err)
		}
		pub.send(mpub)
		pub.expectOK()
	}
	return want
}

// TestDeadLettersUnderLoad has four consumers requeue every message of a channel with max
// attempts 2: every message reaches the dead-letter topic exactly once.
func TestDeadLettersUnderLoad(t *testing.T) {
	t.Parallel()
	n, stop := startTestDaemon(t, t.TempDir(), nil)
	topic, err := n.CreateTopic("load")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := n.CreateChannel("load", "c")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topic.UpdateChannelSettings(ch, ChannelSettingsPatch{MaxAttempts: ptr(2)}); err != nil {
		t.Fatal(err)
	}
	const count = 5000
	var waits []func()
	for range 4 {
		waits = append(waits, requeueAll(t, n.TCPAddr().String(), "load", "c"))
	}
	want := publishNumbered(t, n.TCPAddr().String(), "load", count)
	testutil.Eventually(t, 30*time.Second, func() bool {
		cs, _ := n.ChannelStats("load", "c")
		return cs.DeadLetterCount == count && cs.Depth == 0 && cs.InFlightCount == 0
	}, "every message to be dead-lettered")
	got, total := deadLettersIn(t, n, "load.dead")
	if total != count || len(got) != len(want) {
		t.Errorf("%d dead letters of %d messages, want each once", total, len(got))
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, w := range waits {
		w()
	}
}

// TestDeadLettersSurviveCrash kills nsqd with SIGKILL while consumers requeue every message
// of a channel with max attempts 2: after the restart every message still reaches the
// dead-letter topic (at least once: those dead-lettered just before the kill may be again).
func TestDeadLettersSurviveCrash(t *testing.T) {
	dir := t.TempDir()
	// Settings are made by an in-process daemon and kept on disk for the child.
	n, stop := startTestDaemon(t, dir, nil)
	topic, err := n.CreateTopic("crashdl")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := n.CreateChannel("crashdl", "c")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topic.UpdateChannelSettings(ch, ChannelSettingsPatch{MaxAttempts: ptr(2)}); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	const count = 4000
	child := startChild(t, dir)
	want := publishNumbered(t, child.addr, "crashdl", count)
	var waits []func()
	for range 2 {
		waits = append(waits, requeueAll(t, child.addr, "crashdl", "c"))
	}
	// Kill it part way: once the dead-letter topic has a few hundred records.
	probe := dialRaw(t, child.addr)
	probe.send(protocol.Subscribe("crashdl.dead", "probe"))
	probe.expectOK()
	probe.send(protocol.Ready(300))
	for range 300 {
		probe.message()
	}
	if err := child.stop(t, syscall.SIGKILL); err == nil {
		t.Fatal("nsqd survived SIGKILL")
	}
	for _, w := range waits {
		w()
	}

	// The restart is in-process, so that the test can watch the channel.
	n, stop = startTestDaemon(t, dir, nil)
	for range 2 {
		waits = append(waits, requeueAll(t, n.TCPAddr().String(), "crashdl", "c"))
	}
	var got map[string]int
	var total int
	var cs ChannelStats
	testutil.Eventually(t, 60*time.Second, func() bool {
		cs, _ = n.ChannelStats("crashdl", "c")
		got, total = deadLettersIn(t, n, "crashdl.dead")
		return cs.Depth == 0 && cs.InFlightCount == 0 && len(got) == count
	}, "every message to be dead-lettered after the crash: depth %d, in flight %d, deferred %d, %d of %d dead-lettered",
		func() any { return cs.Depth }, func() any { return cs.InFlightCount }, func() any { return cs.DeferredCount },
		func() any { return len(got) }, count)
	for b := range got {
		delete(want, b)
	}
	if len(want) > 0 || len(got) != count {
		t.Errorf("%d messages never dead-lettered", len(want))
	}
	t.Logf("%d messages, %d dead letters after SIGKILL (%d again, at least once)", count, total, total-count)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, w := range waits {
		w()
	}
}

// TestExtensionsSurviveCrash sets retention, a drop_oldest quota and a TTL over HTTP, uses
// them, and kills nsqd with SIGKILL: after the restart the settings hold, a replay delivers
// the retained messages, the quota's drop is still in force and the TTL still expires.
func TestExtensionsSurviveCrash(t *testing.T) {
	dir := t.TempDir()
	env := "TERN_TEST_SEGMENT_BYTES=1024"
	child := startChild(t, dir, env)
	post := func(path, body string) {
		t.Helper()
		resp, err := http.Post("http://"+child.httpAddr+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST %s: %s %s", path, resp.Status, b)
		}
	}
	for _, topic := range []string{"keep", "cap", "ttl"} {
		post("/topic/create?topic="+topic, "")
		post("/channel/create?topic="+topic+"&channel=c", "")
	}
	post("/topic/settings?topic=keep", `{"retain_ms":3600000}`)
	post("/topic/settings?topic=cap", `{"max_messages":5,"quota_policy":"drop_oldest"}`)
	post("/channel/settings?topic=ttl&channel=c", `{"message_ttl_ms":1500,"max_attempts":3}`)
	publishNumbered(t, child.addr, "keep", 50)
	for i := range 8 {
		post("/pub?topic=cap", fmt.Sprintf("d%d", i))
	}
	publishNumbered(t, child.addr, "ttl", 5)
	sub := dialRaw(t, child.addr)
	sub.send(protocol.Subscribe("keep", "c"))
	sub.expectOK()
	sub.send(protocol.Ready(50))
	for range 50 {
		sub.send(protocol.Finish(sub.message().ID))
	}
	sub.send(protocol.Publish("sync", []byte("x"))) // answered after the FINs ran
	sub.expectOK()
	if err := child.stop(t, syscall.SIGKILL); err == nil {
		t.Fatal("nsqd survived SIGKILL")
	}

	n, stop := startTestDaemon(t, dir, func(o *Options) { o.MaxBytesPerFile = 1024 })
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	if s := n.Topic("keep").Settings(); s.RetainMs != 3_600_000 {
		t.Errorf("keep's settings after the crash: %+v", s)
	}
	if s := n.Topic("ttl").channelSettings("c"); s.MessageTTLMs != 1500 || s.MaxAttempts != 3 {
		t.Errorf("ttl/c's settings after the crash: %+v", s)
	}
	if err := n.SeekChannel("keep", "c", SeekTarget{Oldest: true}); err != nil {
		t.Fatal(err)
	}
	addr := n.TCPAddr().String()
	expectBodies := func(topic string, want []string) {
		t.Helper()
		c := dialRaw(t, addr)
		c.send(protocol.Subscribe(topic, "c"))
		c.expectOK()
		c.send(protocol.Ready(len(want)))
		var got []string
		for range want {
			m := c.message()
			got = append(got, m.Body)
			c.send(protocol.Finish(m.ID))
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s after the crash: %v, want %v", topic, got, want)
		}
	}
	var keep []string
	for i := range 50 {
		keep = append(keep, fmt.Sprintf("b%05d", i))
	}
	expectBodies("keep", keep)
	expectBodies("cap", []string{"d3", "d4", "d5", "d6", "d7"})
	testutil.Eventually(t, 5*time.Second, func() bool {
		cs, _ := n.ChannelStats("ttl", "c")
		return cs.ExpiredCount == 5 && cs.Depth == 0
	}, "the messages published before the crash to expire")
}
