package admin

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/nsqd"
	"github.com/ternmq/tern/nsqd/nsqdtest"
)

// TestAPIReadsTheCluster checks every read endpoint of NSQ's admin API against a real
// two-node cluster: the shapes, the sums over nodes, and the per-node and per-client entries.
func TestAPIReadsTheCluster(t *testing.T) {
	c := startCluster(t, 2, nil)
	node0, node1 := c.nodes[0].HTTPAddr().String(), c.nodes[1].HTTPAddr().String()
	c.publish(t, 0, "orders", "a", "b", "c")
	c.publish(t, 1, "orders", "d", "e")
	c.publish(t, 1, "events", "x")
	c.consume(t, 0, "orders", "billing", "worker-1", true)
	testutil.Eventually(t, 10*time.Second, func() bool {
		cs, ok := c.nodes[0].ChannelStats("orders", "billing")
		return ok && cs.InFlightCount == 3
	}, "the consumer holds node 0's three messages in flight")
	c.admin.cache.invalidate() // the sampler's snapshot may predate the publishes

	var topics struct {
		Topics  []string `json:"topics"`
		Message string   `json:"message"`
	}
	if code := getJSON(t, c.url("/api/topics"), &topics); code != 200 || !slices.Equal(topics.Topics, []string{"events", "orders"}) || topics.Message != "" {
		t.Fatalf("/api/topics: %d %+v", code, topics)
	}

	var nodes struct {
		Nodes []Producer `json:"nodes"`
	}
	getJSON(t, c.url("/api/nodes"), &nodes)
	if len(nodes.Nodes) != 2 {
		t.Fatalf("/api/nodes: %+v", nodes)
	}
	for _, n := range nodes.Nodes {
		if len(n.RemoteAddresses) != 1 || !strings.HasPrefix(n.RemoteAddresses[0], c.lookupd.HTTPAddr().String()+"/") ||
			n.BroadcastAddress != "127.0.0.1" || n.Version == "" || n.OutOfDate {
			t.Errorf("node %+v", n)
		}
		if n.HTTPAddress() == node1 && !slices.Equal(n.Topics, []ProducerTopic{{"events", false}, {"orders", false}}) {
			t.Errorf("node 1 topics %+v", n.Topics)
		}
	}

	var topic struct {
		TopicStats
		Message string `json:"message"`
	}
	getJSON(t, c.url("/api/topics/orders"), &topic)
	if topic.Node != "*" || topic.TopicName != "orders" || topic.MessageCount != 5 || len(topic.NodeStats) != 2 {
		t.Fatalf("/api/topics/orders: %+v", topic.TopicStats)
	}
	billing := topic.Channel("billing")
	if billing == nil || billing.Node != "*" || billing.InFlightCount != 3 || billing.ClientCount != 1 || len(billing.NodeStats) != 1 {
		t.Fatalf("billing channel in the topic: %+v", billing)
	}
	for _, nt := range topic.NodeStats {
		if nt.Node != node0 && nt.Node != node1 || nt.Hostname == "" || nt.MemoryDepth != nt.Depth-nt.BackendDepth {
			t.Errorf("per-node entry %+v", nt)
		}
	}

	var channel struct {
		ChannelStats
		Message string `json:"message"`
	}
	getJSON(t, c.url("/api/topics/orders/billing"), &channel)
	if channel.ChannelName != "billing" || channel.TopicName != "orders" || len(channel.Clients) != 1 {
		t.Fatalf("/api/topics/orders/billing: %+v", channel.ChannelStats)
	}
	cl := channel.Clients[0]
	if cl.ClientID != "worker-1" || cl.Node != node0 || cl.InFlightCount != 3 || cl.ConnectTs == 0 || cl.ConnectedDuration < 0 {
		t.Errorf("client %+v", cl)
	}

	var node struct {
		Node          string        `json:"node"`
		Topics        []*TopicStats `json:"topics"`
		TotalMessages int64         `json:"total_messages"`
		TotalClients  int           `json:"total_clients"`
	}
	getJSON(t, c.url("/api/nodes/"+node0), &node)
	if node.Node != node0 || len(node.Topics) != 1 || node.TotalMessages != 3 || node.TotalClients != 1 {
		t.Fatalf("/api/nodes/%s: %+v", node0, node)
	}

	var counter struct {
		Stats map[string]counterStat `json:"stats"`
	}
	getJSON(t, c.url("/api/counter"), &counter)
	if s := counter.Stats["orders:billing:"+node0]; s.MessageCount != 3 || s.Node != node0 {
		t.Fatalf("/api/counter: %+v", counter.Stats)
	}

	for _, tc := range []struct{ path, want string }{
		{"/api/topics/missing", `{"message":"TOPIC_NOT_FOUND"}`},
		{"/api/topics/orders/missing", `{"message":"CHANNEL_NOT_FOUND"}`},
		{"/api/nodes/10.9.9.9:4151", `{"message":"NODE_NOT_FOUND"}`},
		{"/api/graphite?metric=rate&target=x", `{"message":"NOT_FOUND"}`},
	} {
		if code, body := call(t, "GET", c.url(tc.path), ""); code != 404 || body != tc.want {
			t.Errorf("GET %s: %d %s, want 404 %s", tc.path, code, body, tc.want)
		}
	}
}

