package nsqd_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/nsqd"
	"github.com/ternmq/tern/nsqd/nsqdtest"
)

// httpClient talks to one nsqd's HTTP API in a test.
type httpClient struct {
	t    *testing.T
	base string
}

func newHTTPClient(t *testing.T, d *nsqd.NSQD) *httpClient {
	return &httpClient{t: t, base: "http://" + d.HTTPAddr().String()}
}

// do sends a request and decodes a JSON answer into v (when not nil); it returns the status
// and the raw body.
func (c *httpClient) do(method, path, body string, v any) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	must(c.t, err)
	resp, err := http.DefaultClient.Do(req)
	must(c.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(c.t, err)
	if v != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(b, v); err != nil {
			c.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return resp.StatusCode, string(b)
}

// ok is do that fails the test unless the answer is 200.
func (c *httpClient) ok(method, path, body string, v any) {
	c.t.Helper()
	if code, b := c.do(method, path, body, v); code != 200 {
		c.t.Fatalf("%s %s: %d %s", method, path, code, b)
	}
}

func channelStats(t *testing.T, d *nsqd.NSQD, topic, channel string) nsqd.ChannelStats {
	t.Helper()
	cs, ok := d.ChannelStats(topic, channel)
	if !ok {
		t.Fatalf("no channel %s/%s", topic, channel)
	}
	return cs
}

// TestDeadLetters drives messages to a channel's max attempts by requeue and by timeout,
// reads the dead letters with their metadata, redrives one and then the rest, and checks
// that settings and redriven messages survive a restart.
func TestDeadLetters(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	d, stop := nsqdtest.StartWithStop(t, func(o *nsqd.Options) { o.DataPath = dir })
	h := newHTTPClient(t, d)
	h.ok("POST", "/topic/create?topic=q", "", nil)
	h.ok("POST", "/channel/create?topic=q&channel=c", "", nil)
	if code, b := h.do("POST", "/channel/settings?topic=q&channel=c", `{"max_attempts":2,"bogus":1}`, nil); code != 400 || !strings.Contains(b, "bogus") {
		t.Errorf("unknown setting: %d %s, want 400 naming it", code, b)
	}
	if code, _ := h.do("POST", "/channel/settings?topic=q&channel=c", `{"dead_letter_topic":"q"}`, nil); code != 400 {
		t.Errorf("a topic as its own dead-letter topic: %d, want 400", code)
	}
	var cs nsqd.ChannelSettings
	h.ok("POST", "/channel/settings?topic=q&channel=c", `{"max_attempts":2}`, &cs)
	if cs.MaxAttempts != 2 {
		t.Fatalf("settings answered %+v", cs)
	}
	for _, b := range []string{"by-req", "by-timeout", "fine"} {
		h.ok("POST", "/pub?topic=q", b, nil)
	}

	c := dialRaw(t, d.TCPAddr().String())
	_, err := c.Identify(`"msg_timeout":1000`)
	must(t, err)
	must(t, c.Subscribe("q", "c", 3))
	attempts := map[string]uint16{}
	deadline := time.Now().Add(20 * time.Second)
	for channelStats(t, d, "q", "c").DeadLetterCount < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("dead letters: %+v", channelStats(t, d, "q", "c"))
		}
		m, err := c.ExpectMessage()
		must(t, err)
		attempts[m.Body] = m.Attempts
		switch m.Body {
		case "by-req":
			must(t, c.Send(protocol.Requeue(m.ID, 0)))
		case "fine":
			must(t, c.Send(protocol.Finish(m.ID)))
		}
		// by-timeout is left to time out.
		if m.Body != "by-timeout" || m.Attempts < 2 {
			continue
		}
		testutil.Eventually(t, 10*time.Second, func() bool {
			return channelStats(t, d, "q", "c").DeadLetterCount == 2
		}, "the second timeout to dead-letter")
	}
	if attempts["by-req"] != 2 || attempts["by-timeout"] != 2 {
		t.Errorf("attempts before dead-lettering: %v, want 2 each", attempts)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "q", "c") }, "the channel to drain")

	type listing struct {
		Topic       string            `json:"dead_letter_topic"`
		DeadLetters []nsqd.DeadLetter `json:"dead_letters"`
	}
	var l listing
	h.ok("GET", "/channel/dead_letters?topic=q&channel=c", "", &l)
	if l.Topic != "q.dead" || len(l.DeadLetters) != 2 {
		t.Fatalf("dead letters: %+v", l)
	}
	reasons := map[string]string{}
	for _, dl := range l.DeadLetters {
		m := dl.Meta
		reasons[string(dl.Body)] = m.Reason
		if m.Topic != "q" || m.Channel != "c" || m.Attempts != 2 || m.FirstDelivery == 0 ||
			m.LastDelivery < m.FirstDelivery || m.DeadAt < m.LastDelivery || m.Timestamp == 0 {
			t.Errorf("metadata of %q: %+v", dl.Body, m)
		}
	}
	if reasons["by-req"] != "requeue" || reasons["by-timeout"] != "timeout" {
		t.Errorf("reasons: %v", reasons)
	}
	// The dead letter is an ordinary message of q.dead: metadata line, then the body.
	dc := dialRaw(t, d.TCPAddr().String())
	must(t, dc.Subscribe("q.dead", "reader", 2))
	for range 2 {
		m, err := dc.ExpectMessage()
		must(t, err)
		meta, body, err := nsqd.ParseDeadLetter([]byte(m.Body))
		must(t, err)
		if reasons[string(body)] != meta.Reason {
			t.Errorf("consumed dead letter %q has reason %q", body, meta.Reason)
		}
		must(t, dc.Send(protocol.Finish(m.ID)))
	}

	// Redrive one: it comes back to c only, as a new message.
	first := l.DeadLetters[0]
	var rd struct{ Redriven int }
	h.ok("POST", "/channel/redrive?topic=q&channel=c&id="+first.ID, "", &rd)
	if rd.Redriven != 1 {
		t.Fatalf("redrove %d", rd.Redriven)
	}
	m, err := c.ExpectMessage()
	must(t, err)
	if m.Body != string(first.Body) || m.Attempts != 1 {
		t.Errorf("redriven: %q attempt %d, want %q attempt 1", m.Body, m.Attempts, first.Body)
	}
	must(t, c.Send(protocol.Finish(m.ID)))
	h.ok("GET", "/channel/dead_letters?topic=q&channel=c", "", &l)
	if len(l.DeadLetters) != 1 || string(l.DeadLetters[0].Body) == string(first.Body) {
		t.Fatalf("after redriving one: %+v", l.DeadLetters)
	}
	rest := string(l.DeadLetters[0].Body)
	testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "q", "c") }, "the redriven message to finish")

	// Redrive the rest with nobody consuming, and restart: the message and the settings
	// are still there, and the dead letter is not offered again.
	c.Close()
	h.ok("POST", "/channel/redrive?topic=q&channel=c", "", &rd)
	if rd.Redriven != 1 {
		t.Fatalf("redrive all: %d", rd.Redriven)
	}
	stop()
	d = nsqdtest.Start(t, func(o *nsqd.Options) { o.DataPath = dir })
	h = newHTTPClient(t, d)
	h.ok("GET", "/channel/settings?topic=q&channel=c", "", &cs)
	if cs.MaxAttempts != 2 {
		t.Errorf("settings after restart: %+v", cs)
	}
	h.ok("GET", "/channel/dead_letters?topic=q&channel=c", "", &l)
	if len(l.DeadLetters) != 0 {
		t.Errorf("dead letters after redriving all: %+v", l.DeadLetters)
	}
	c = dialRaw(t, d.TCPAddr().String())
	must(t, c.Subscribe("q", "c", 1))
	m, err = c.ExpectMessage()
	must(t, err)
	if m.Body != rest {
		t.Errorf("after restart got %q, want the redriven %q", m.Body, rest)
	}
	must(t, c.Send(protocol.Finish(m.ID)))
	testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "q", "c") }, "the redriven message to finish")
}

