package nsqd

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/testutil"
)

// TestReplay keeps consumed segments for a time and for a size, moves a channel to the oldest
// retained message, to a time and to an ID, and creates a channel at the oldest message, each
// receiving exactly the range it was moved to.
func TestReplay(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mutate := withHTTP(false, func(o *Options) { o.MaxBytesPerFile = 1024 })
	n, stop := startTestDaemon(t, dir, mutate)
	base := "http://" + n.HTTPAddr().String()
	post := func(path string) {
		t.Helper()
		resp, err := http.Post(base+path, "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST %s: %s", path, resp.Status)
		}
	}
	topic, err := n.CreateTopic("r")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.CreateChannel("r", "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := topic.UpdateSettings(TopicSettingsPatch{RetainMs: ptr[int64](3_600_000)}); err != nil {
		t.Fatal(err)
	}
	const total = 100
	var want []string
	for i := range total {
		body := fmt.Sprintf("m%02d-%s", i, "padding-padding-padding-padding")
		want = append(want, body)
		if err := n.Publish("r", [][]byte{[]byte(body)}, 0); err != nil {
			t.Fatal(err)
		}
	}
	sub := dialRaw(t, n.TCPAddr().String())
	sub.send(protocol.Subscribe("r", "c"))
	sub.expectOK()
	sub.send(protocol.Ready(total))
	// receive takes k messages, finishes them and returns their bodies, and the messages.
	receive := func(c *rawConn, k int) ([]string, []rawMessage) {
		t.Helper()
		var bodies []string
		var msgs []rawMessage
		for range k {
			m := c.message()
			bodies = append(bodies, m.Body)
			msgs = append(msgs, rawMessage{id: string(m.ID[:]), ts: m.Timestamp})
			c.send(protocol.Finish(m.ID))
		}
		return bodies, msgs
	}
	// finished waits for the FINs sent to land, before a seek drops what is in flight.
	finished := func(channel string) {
		t.Helper()
		testutil.Eventually(t, 5*time.Second, func() bool {
			cs, _ := n.ChannelStats("r", channel)
			return cs.InFlightCount == 0
		}, "the finishes on %s to land", channel)
	}
	got, msgs := receive(sub, total)
	if !slices.Equal(got, want) {
		t.Fatalf("first pass: %v", got)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		cs, _ := n.ChannelStats("r", "c")
		return cs.Depth == 0 && cs.InFlightCount == 0
	}, "the first pass to finish")
	if err := topic.retain(); err != nil {
		t.Fatal(err)
	}
	if segs := len(topic.log.Segments()); topic.log.Head() != 0 || segs < 5 {
		t.Fatalf("retention by time kept head %d in %d segments, want everything in several", topic.log.Head(), segs)
	}

	finished("c")
	post("/channel/seek?topic=r&channel=c&to=oldest")
	if got, _ := receive(sub, total); !slices.Equal(got, want) {
		t.Errorf("replay from the oldest: %v", got)
	}
	finished("c")
	post("/channel/seek?topic=r&channel=c&time=" + url.QueryEscape(time.Unix(0, msgs[50].ts).Format(time.RFC3339Nano)))
	if got, _ := receive(sub, total-50); !slices.Equal(got, want[50:]) {
		t.Errorf("replay from a time: %v", got)
	}
	finished("c")
	post("/channel/seek?topic=r&channel=c&id=" + msgs[70].id)
	if got, _ := receive(sub, total-70); !slices.Equal(got, want[70:]) {
		t.Errorf("replay from an ID: %v", got)
	}
	post("/channel/create?topic=r&channel=late&to=oldest")
	late := dialRaw(t, n.TCPAddr().String())
	late.send(protocol.Subscribe("r", "late"))
	late.expectOK()
	late.send(protocol.Ready(total))
	if got, _ := receive(late, total); !slices.Equal(got, want) {
		t.Errorf("a channel created at the oldest: %v", got)
	}
	// Nothing more than the range: a publish is what comes next.
	if err := n.Publish("r", [][]byte{[]byte("next")}, 0); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*rawConn{sub, late} {
		if got, _ := receive(c, 1); got[0] != "next" {
			t.Errorf("after the replays got %q, want next", got[0])
		}
	}

	// Retention by size keeps the newest segments holding 300 bytes; a replay from the
	// oldest then delivers exactly what is kept.
	if _, err := topic.UpdateSettings(TopicSettingsPatch{RetainMs: ptr[int64](0), RetainBytes: ptr[int64](300)}); err != nil {
		t.Fatal(err)
	}
	finished("c")
	finished("late")
	if err := topic.retain(); err != nil {
		t.Fatal(err)
	}
	head := topic.log.Head()
	if head == 0 || topic.log.BytesFrom(topic.log.HeadPos()) < 300 {
		t.Fatalf("retention by size: head %d, %d bytes kept", head, topic.log.BytesFrom(topic.log.HeadPos()))
	}
	stop()
	n, _ = startTestDaemon(t, dir, mutate)
	topic = n.Topic("r")
	if s := topic.Settings(); s.RetainBytes != 300 {
		t.Errorf("settings after restart: %+v", s)
	}
	if err := n.SeekChannel("r", "c", SeekTarget{Oldest: true}); err != nil {
		t.Fatal(err)
	}
	sub = dialRaw(t, n.TCPAddr().String())
	sub.send(protocol.Subscribe("r", "c"))
	sub.expectOK()
	sub.send(protocol.Ready(total + 1))
	kept := int(topic.log.Tail() - head)
	wantKept := append(slices.Clone(want), "next")[head:]
	if got, _ := receive(sub, kept); !slices.Equal(got, wantKept) {
		t.Errorf("replay of what size retention kept: %v, want %v", got, wantKept)
	}
}

type rawMessage struct {
	id string
	ts int64
}