// TestAPIActions carries out every action through the API and checks each daemon did it.
func TestAPIActions(t *testing.T) {
	notes := newNotificationSink(t)
	c := startCluster(t, 2, func(o *Options) { o.NotificationHTTPEndpoint = notes.url })
	c.publish(t, 0, "orders", "a", "b")
	c.publish(t, 1, "orders", "c")
	node0 := c.nodes[0].HTTPAddr().String()

	post := func(path, body string) {
		t.Helper()
		if code, got := call(t, "POST", c.url(path), body); code != 200 || got != `{"message":""}` {
			t.Fatalf("POST %s %s: %d %s", path, body, code, got)
		}
	}
	post("/api/topics", `{"topic":"orders","channel":"billing"}`)
	for i, d := range c.nodes {
		if _, ok := d.ChannelStats("orders", "billing"); !ok {
			t.Fatalf("node %d has no channel billing after the create", i)
		}
	}
	post("/api/topics/orders", `{"action":"pause"}`)
	for _, d := range c.nodes {
		if ts, _ := d.TopicStats("orders"); !ts.Paused {
			t.Fatal("topic not paused on every node")
		}
	}
	post("/api/topics/orders", `{"action":"unpause"}`)
	post("/api/topics/orders/billing", `{"action":"pause"}`)
	for _, d := range c.nodes {
		if cs, _ := d.ChannelStats("orders", "billing"); !cs.Paused {
			t.Fatal("channel not paused on every node")
		}
	}
	post("/api/topics/orders/billing", `{"action":"empty"}`)
	for _, d := range c.nodes {
		if cs, _ := d.ChannelStats("orders", "billing"); cs.Depth != 0 {
			t.Fatalf("channel depth %d after empty", cs.Depth)
		}
	}
	if code, got := call(t, "DELETE", c.url("/api/topics/orders/billing"), ""); code != 200 || got != `{"message":""}` {
		t.Fatalf("DELETE channel: %d %s", code, got)
	}
	for _, d := range c.nodes {
		if _, ok := d.ChannelStats("orders", "billing"); ok {
			t.Fatal("channel still there after delete")
		}
	}
	if code, got := call(t, "DELETE", c.url("/api/nodes/"+node0), `{"topic":"orders"}`); code != 200 || got != `{"message":""}` {
		t.Fatalf("tombstone: %d %s", code, got)
	}
	if _, ok := c.nodes[0].TopicStats("orders"); ok {
		t.Fatal("the tombstoned node still has the topic")
	}
	if _, ok := c.nodes[1].TopicStats("orders"); !ok {
		t.Fatal("tombstoning one node deleted the topic from another")
	}
	if code, got := call(t, "DELETE", c.url("/api/topics/orders"), ""); code != 200 || got != `{"message":""}` {
		t.Fatalf("DELETE topic: %d %s", code, got)
	}
	if _, ok := c.nodes[1].TopicStats("orders"); ok {
		t.Fatal("topic still there after delete")
	}

	want := []string{"create_topic", "create_channel", "pause_topic", "unpause_topic", "pause_channel",
		"empty_channel", "delete_channel", "tombstone_topic_producer", "delete_topic"}
	got := notes.wait(t, len(want))
	for i, n := range got {
		if n.Action != want[i] || n.Topic != "orders" || n.Timestamp == 0 || n.Via == "" || n.RemoteIP == "" ||
			!strings.HasPrefix(n.URL, "http://"+c.admin.HTTPAddr().String()+"/api/") {
			t.Errorf("notification %d: %+v, want action %s", i, n, want[i])
		}
	}
	if got[7].Node != node0 || got[1].Channel != "billing" {
		t.Errorf("notifications lack node or channel: %+v", got)
	}
}