// TestMessageTTL checks that expired messages are never delivered and are retired on time,
// unread, deferred and in flight alike, dropped on one channel and dead-lettered on another.
func TestMessageTTL(t *testing.T) {
	t.Parallel()
	d := nsqdtest.Start(t, nil)
	h := newHTTPClient(t, d)
	h.ok("POST", "/topic/create?topic=ttl", "", nil)
	h.ok("POST", "/channel/create?topic=ttl&channel=drop", "", nil)
	h.ok("POST", "/channel/create?topic=ttl&channel=dead", "", nil)
	const ttl = 400 * time.Millisecond
	h.ok("POST", "/topic/settings?topic=ttl", `{"message_ttl_ms":400}`, nil)
	h.ok("POST", "/channel/settings?topic=ttl&channel=dead", `{"dead_letter_expired":true}`, nil)
	c := dialRaw(t, d.TCPAddr().String())
	must(t, c.Subscribe("ttl", "drop", 1))
	pub := dialRaw(t, d.TCPAddr().String())
	const n = 20
	must(t, pub.Send(mpubCmd("ttl", numbered("m", n)...)))
	must(t, pub.ExpectResponse(protocol.OK))

	// m0 is requeued for longer than the TTL; m1 stays in flight through its expiry.
	m0, err := c.ExpectMessage()
	must(t, err)
	must(t, c.Send(protocol.Requeue(m0.ID, 10*time.Second)))
	m1, err := c.ExpectMessage()
	must(t, err)
	expiry := time.Unix(0, m0.Timestamp).Add(ttl) // one MPUB: one timestamp

	var firstSeen, allSeen time.Time
	for deadline := time.Now().Add(10 * time.Second); allSeen.IsZero(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("expired: drop %d, dead %d", channelStats(t, d, "ttl", "drop").ExpiredCount,
				channelStats(t, d, "ttl", "dead").ExpiredCount)
		}
		drop, dead := channelStats(t, d, "ttl", "drop").ExpiredCount, channelStats(t, d, "ttl", "dead").ExpiredCount
		now := time.Now()
		if firstSeen.IsZero() && drop+dead > 0 {
			firstSeen = now
		}
		if drop == n-1 && dead == n {
			allSeen = now
		}
	}
	if firstSeen.Before(expiry) {
		t.Errorf("a message expired %v before its time", expiry.Sub(firstSeen))
	}
	if late := allSeen.Sub(expiry); late > 50*time.Millisecond {
		t.Errorf("the last message expired %v after its time, want within 50ms", late)
	}

	// The message in flight expires when it comes back rather than being delivered again,
	// and what is published now is delivered.
	must(t, c.Send(protocol.Requeue(m1.ID, 0)))
	must(t, pub.Send(protocol.Publish("ttl", []byte("fresh"))))
	must(t, pub.ExpectResponse(protocol.OK))
	m, err := c.ExpectMessage()
	must(t, err)
	if m.Body != "fresh" {
		t.Errorf("after expiry got %q, want fresh", m.Body)
	}
	if got := channelStats(t, d, "ttl", "drop").ExpiredCount; got != n {
		t.Errorf("drop expired %d, want %d", got, n)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		return channelStats(t, d, "ttl", "dead").DeadLetterCount == n
	}, "the expired messages to reach the dead-letter topic")
	var l struct {
		DeadLetters []nsqd.DeadLetter `json:"dead_letters"`
	}
	h.ok("GET", "/channel/dead_letters?topic=ttl&channel=dead&n=100", "", &l)
	if len(l.DeadLetters) != n {
		t.Fatalf("%d dead letters, want %d", len(l.DeadLetters), n)
	}
	for _, dl := range l.DeadLetters {
		if dl.Meta.Reason != "expired" || dl.Meta.Attempts != 0 {
			t.Errorf("dead letter %+v", dl.Meta)
		}
	}
}

