package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/nsq"
)

// nodeGet GETs path from an nsqd node and decodes its 200 answer into v.
func nodeGet(t *testing.T, node, path string, v any) {
	t.Helper()
	if code := getJSON(t, "http://"+node+path, v); code != 200 {
		t.Fatalf("GET %s from %s: %d", path, node, code)
	}
}

// nodePost POSTs to an nsqd node and fails the test unless it answers 200.
func nodePost(t *testing.T, node, path string) {
	t.Helper()
	if code, body := call(t, "POST", "http://"+node+path, ""); code != 200 {
		t.Fatalf("POST %s to %s: %d %s", path, node, code, body)
	}
}

// TestSettingsReachEveryNode changes a topic's settings through the API and a channel's
// through the page's form, and reads them back from every nsqd.
func TestSettingsReachEveryNode(t *testing.T) {
	c := startCluster(t, 2, nil)
	node0, node1 := c.nodes[0].HTTPAddr().String(), c.nodes[1].HTTPAddr().String()
	for i, node := range []string{node0, node1} {
		nodePost(t, node, "/topic/create?topic=orders")
		nodePost(t, node, "/channel/create?topic=orders&channel=billing")
		c.waitRegistered(t, i, "orders")
	}

	code, body := call(t, "POST", c.url("/api/settings/orders"), `{"message_ttl_ms":60000,"max_messages":100,"quota_policy":"drop_oldest"}`)
	if code != 200 || body != `{"message":""}` {
		t.Fatalf("POST /api/settings/orders: %d %s", code, body)
	}
	for _, node := range []string{node0, node1} {
		var ts TopicSettings
		nodeGet(t, node, "/topic/settings?topic=orders", &ts)
		if ts != (TopicSettings{MessageTTLMs: 60000, MaxMessages: 100, QuotaPolicy: "drop_oldest"}) {
			t.Errorf("%s has the topic settings %+v", node, ts)
		}
	}
	var got struct {
		Nodes []struct {
			Node     string        `json:"node"`
			Settings TopicSettings `json:"settings"`
		} `json:"nodes"`
	}
	if code := getJSON(t, c.url("/api/settings/orders"), &got); code != 200 || len(got.Nodes) != 2 || got.Nodes[0].Settings.MaxMessages != 100 {
		t.Errorf("GET /api/settings/orders: %d %+v", code, got)
	}

	code, loc, _ := postForm(t, c.url("/topics/orders/billing"), url.Values{"action": {"settings"}, "confirmed": {"1"},
		"max_attempts": {"3"}, "dead_letter_topic": {""}, "message_ttl": {"1d2h"}, "dead_letter_expired": {"1"}})
	if code != 303 || loc != "/topics/orders/billing?done=settings_channel" {
		t.Fatalf("the channel's settings form: %d %s", code, loc)
	}
	for _, node := range []string{node0, node1} {
		var cs ChannelSettings
		nodeGet(t, node, "/channel/settings?topic=orders&channel=billing", &cs)
		if cs != (ChannelSettings{MaxAttempts: 3, MessageTTLMs: 26 * 3600 * 1000, DeadLetterExpired: true}) {
			t.Errorf("%s has the channel settings %+v", node, cs)
		}
	}
	_, _, page1 := page(t, c.url(loc))
	for _, want := range []string{"Changed the channel&#39;s settings.", `value="1d2h"`, `name="max_attempts" value="3"`, "orders.dead"} {
		if !strings.Contains(page1, want) {
			t.Errorf("the channel page after the change does not contain %q", want)
		}
	}
	_, _, page2 := page(t, c.url("/topics/orders"))
	for _, want := range []string{"drop the oldest", `name="message_ttl" value="1m"`, `<option value="drop_oldest" selected>`} {
		if !strings.Contains(page2, want) {
			t.Errorf("the topic page does not contain %q", want)
		}
	}

	// The topic form sets every field: what is left empty is turned off.
	code, loc, _ = postForm(t, c.url("/topics/orders"), url.Values{"action": {"settings"}, "confirmed": {"1"},
		"message_ttl": {""}, "max_bytes": {"10MiB"}, "quota_policy": {"reject"}, "retain": {"2h"}})
	if code != 303 || loc != "/topics/orders?done=settings_topic" {
		t.Fatalf("the topic's settings form: %d %s", code, loc)
	}
	var ts TopicSettings
	nodeGet(t, node1, "/topic/settings?topic=orders", &ts)
	if ts != (TopicSettings{MaxBytes: 10 << 20, QuotaPolicy: "reject", RetainMs: 2 * 3600 * 1000}) {
		t.Errorf("after the form: %+v", ts)
	}

	for _, tt := range []struct{ path, body, want string }{
		{"/api/settings/orders", `{"max_mesages":1}`, `INVALID_SETTINGS: json: unknown field \"max_mesages\"`},
		{"/api/settings/orders", `{"quota_policy":"panic"}`, `INVALID_SETTINGS: quota_policy must be`},
		{"/api/settings/orders", `{"message_ttl_ms":-1}`, `INVALID_SETTINGS: invalid setting: message_ttl_ms must be between 0 and`},
		{"/api/settings/orders/billing", `{"dead_letter_topic":"orders"}`, `INVALID_SETTINGS: invalid setting: a topic cannot be its own dead-letter topic`},
	} {
		if code, body := call(t, "POST", c.url(tt.path), tt.body); code != 400 || !strings.Contains(body, tt.want) {
			t.Errorf("POST %s %s: %d %s, want 400 %s", tt.path, tt.body, code, body, tt.want)
		}
	}
	code, _, body = postForm(t, c.url("/topics/orders"), url.Values{"action": {"settings"}, "confirmed": {"1"},
		"message_ttl": {"soon"}, "quota_policy": {"reject"}})
	if code != 400 || !strings.Contains(body, "not a duration") {
		t.Errorf("a bad duration in the form: %d", code)
	}
}