// TestAPIRefusals checks the admin check, bad bodies and bad names, with NSQ's codes.
func TestAPIRefusals(t *testing.T) {
	c := startCluster(t, 1, func(o *Options) { o.AdminUsers = []string{"alice"} })
	c.publish(t, 0, "orders", "a")
	node0 := c.nodes[0].HTTPAddr().String()
	user := func(name string) []string { return []string{"X-Forwarded-User", name} }
	tests := []struct {
		name, method, path, body string
		header                   []string
		code                     int
		want                     string
	}{
		{"not an admin creates", "POST", "/api/topics", `{"topic":"t"}`, user("bob"), 403, `{"message":"FORBIDDEN"}`},
		{"anonymous pauses", "POST", "/api/topics/orders", `{"action":"pause"}`, nil, 403, `{"message":"FORBIDDEN"}`},
		{"not an admin deletes", "DELETE", "/api/topics/orders", "", user("bob"), 403, `{"message":"FORBIDDEN"}`},
		{"not an admin tombstones", "DELETE", "/api/nodes/" + node0, `{"topic":"orders"}`, user("bob"), 403, `{"message":"FORBIDDEN"}`},
		{"empty body", "POST", "/api/topics", "", user("alice"), 400, `{"message":"EOF"}`},
		{"bad topic", "POST", "/api/topics", `{"topic":"a b"}`, user("alice"), 400, `{"message":"INVALID_TOPIC"}`},
		{"bad channel", "POST", "/api/topics", `{"topic":"a","channel":"x/y"}`, user("alice"), 400, `{"message":"INVALID_CHANNEL"}`},
		{"unknown action", "POST", "/api/topics/orders", `{"action":"explode"}`, user("alice"), 400, `{"message":"INVALID_ACTION"}`},
		{"action on a missing topic", "POST", "/api/topics/missing", `{"action":"pause"}`, user("alice"), 404, `{"message":"TOPIC_NOT_FOUND"}`},
		{"tombstone with a bad body", "DELETE", "/api/nodes/" + node0, `{`, user("alice"), 400, `{"message":"INVALID_BODY"}`},
		{"tombstone on a stranger", "DELETE", "/api/nodes/10.1.1.1:80", `{"topic":"orders"}`, user("alice"), 404, `{"message":"NODE_NOT_FOUND"}`},
		{"wrong method", "PUT", "/api/topics", "", nil, 405, `{"message":"METHOD_NOT_ALLOWED"}`},
		{"not an admin moves the lookupds", "PUT", "/config/nsqlookupd_http_addresses", `["10.9.9.9:4161"]`, user("bob"), 403, `{"message":"FORBIDDEN"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, tt.method, c.url(tt.path), tt.body, tt.header...)
			if code != tt.code || body != tt.want {
				t.Errorf("%s %s: %d %s, want %d %s", tt.method, tt.path, code, body, tt.code, tt.want)
			}
		})
	}
	if ts, _ := c.nodes[0].TopicStats("orders"); ts.Paused {
		t.Error("a refused pause paused the topic")
	}
	if code, body := call(t, "POST", c.url("/api/topics/orders"), `{"action":"pause"}`, user("alice")...); code != 200 {
		t.Fatalf("the admin user was refused: %d %s", code, body)
	}
}

// TestAPIWithoutLookupds runs the admin over a fixed list of nodes, one of which is down: the
// others are shown, the dead one is named in a warning, and a create reaches every live node.
func TestAPIWithoutLookupds(t *testing.T) {
	d0 := nsqdtest.Start(t, nil)
	d1 := nsqdtest.Start(t, func(o *nsqd.Options) { o.NodeID = 2 })
	dead := deadAddress(t)
	a := startAdmin(t, func(o *Options) {
		o.NSQDHTTPAddresses = []string{d0.HTTPAddr().String(), d1.HTTPAddr().String(), dead}
		o.HTTPClientConnectTimeout = time.Second
	})
	var nodes struct {
		Nodes   []Producer `json:"nodes"`
		Message string     `json:"message"`
	}
	getJSON(t, adminURL(a, "/api/nodes"), &nodes)
	if len(nodes.Nodes) != 2 || !strings.HasPrefix(nodes.Message, "WARNING: nsqd "+dead+": ") {
		t.Fatalf("/api/nodes: %+v", nodes)
	}
	if code, body := call(t, "POST", adminURL(a, "/api/topics"), `{"topic":"made","channel":"here"}`); code != 200 ||
		!strings.Contains(body, "WARNING: nsqd "+dead) {
		t.Fatalf("create: %d %s", code, body)
	}
	for i, d := range []*nsqd.NSQD{d0, d1} {
		if _, ok := d.ChannelStats("made", "here"); !ok {
			t.Errorf("node %d did not create the topic and channel", i)
		}
	}
	var topics struct {
		Topics []string `json:"topics"`
	}
	getJSON(t, adminURL(a, "/api/topics"), &topics)
	if !slices.Equal(topics.Topics, []string{"made"}) {
		t.Errorf("/api/topics without lookupds: %q", topics.Topics)
	}
	var inactive struct {
		Topics map[string][]string `json:"topics"`
	}
	if getJSON(t, adminURL(a, "/api/topics?inactive=true"), &inactive); inactive.Topics == nil || len(inactive.Topics) != 0 {
		t.Errorf("inactive topics without lookupds: %+v, want {}", inactive)
	}
}

// TestAPIUpstreamError: with no lookupd answering, the API answers NSQ's 502.
func TestAPIUpstreamError(t *testing.T) {
	dead := deadAddress(t)
	a := startAdmin(t, func(o *Options) { o.NSQLookupdHTTPAddresses = []string{dead} })
	code, body := call(t, "GET", adminURL(a, "/api/topics"), "")
	if code != 502 || !strings.HasPrefix(body, `{"message":"UPSTREAM_ERROR: failed to query any nsqlookupd: nsqlookupd `+dead) {
		t.Fatalf("/api/topics with a dead lookupd: %d %s", code, body)
	}
}

// TestInactiveTopics: a topic created through the admin is registered in the lookupds with
// its channel and no node, which /api/topics?inactive=true and the topic list show.
func TestInactiveTopics(t *testing.T) {
	c := startCluster(t, 1, nil)
	c.publish(t, 0, "live", "x")
	if code, body := call(t, "POST", c.url("/api/topics"), `{"topic":"planned","channel":"later"}`); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	c.admin.cache.invalidate() // the snapshot may predate the publish
	var inactive struct {
		Topics map[string][]string `json:"topics"`
	}
	getJSON(t, c.url("/api/topics?inactive=true"), &inactive)
	if len(inactive.Topics) != 1 || !slices.Equal(inactive.Topics["planned"], []string{"later"}) {
		t.Fatalf("inactive: %+v", inactive.Topics)
	}
	var topics struct {
		Topics []string `json:"topics"`
	}
	getJSON(t, c.url("/api/topics"), &topics)
	if !slices.Equal(topics.Topics, []string{"live", "planned"}) {
		t.Fatalf("topics: %q", topics.Topics)
	}
}

// TestSlowNodeIsBoundedByTheDeadline: a node that takes far longer than the request timeout
// is reported as not answering, and the rest of the cluster is served.
func TestSlowNodeIsBoundedByTheDeadline(t *testing.T) {
	d := nsqdtest.Start(t, nil)
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	a := startAdmin(t, func(o *Options) {
		o.NSQDHTTPAddresses = []string{d.HTTPAddr().String(), slow.Listener.Addr().String()}
		o.HTTPClientRequestTimeout = 300 * time.Millisecond
	})
	var nodes struct {
		Nodes   []Producer `json:"nodes"`
		Message string     `json:"message"`
	}
	getJSON(t, adminURL(a, "/api/nodes"), &nodes)
	if len(nodes.Nodes) != 1 || nodes.Message != "WARNING: nsqd "+slow.Listener.Addr().String()+": no answer within 300ms" {
		t.Fatalf("/api/nodes: %+v", nodes)
	}
}

// TestHTTPSAfterForbidden: an nsqd that requires TLS answers plain HTTP with 403 and its
// HTTPS port; the admin follows it with the configured root CA, as NSQ's admin does.
func TestHTTPSAfterForbidden(t *testing.T) {
	secure := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/info":
			_, _ = io.WriteString(w, `{"version":"1.3.0","broadcast_address":"127.0.0.1","hostname":"secure","http_port":1,"tcp_port":2}`)
		case "/stats":
			_, _ = io.WriteString(w, `{"topics":[{"topic_name":"tls-topic","depth":7,"message_count":7,"channels":[]}]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(secure.Close)
	_, port, _ := net.SplitHostPort(secure.Listener.Addr().String())
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"message":"TLS_REQUIRED","https_port":`+port+`}`)
	}))
	t.Cleanup(plain.Close)
	caFile := writeCertPEM(t, secure)
	a := startAdmin(t, func(o *Options) {
		o.NSQDHTTPAddresses = []string{plain.Listener.Addr().String()}
		o.HTTPClientTLSRootCAFile = caFile
	})
	var topic struct {
		TopicStats
		Message string `json:"message"`
	}
	if code := getJSON(t, adminURL(a, "/api/topics/tls-topic"), &topic); code != 200 || topic.Depth != 7 || topic.Message != "" {
		t.Fatalf("topic over HTTPS: %d %+v", code, topic)
	}
}