// TestQuotas refuses publishes at a topic's message and byte limits, over TCP without closing
// the connection and over HTTP with 429 and 507, and drops the oldest messages under the
// drop_oldest policy, across a restart.
func TestQuotas(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	d, stop := nsqdtest.StartWithStop(t, func(o *nsqd.Options) { o.DataPath = dir })
	h := newHTTPClient(t, d)
	for _, q := range []string{"qm", "qb", "qd"} {
		h.ok("POST", "/topic/create?topic="+q, "", nil)
		h.ok("POST", "/channel/create?topic="+q+"&channel=c", "", nil)
	}
	if code, _ := h.do("POST", "/topic/settings?topic=qm", `{"quota_policy":"sometimes"}`, nil); code != 400 {
		t.Errorf("bad policy: %d, want 400", code)
	}
	h.ok("POST", "/topic/settings?topic=qm", `{"max_messages":5}`, nil)
	h.ok("POST", "/topic/settings?topic=qb", `{"max_bytes":1000}`, nil)
	h.ok("POST", "/topic/settings?topic=qd", `{"max_messages":5,"quota_policy":"drop_oldest"}`, nil)

	pub := dialRaw(t, d.TCPAddr().String())
	for i := range 5 {
		must(t, pub.Send(protocol.Publish("qm", fmt.Appendf(nil, "m%d", i))))
		must(t, pub.ExpectResponse(protocol.OK))
	}
	must(t, pub.Send(protocol.Publish("qm", []byte("over"))))
	must(t, pub.ExpectError("E_PUB_FAILED PUB failed topic qm is full: max_messages 5 reached"))
	must(t, pub.Send(mpubCmd("qm", "a", "b")))
	must(t, pub.ExpectError("E_MPUB_FAILED"))
	must(t, pub.Send(protocol.Publish("other", []byte("fine"))))
	must(t, pub.ExpectResponse(protocol.OK)) // the connection stays usable
	if code, b := h.do("POST", "/pub?topic=qm", "over", nil); code != 429 || !strings.Contains(b, "max_messages 5") {
		t.Errorf("HTTP publish over the message limit: %d %s", code, b)
	}
	// Consuming makes room.
	c := dialRaw(t, d.TCPAddr().String())
	must(t, c.Subscribe("qm", "c", 2))
	for range 2 {
		m, err := c.ExpectMessage()
		must(t, err)
		must(t, c.Send(protocol.Finish(m.ID)))
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		code, _ := h.do("POST", "/pub?topic=qm", "room", nil)
		return code == 200
	}, "room after consuming")

	h.ok("POST", "/pub?topic=qb", strings.Repeat("x", 900), nil)
	if code, b := h.do("POST", "/pub?topic=qb", strings.Repeat("y", 100), nil); code != 507 || !strings.Contains(b, "max_bytes 1000") {
		t.Errorf("HTTP publish over the byte limit: %d %s", code, b)
	}
	var st struct {
		Topics []nsqd.TopicStats `json:"topics"`
	}
	h.ok("GET", "/stats?format=json&topic=qm", "", &st)
	if len(st.Topics) != 1 || st.Topics[0].RefusedCount != 4 || st.Topics[0].Settings == nil || st.Topics[0].Settings.MaxMessages != 5 {
		t.Errorf("stats of qm: %+v", st.Topics)
	}

	for _, b := range numbered("d", 8) {
		h.ok("POST", "/pub?topic=qd", b, nil)
	}
	if cs := channelStats(t, d, "qd", "c"); cs.Depth != 5 {
		t.Errorf("depth under drop_oldest: %d, want 5", cs.Depth)
	}
	stop()
	d = nsqdtest.Start(t, func(o *nsqd.Options) { o.DataPath = dir })
	h = newHTTPClient(t, d)
	h.ok("GET", "/stats?format=json&topic=qd", "", &st)
	c = dialRaw(t, d.TCPAddr().String())
	must(t, c.Subscribe("qd", "c", 10))
	var got []string
	for range 5 {
		m, err := c.ExpectMessage()
		must(t, err)
		got = append(got, m.Body)
		must(t, c.Send(protocol.Finish(m.ID)))
	}
	if want := numbered("d", 8)[3:]; !slices.Equal(got, want) {
		t.Errorf("after dropping the oldest: %v, want %v", got, want)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "qd", "c") }, "qd to drain")
}