// TestSettingsOnNSQNodes: a node without Tern's endpoints (NSQ's nsqd answers 404 NOT_FOUND)
// is named in a warning; the Tern node still changes.
func TestSettingsOnNSQNodes(t *testing.T) {
	c := startCluster(t, 1, nil)
	c.publish(t, 0, "orders", "a")
	nsqNode := fakeNSQD(t, "orders")
	a := startAdmin(t, func(o *Options) { o.NSQDHTTPAddresses = []string{c.nodes[0].HTTPAddr().String(), nsqNode} })

	code, body := call(t, "POST", adminURL(a, "/api/settings/orders"), `{"max_messages":5}`)
	want := "nsqd " + nsqNode + ": cannot change settings (POST /topic/settings needs Tern's nsqd)"
	if code != 200 || !strings.Contains(body, want) {
		t.Fatalf("settings with an NSQ node: %d %s, want a warning %q", code, body, want)
	}
	var ts TopicSettings
	nodeGet(t, c.nodes[0].HTTPAddr().String(), "/topic/settings?topic=orders", &ts)
	if ts.MaxMessages != 5 {
		t.Errorf("the Tern node's settings: %+v", ts)
	}
}

// fakeNSQD serves /info and /stats with topic as an NSQ nsqd does, and 404 NOT_FOUND for
// Tern's endpoints; it returns its host:port.
func fakeNSQD(t *testing.T, topic string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/info":
			_, _ = io.WriteString(w, `{"version":"1.3.0","broadcast_address":"127.0.0.1","hostname":"nsq","http_port":1,"tcp_port":2}`)
		case "/stats":
			_, _ = io.WriteString(w, `{"version":"1.3.0","health":"OK","topics":[{"topic_name":"`+topic+`","channels":[],"depth":0}]}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"message":"NOT_FOUND"}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// deadLettersAPI is GET /api/topics/:topic/:channel/dead_letters.
type deadLettersAPI struct {
	Nodes []NodeDeadLetters `json:"nodes"`
}

// TestDeadLettersAndRedrive makes two messages fail their only attempt, finds them on the
// channel page and in the API as an admin user, and sends them back: one from the page, the
// rest through the API. Someone who is not an admin sees none of it and may do none of it.
func TestDeadLettersAndRedrive(t *testing.T) {
	c := startCluster(t, 1, func(o *Options) { o.AdminUsers = []string{"alice"} })
	alice, bob := []string{"X-Forwarded-User", "alice"}, []string{"X-Forwarded-User", "bob"}
	node := c.nodes[0].HTTPAddr().String()
	nodePost(t, node, "/topic/create?topic=orders")
	nodePost(t, node, "/channel/create?topic=orders&channel=billing")
	c.waitRegistered(t, 0, "orders")
	if code, body := call(t, "POST", c.url("/api/settings/orders/billing"), `{"max_attempts":1}`, alice...); code != 200 {
		t.Fatalf("set max attempts: %d %s", code, body)
	}
	c.publish(t, 0, "orders", "poison <one>", "poison two")

	consumer := failingConsumer(t, c.nodes[0].TCPAddr().String())
	var dead deadLettersAPI
	testutil.Eventually(t, 10*time.Second, func() bool {
		code, body := call(t, "GET", c.url("/api/topics/orders/billing/dead_letters"), "", alice...)
		return code == 200 && json.Unmarshal([]byte(body), &dead) == nil && len(dead.Nodes) == 1 && len(dead.Nodes[0].DeadLetters) == 2
	}, "the two messages are dead letters")
	if err := consumer.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	dl := dead.Nodes[0].DeadLetters[0]
	if dead.Nodes[0].DeadLetterTopic != "orders.dead" || dl.Meta.Reason != "requeue" || dl.Meta.Attempts != 1 || dl.Meta.Channel != "billing" {
		t.Errorf("the dead letters: %+v", dead.Nodes[0])
	}

	c.admin.cache.invalidate()
	code, body := call(t, "GET", c.url("/topics/orders/billing"), "", alice...)
	for _, want := range []string{`id="dead-letters"`, "<code>poison &lt;one&gt;</code>", "requeue", `name="id" value="` + dl.ID + `"`, "Redrive all"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("the channel page for alice: %d, does not contain %q", code, want)
		}
	}
	if _, body := call(t, "GET", c.url("/topics/orders/billing"), "", bob...); strings.Contains(body, `id="dead-letters"`) || strings.Contains(body, "poison") {
		t.Error("bob sees the dead letters")
	}
	for _, tt := range []struct{ method, path, body string }{
		{"GET", "/api/topics/orders/billing/dead_letters", ""},
		{"POST", "/api/topics/orders/billing/redrive", ""},
		{"POST", "/api/topics/orders/billing/seek", `{"to":"oldest"}`},
		{"POST", "/api/settings/orders", `{"max_messages":1}`},
		{"POST", "/api/settings/orders/billing", `{"max_attempts":0}`},
	} {
		if code, body := call(t, tt.method, c.url(tt.path), tt.body, bob...); code != 403 || body != `{"message":"FORBIDDEN"}` {
			t.Errorf("bob's %s %s: %d %s", tt.method, tt.path, code, body)
		}
	}
	if code, _, _ := postForm(t, c.url("/topics/orders/billing"), url.Values{"action": {"redrive"}, "confirmed": {"1"}}, bob...); code != 403 {
		t.Errorf("bob's redrive form: %d", code)
	}

	// Redrive all asks first, when the browser's script did not.
	code, _, body = postForm(t, c.url("/topics/orders/billing"), url.Values{"action": {"redrive"}, "confirmed": {"0"}}, alice...)
	if code != 200 || !strings.Contains(body, "Send every dead letter of channel billing of topic orders back to the channel?") {
		t.Errorf("the confirmation of redrive all: %d\n%s", code, body)
	}

	code, loc, _ := postForm(t, c.url("/topics/orders/billing"), url.Values{"action": {"redrive"}, "node": {node}, "id": {dl.ID}, "confirmed": {"1"}}, alice...)
	if code != 303 || loc != "/topics/orders/billing?done=redrive_channel" {
		t.Fatalf("redrive one: %d %s", code, loc)
	}
	if _, body := call(t, "GET", c.url(loc), "", alice...); !strings.Contains(body, "Sent the dead letters back to the channel.") {
		t.Error("no notice after the redrive")
	}
	code, body = call(t, "POST", c.url("/api/topics/orders/billing/redrive"), "", alice...)
	if code != 200 || body != `{"redriven":1,"message":""}` {
		t.Errorf("redrive the rest: %d %s", code, body)
	}
	if cs, _ := c.nodes[0].ChannelStats("orders", "billing"); cs.Depth != 2 {
		t.Errorf("the channel holds %d messages after the redrives, want 2", cs.Depth)
	}
	if code := getJSON(t, c.url("/api/topics/orders/billing/dead_letters"), nil); code != 403 {
		t.Errorf("dead letters without a user: %d", code)
	}
	code, body = call(t, "GET", c.url("/api/topics/orders/billing/dead_letters"), "", alice...)
	if code != 200 || !strings.Contains(body, `"dead_letters":[]`) {
		t.Errorf("dead letters after the redrives: %d %s", code, body)
	}
	for _, tt := range []struct{ body, want string }{
		{`{"ids":["0123456789abcdef"]}`, `{"message":"INVALID_NODE"}`},
		{`{"node":"` + node + `","ids":["nope"]}`, `{"message":"INVALID_ID"}`},
	} {
		if code, body := call(t, "POST", c.url("/api/topics/orders/billing/redrive"), tt.body, alice...); code != 400 || body != tt.want {
			t.Errorf("redrive %s: %d %s, want 400 %s", tt.body, code, body, tt.want)
		}
	}
	if code, body := call(t, "POST", c.url("/api/topics/orders/billing/redrive"), `{"node":"10.1.1.1:80","ids":["0123456789abcdef"]}`, alice...); code != 404 {
		t.Errorf("redrive on a stranger: %d %s, want 404", code, body)
	}
}

// failingConsumer subscribes to orders/billing on the nsqd at tcpAddr and fails every
// message, which the client requeues.
func failingConsumer(t *testing.T, tcpAddr string) *nsq.Consumer {
	t.Helper()
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 10
	con, err := nsq.NewConsumer("orders", "billing", nsq.HandlerFunc(func(*nsq.Message) error {
		return errors.New("poison")
	}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := con.ConnectToNSQD(ctx, tcpAddr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = con.Stop(ctx)
	})
	return con
}

// TestSeek moves a channel through the API and the page's form: by message ID, to the
// oldest message and to a time, with a confirmation page first for the form.
func TestSeek(t *testing.T) {
	c := startCluster(t, 1, nil)
	node := c.nodes[0].HTTPAddr().String()
	nodePost(t, node, "/topic/create?topic=orders")
	nodePost(t, node, "/channel/create?topic=orders&channel=billing")
	c.publish(t, 0, "orders", "one", "two", "three")
	c.admin.cache.invalidate()
	depth := func() int64 {
		cs, _ := c.nodes[0].ChannelStats("orders", "billing")
		return cs.Depth
	}
	var peek struct {
		Nodes []NodeMessages `json:"nodes"`
	}
	if code := getJSON(t, c.url("/api/topics/orders/billing/messages?state=next"), &peek); code != 200 || len(peek.Nodes) != 1 || len(peek.Nodes[0].Messages) != 3 {
		t.Fatalf("the channel's messages: %d %+v", code, peek)
	}
	third := peek.Nodes[0].Messages[2].ID

	if code, body := call(t, "POST", c.url("/api/topics/orders/billing/seek"), `{"id":"`+third+`"}`); code != 200 || body != `{"message":""}` {
		t.Fatalf("seek to the third message: %d %s", code, body)
	}
	if d := depth(); d != 1 {
		t.Errorf("after a seek to the third message the depth is %d, want 1", d)
	}
	code, _, body := postForm(t, c.url("/topics/orders/billing"), url.Values{"action": {"seek"}, "to": {"oldest"}, "at": {""}, "confirmed": {"0"}})
	if code != 200 || !strings.Contains(body, "Move channel billing of topic orders to the oldest message its topic retains?") ||
		!strings.Contains(body, `<input type="hidden" name="to" value="oldest">`) {
		t.Fatalf("the confirmation of a seek: %d\n%s", code, body)
	}
	if d := depth(); d != 1 {
		t.Fatal("an unconfirmed seek moved the channel")
	}
	code, loc, _ := postForm(t, c.url("/topics/orders/billing"), url.Values{"action": {"seek"}, "to": {"oldest"}, "at": {""}, "confirmed": {"1"}})
	if code != 303 || loc != "/topics/orders/billing?done=seek_channel" {
		t.Fatalf("seek to the oldest: %d %s", code, loc)
	}
	if d := depth(); d != 3 {
		t.Errorf("after a seek to the oldest the depth is %d, want 3", d)
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if code, body := call(t, "POST", c.url("/api/topics/orders/billing/seek"), `{"time":"`+future+`"}`); code != 200 {
		t.Fatalf("seek to an hour from now: %d %s", code, body)
	}
	if d := depth(); d != 0 {
		t.Errorf("after a seek past the last message the depth is %d, want 0", d)
	}
	if code, body := call(t, "POST", c.url("/api/topics/orders/billing/seek"), `{"time":"1h"}`); code != 200 || depth() != 3 {
		t.Errorf("seek to an hour ago: %d %s, depth %d", code, body, depth())
	}

	for _, tt := range []struct {
		body string
		code int
		want string
	}{
		{`{"id":"00000000000000ff"}`, 404, `{"message":"MESSAGE_NOT_FOUND"}`},
		{`{"to":"newest"}`, 400, `{"message":"INVALID_SEEK"}`},
		{`{"to":"oldest","id":"00000000000000ff"}`, 400, `{"message":"INVALID_SEEK"}`},
		{`{"time":"yesterday"}`, 400, `{"message":"INVALID_SEEK"}`},
	} {
		if code, body := call(t, "POST", c.url("/api/topics/orders/billing/seek"), tt.body); code != tt.code || body != tt.want {
			t.Errorf("seek %s: %d %s, want %d %s", tt.body, code, body, tt.code, tt.want)
		}
	}
	if code, body := call(t, "POST", c.url("/api/topics/orders/missing/seek"), `{"to":"oldest"}`); code != 404 {
		t.Errorf("seek on a missing channel: %d %s", code, body)
	}
}

// TestSettingsUnits reads and writes the pages' durations and sizes.
func TestSettingsUnits(t *testing.T) {
	for _, tt := range []struct {
		in   string
		ms   int64
		text string
	}{
		{"", 0, ""}, {"90", 90000, "1m30s"}, {"1.5", 1500, "1.5s"}, {"2h", 7200000, "2h"}, {"7d", 7 * 86400000, "7d"},
		{"1d12h", 36 * 3600000, "1d12h"}, {"250ms", 250, "250ms"},
	} {
		ms, err := parseDurationMs("d", tt.in)
		if err != nil || ms != tt.ms || formatDurationMs(ms) != tt.text {
			t.Errorf("duration %q: %d %v %q, want %d %q", tt.in, ms, err, formatDurationMs(ms), tt.ms, tt.text)
		}
	}
	for _, bad := range []string{"soon", "-1", "-2h", "xd"} {
		if _, err := parseDurationMs("d", bad); err == nil {
			t.Errorf("duration %q was accepted", bad)
		}
	}
	for _, tt := range []struct {
		in   string
		n    int64
		text string
	}{
		{"", 0, ""}, {"1000", 1000, "1KB"}, {"1001", 1001, "1001"}, {"512MiB", 512 << 20, "512MiB"}, {"10 GB", 10e9, "10GB"}, {"2g", 2 << 30, "2GiB"}, {"1.5KiB", 1536, "1536"},
	} {
		n, err := parseBytes("b", tt.in)
		if err != nil || n != tt.n || formatBytes(n) != tt.text {
			t.Errorf("size %q: %d %v %q, want %d %q", tt.in, n, err, formatBytes(n), tt.n, tt.text)
		}
	}
	for _, bad := range []string{"lots", "-1", "1XB"} {
		if _, err := parseBytes("b", bad); err == nil {
			t.Errorf("size %q was accepted", bad)
		}
	}
}