// TestConfigEndpoint checks GET and PUT /config/:opt and the CIDR check.
func TestConfigEndpoint(t *testing.T) {
	c := startCluster(t, 1, nil)
	lookupd := c.lookupd.HTTPAddr().String()
	if code, body := call(t, "GET", c.url("/config/nsqlookupd_http_addresses"), ""); code != 200 || body != `["`+lookupd+`"]` {
		t.Fatalf("GET: %d %s", code, body)
	}
	if code, body := call(t, "GET", c.url("/config/nsqd_http_addresses"), ""); code != 200 || body != `[]` {
		t.Fatalf("GET an empty list: %d %s", code, body)
	}
	if code, body := call(t, "PUT", c.url("/config/log_level"), "warn\n"); code != 200 || body != "warn" {
		t.Fatalf("PUT log_level: %d %s", code, body)
	}
	dead := deadAddress(t)
	if code, body := call(t, "PUT", c.url("/config/nsqlookupd_http_addresses"), `["`+dead+`"]`); code != 200 || body != `["`+dead+`"]` {
		t.Fatalf("PUT lookupds: %d %s", code, body)
	}
	if code, _ := call(t, "GET", c.url("/api/topics"), ""); code != 502 {
		t.Fatalf("the new lookupd list did not take effect: %d", code)
	}
	for _, tc := range []struct {
		method, opt, body string
		code              int
		want              string
	}{
		{"GET", "nope", "", 400, "INVALID_OPTION"},
		{"PUT", "http_address", `"x"`, 400, "INVALID_OPTION"},
		{"PUT", "log_level", "loud", 400, "INVALID_VALUE"},
		{"PUT", "log_level", "", 413, "INVALID_VALUE"},
		{"PUT", "nsqlookupd_http_addresses", `["nohost"]`, 400, "INVALID_VALUE"},
		{"PUT", "nsqlookupd_http_addresses", `[]`, 400, "INVALID_VALUE"},
	} {
		if code, body := call(t, tc.method, c.url("/config/"+tc.opt), tc.body); code != tc.code || body != `{"message":"`+tc.want+`"}` {
			t.Errorf("%s /config/%s %q: %d %s, want %d %s", tc.method, tc.opt, tc.body, code, body, tc.code, tc.want)
		}
	}

	far := startAdmin(t, func(o *Options) {
		o.NSQLookupdHTTPAddresses = []string{lookupd}
		o.AllowConfigFromCIDR = "10.0.0.0/8"
	})
	if code, body := call(t, "GET", adminURL(far, "/config/log_level"), ""); code != 403 || body != `{"message":"FORBIDDEN"}` {
		t.Fatalf("config from outside the CIDR: %d %s", code, body)
	}
}