// TestMessageTTLUnderLoad publishes faster than a consumer with RDY 1 takes, with a TTL
// shorter than the backlog lasts: every message is either delivered before its expiry or
// expired, never both, never neither.
func TestMessageTTLUnderLoad(t *testing.T) {
	t.Parallel()
	d := nsqdtest.Start(t, nil)
	h := newHTTPClient(t, d)
	h.ok("POST", "/topic/create?topic=ttlload", "", nil)
	h.ok("POST", "/channel/create?topic=ttlload&channel=c", "", nil)
	const ttl = 50 * time.Millisecond
	h.ok("POST", "/channel/settings?topic=ttlload&channel=c", `{"message_ttl_ms":50}`, nil)
	c := dialRaw(t, d.TCPAddr().String())
	must(t, c.Subscribe("ttlload", "c", 1))
	const count = 5000
	pub := dialRaw(t, d.TCPAddr().String())
	go func() {
		for i := 0; i < count; i += 100 {
			if pub.Send(mpubCmd("ttlload", numbered(fmt.Sprintf("b%d-", i), 100)...)) != nil ||
				pub.ExpectResponse(protocol.OK) != nil {
				return
			}
		}
	}()
	var (
		mu        sync.Mutex
		seen      = map[string]bool{}
		delivered int
		wg        sync.WaitGroup
	)
	wg.Go(func() {
		for {
			m, err := c.ExpectMessage()
			if err != nil {
				return // closed at the end of the test
			}
			mu.Lock()
			if seen[m.Body] {
				t.Errorf("%s delivered twice", m.Body)
			}
			seen[m.Body] = true
			delivered++
			mu.Unlock()
			// nsqd checked the TTL as it sent the message; its age here adds the trip.
			if age := m.At.Sub(time.Unix(0, m.Timestamp)); age > ttl+50*time.Millisecond {
				t.Errorf("%s delivered %v after its publish, TTL %v", m.Body, age, ttl)
			}
			if c.Send(protocol.Finish(m.ID)) != nil {
				return
			}
		}
	})
	testutil.Eventually(t, 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return delivered+int(channelStats(t, d, "ttlload", "c").ExpiredCount) >= count
	}, "every message to be delivered or expired")
	c.Close()
	wg.Wait()
	cs := channelStats(t, d, "ttlload", "c")
	t.Logf("%d delivered, %d expired", delivered, cs.ExpiredCount)
	if delivered+int(cs.ExpiredCount) != count {
		t.Errorf("%d delivered and %d expired of %d", delivered, cs.ExpiredCount, count)
	}
	if delivered == 0 || cs.ExpiredCount == 0 {
		t.Errorf("the load did not exercise both paths: %d delivered, %d expired", delivered, cs.ExpiredCount)
	}
}