// TestSeriesEndpoint: the samples behind the charts, with rates from the second sample on.
func TestSeriesEndpoint(t *testing.T) {
	c := startCluster(t, 1, nil)
	c.publish(t, 0, "orders", "a")
	record := func() {
		s, err := c.admin.cache.get(t.Context(), 0)
		if err != nil {
			t.Fatal(err)
		}
		c.admin.sampler.record(s)
	}
	record()
	c.publish(t, 0, "orders", "b", "c")
	record()
	var series struct {
		Topic  string        `json:"topic"`
		Points []seriesPoint `json:"points"`
	}
	getJSON(t, c.url("/api/series?topic=orders"), &series)
	n := len(series.Points)
	if series.Topic != "orders" || n < 1 || series.Points[n-1].Depth != 3 || series.Points[n-1].InRate == nil || *series.Points[n-1].InRate <= 0 {
		t.Fatalf("series: %+v", series)
	}
	if code, body := call(t, "GET", c.url("/api/series?channel=x"), ""); code != 400 || body != `{"message":"INVALID_TOPIC"}` {
		t.Fatalf("series of a channel without a topic: %d %s", code, body)
	}
}

// deadAddress returns a loopback address nothing listens on.
func deadAddress(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// notificationSink is an HTTP endpoint that records the notifications posted to it.
type notificationSink struct {
	url string
	mu  sync.Mutex
	got []adminAction
}

func newNotificationSink(t *testing.T) *notificationSink {
	n := &notificationSink{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a adminAction
		if r.Method != "POST" || r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&a) != nil {
			t.Errorf("bad notification: %s %s", r.Method, r.Header.Get("Content-Type"))
		}
		n.mu.Lock()
		n.got = append(n.got, a)
		n.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	n.url = srv.URL + "/notify?" + url.Values{"k": {"v"}}.Encode()
	return n
}

func (n *notificationSink) wait(t *testing.T, count int) []adminAction {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return len(n.got) >= count
	}, "%d notifications arrived", count)
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.got)
}