// TestExtensionsEdgeCases covers what review found: messages returned to the ready queue by a
// consumer that left and then expired, a consumer that disconnects on a message's last
// attempt, redrives racing, a dead-letter topic that refuses, and values out of range.
func TestExtensionsEdgeCases(t *testing.T) {
	t.Parallel()
	d := nsqdtest.Start(t, nil)
	h := newHTTPClient(t, d)
	addr := d.TCPAddr().String()
	pub := func(topic string, bodies ...string) {
		t.Helper()
		c := dialRaw(t, addr)
		must(t, c.Send(mpubCmd(topic, bodies...)))
		must(t, c.ExpectResponse(protocol.OK))
	}

	t.Run("expired after their consumer left", func(t *testing.T) {
		h.ok("POST", "/topic/create?topic=left", "", nil)
		h.ok("POST", "/channel/create?topic=left&channel=c", "", nil)
		h.ok("POST", "/channel/settings?topic=left&channel=c", `{"message_ttl_ms":200}`, nil)
		c := dialRaw(t, addr)
		must(t, c.Subscribe("left", "c", 5))
		pub("left", numbered("x", 5)...)
		for range 5 {
			_, err := c.ExpectMessage()
			must(t, err)
		}
		c.Close() // its five messages are ready again, and expire there
		testutil.Eventually(t, 5*time.Second, func() bool {
			cs := channelStats(t, d, "left", "c")
			return cs.ExpiredCount == 5 && cs.Depth == 0
		}, "the returned messages to expire")
		h.ok("POST", "/channel/settings?topic=left&channel=c", `{"message_ttl_ms":0}`, nil)
		pub("left", "fresh")
		c = dialRaw(t, addr)
		must(t, c.Subscribe("left", "c", 5))
		m, err := c.ExpectMessage()
		must(t, err)
		if m.Body != "fresh" {
			t.Errorf("got %q, want fresh", m.Body)
		}
		if cs := channelStats(t, d, "left", "c"); cs.ExpiredCount != 5 {
			t.Errorf("expired %d, want 5", cs.ExpiredCount)
		}
	})

	t.Run("disconnect on the last attempt", func(t *testing.T) {
		h.ok("POST", "/topic/create?topic=crashy", "", nil)
		h.ok("POST", "/channel/create?topic=crashy&channel=c", "", nil)
		h.ok("POST", "/channel/settings?topic=crashy&channel=c", `{"max_attempts":1}`, nil)
		pub("crashy", "poison")
		c := dialRaw(t, addr)
		must(t, c.Subscribe("crashy", "c", 1))
		_, err := c.ExpectMessage()
		must(t, err)
		c.Close()
		testutil.Eventually(t, 5*time.Second, func() bool {
			cs := channelStats(t, d, "crashy", "c")
			return cs.DeadLetterCount == 1 && cs.Depth == 0
		}, "the message whose consumer left to be dead-lettered")
	})

	t.Run("concurrent redrives", func(t *testing.T) {
		h.ok("POST", "/topic/create?topic=twice", "", nil)
		h.ok("POST", "/channel/create?topic=twice&channel=c", "", nil)
		h.ok("POST", "/channel/settings?topic=twice&channel=c", `{"max_attempts":1,"message_ttl_ms":1,"dead_letter_expired":true}`, nil)
		pub("twice", numbered("t", 200)...)
		testutil.Eventually(t, 5*time.Second, func() bool {
			return channelStats(t, d, "twice", "c").DeadLetterCount == 200
		}, "the messages to be dead-lettered")
		h.ok("POST", "/channel/settings?topic=twice&channel=c", `{"message_ttl_ms":0,"dead_letter_expired":false}`, nil)
		var wg sync.WaitGroup
		got := make([]int, 4)
		for i := range got {
			wg.Go(func() {
				var rd struct{ Redriven int }
				if code, b := h.do("POST", "/channel/redrive?topic=twice&channel=c", "", &rd); code != 200 {
					t.Errorf("redrive: %d %s", code, b)
				}
				got[i] = rd.Redriven
			})
		}
		wg.Wait()
		if total := got[0] + got[1] + got[2] + got[3]; total != 200 {
			t.Errorf("four concurrent redrives sent %v back, %d in all, want 200", got, total)
		}
		if cs := channelStats(t, d, "twice", "c"); cs.Depth != 200 {
			t.Errorf("depth after the redrives: %d, want 200", cs.Depth)
		}
	})

	t.Run("a dead-letter topic that refuses", func(t *testing.T) {
		h.ok("POST", "/topic/create?topic=full", "", nil)
		h.ok("POST", "/channel/create?topic=full&channel=c", "", nil)
		h.ok("POST", "/topic/create?topic=full.dead", "", nil)
		h.ok("POST", "/topic/settings?topic=full.dead", `{"max_messages":1}`, nil)
		h.ok("POST", "/pub?topic=full.dead", "occupant", nil)
		h.ok("POST", "/channel/settings?topic=full&channel=c", `{"max_attempts":1}`, nil)
		pub("full", "doomed")
		c := dialRaw(t, addr)
		must(t, c.Subscribe("full", "c", 1))
		m, err := c.ExpectMessage()
		must(t, err)
		must(t, c.Send(protocol.Requeue(m.ID, 0)))
		refused := func() uint64 {
			var st struct{ Topics []nsqd.TopicStats }
			h.ok("GET", "/stats?format=json&topic=full.dead", "", &st)
			if len(st.Topics) != 1 {
				return 0
			}
			return st.Topics[0].RefusedCount
		}
		testutil.Eventually(t, 5*time.Second, func() bool { return refused() >= 1 }, "the first attempt")
		// Retried once a second, not in a loop.
		holdsFor(t, 500*time.Millisecond, func() bool { return refused() <= 2 }, "retries of a refused dead letter")
		// Room in the dead-letter topic: the next retry moves it.
		h.ok("POST", "/topic/settings?topic=full.dead", `{"max_messages":0}`, nil)
		testutil.Eventually(t, 5*time.Second, func() bool {
			return channelStats(t, d, "full", "c").DeadLetterCount == 1
		}, "the dead letter to move once there is room")
	})

	t.Run("values out of range", func(t *testing.T) {
		h.ok("POST", "/topic/create?topic=range", "", nil)
		h.ok("POST", "/channel/create?topic=range&channel=c", "", nil)
		for _, b := range []string{`{"message_ttl_ms":9000000000000}`, `{"retain_ms":-1}`, `{"max_messages":-5}`, `[1]`, `{"max_bytes":1} {}`} {
			if code, _ := h.do("POST", "/topic/settings?topic=range", b, nil); code != 400 {
				t.Errorf("topic settings %s: %d, want 400", b, code)
			}
		}
		for _, b := range []string{`{"max_attempts":70000}`, `{"dead_letter_topic":"bad name!","max_attempts":1}`} {
			if code, _ := h.do("POST", "/channel/settings?topic=range&channel=c", b, nil); code != 400 {
				t.Errorf("channel settings %s: %d, want 400", b, code)
			}
		}
		for _, q := range []string{"time=99999999999999999999", "time=9999999999", "time=yesterday", "to=newest", "id=xyz", "to=oldest&time=1"} {
			if code, _ := h.do("POST", "/channel/seek?topic=range&channel=c&"+q, "", nil); code != 400 {
				t.Errorf("seek %s: %d, want 400", q, code)
			}
		}
		if code, _ := h.do("POST", "/channel/seek?topic=range&channel=c&id=0123456789abcdef", "", nil); code != 404 {
			t.Errorf("seek to an unknown ID: %d, want 404", code)
		}
		if code, _ := h.do("POST", "/channel/create?topic=range&channel=c&to=oldest", "", nil); code != 409 {
			t.Errorf("create an existing channel at a point: %d, want 409", code)
		}
	})
}
