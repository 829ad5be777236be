//go:build interop

// The interop tests run Tern's admin over real NSQ 1.3 daemons, and NSQ 1.3's own nsqadmin
// over Tern's daemons. They need NSQ's binaries in $TERN_NSQ_BIN: `make interop-test` builds
// them from the Go module proxy (contrib/nsq-reference.sh) and runs these tests.

package admin

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/lookupd/lookupdtest"
)

// nsqdStats reads a real nsqd's /stats for one topic.
func nsqdStats(t *testing.T, addr, topic string) *TopicStats {
	t.Helper()
	var report struct {
		Topics []*TopicStats `json:"topics"`
	}
	if code := getJSON(t, "http://"+addr+"/stats?format=json&topic="+topic, &report); code != 200 {
		t.Fatalf("/stats of %s: %d", addr, code)
	}
	for _, ts := range report.Topics {
		if ts.TopicName == topic {
			return ts
		}
	}
	return nil
}

// TestInteropTernAdminOverRealNSQ: Tern's admin shows and manages a cluster of NSQ 1.3's own
// daemons.
func TestInteropTernAdminOverRealNSQ(t *testing.T) {
	nsq := testutil.StartRealNSQ(t, 2)
	for i, node := range nsq.NodesHTTP {
		for range 3 + i {
			if code, body := call(t, "POST", "http://"+node+"/pub?topic=orders", "hello"); code != 200 {
				t.Fatalf("publish to NSQ's nsqd: %d %s", code, body)
			}
		}
		if code, body := call(t, "POST", "http://"+node+"/channel/create?topic=orders&channel=billing", ""); code != 200 {
			t.Fatalf("create a channel on NSQ's nsqd: %d %s", code, body)
		}
	}
	a := startAdmin(t, func(o *Options) { o.NSQLookupdHTTPAddresses = []string{nsq.LookupdHTTP} })

	// The nodes register with the lookupd on their own schedule.
	testutil.Eventually(t, 10*time.Second, func() bool {
		a.cache.invalidate()
		var topic struct {
			TopicStats
		}
		return getJSON(t, adminURL(a, "/api/topics/orders"), &topic) == 200 && len(topic.NodeStats) == 2 && topic.MessageCount == 7
	}, "the admin sees topic orders on both NSQ nodes with 7 messages")

	var nodes struct {
		Nodes []Producer `json:"nodes"`
	}
	getJSON(t, adminURL(a, "/api/nodes"), &nodes)
	if len(nodes.Nodes) != 2 || nodes.Nodes[0].Version != "1.3.0" {
		t.Fatalf("nodes: %+v", nodes.Nodes)
	}
	for _, path := range []string{"/", "/topics/orders", "/topics/orders/billing", "/nodes", "/nodes/" + nsq.NodesHTTP[0], "/lookup", "/counter"} {
		code, _, body := page(t, adminURL(a, path))
		if code != 200 || strings.Contains(body, `class="warnings"`) {
			t.Errorf("GET %s over NSQ: %d (warnings: %v)", path, code, strings.Contains(body, `class="warnings"`))
		}
	}
	if _, _, body := page(t, adminURL(a, "/topics/orders/billing")); !strings.Contains(body, "7</span>") {
		t.Error("the channel page does not show the channel's depth of 7")
	} else if !strings.Contains(body, "nsqd cannot show its messages") {
		t.Error("the channel page does not say that NSQ's nodes cannot show their messages")
	}

	if code, body := call(t, "POST", adminURL(a, "/api/topics/orders/billing"), `{"action":"pause"}`); code != 200 || body != `{"message":""}` {
		t.Fatalf("pause over NSQ: %d %s", code, body)
	}
	for _, node := range nsq.NodesHTTP {
		if ts := nsqdStats(t, node, "orders"); ts == nil || len(ts.Channels) != 1 || !ts.Channels[0].Paused {
			t.Fatalf("NSQ's nsqd %s did not pause the channel: %+v", node, ts)
		}
	}
	if code, body := call(t, "POST", adminURL(a, "/api/topics/orders/billing"), `{"action":"empty"}`); code != 200 {
		t.Fatalf("empty over NSQ: %d %s", code, body)
	}
	if code, body := call(t, "DELETE", adminURL(a, "/api/nodes/"+nsq.NodesHTTP[0]), `{"topic":"orders"}`); code != 200 || body != `{"message":""}` {
		t.Fatalf("tombstone over NSQ: %d %s", code, body)
	}
	if ts := nsqdStats(t, nsq.NodesHTTP[0], "orders"); ts != nil {
		t.Fatal("NSQ's nsqd kept the topic tombstoned on it")
	}
	if code, body := call(t, "DELETE", adminURL(a, "/api/topics/orders"), ""); code != 200 {
		t.Fatalf("delete over NSQ: %d %s", code, body)
	}
	if ts := nsqdStats(t, nsq.NodesHTTP[1], "orders"); ts != nil {
		t.Fatal("NSQ's nsqd kept the deleted topic")
	}
}

// TestInteropRealAdminOverTern: NSQ 1.3's own nsqadmin reads and manages Tern's daemons.
func TestInteropRealAdminOverTern(t *testing.T) {
	c := &testCluster{lookupd: lookupdtest.Start(t, nil)}
	for i := range 2 {
		c.nodes = append(c.nodes, startNode(t, c.lookupd, int64(i+1)))
	}
	c.publish(t, 0, "orders", "a", "b", "c")
	c.publish(t, 1, "orders", "d")
	c.consume(t, 0, "orders", "billing", "tern-consumer", true)
	testutil.Eventually(t, 10*time.Second, func() bool {
		cs, ok := c.nodes[0].ChannelStats("orders", "billing")
		return ok && cs.InFlightCount == 3
	}, "the consumer holds its messages")

	adminHTTP := testutil.FreeAddress(t)
	testutil.StartProcess(t, adminHTTP, testutil.NSQBinary(t, "nsqadmin"), "--http-address="+adminHTTP,
		"--lookupd-http-address="+c.lookupd.HTTPAddr().String())
	api := func(path string, v any) {
		t.Helper()
		code := getJSON(t, "http://"+adminHTTP+path, v)
		if code != 200 {
			t.Fatalf("NSQ's nsqadmin GET %s: %d", path, code)
		}
	}
	var topics struct {
		Topics  []string `json:"topics"`
		Message string   `json:"message"`
	}
	api("/api/topics", &topics)
	if !slices.Equal(topics.Topics, []string{"orders"}) || topics.Message != "" {
		t.Fatalf("NSQ's nsqadmin /api/topics over Tern: %+v", topics)
	}
	var nodes struct {
		Nodes   []Producer `json:"nodes"`
		Message string     `json:"message"`
	}
	api("/api/nodes", &nodes)
	if len(nodes.Nodes) != 2 || nodes.Message != "" {
		t.Fatalf("NSQ's nsqadmin /api/nodes over Tern: %+v", nodes)
	}
	var topic struct {
		TopicStats
		Message string `json:"message"`
	}
	api("/api/topics/orders", &topic)
	if topic.MessageCount != 4 || len(topic.NodeStats) != 2 || topic.Message != "" {
		t.Fatalf("NSQ's nsqadmin /api/topics/orders over Tern: %+v", topic)
	}
	var channel struct {
		ChannelStats
		Message string `json:"message"`
	}
	api("/api/topics/orders/billing", &channel)
	if len(channel.Clients) != 1 || channel.Clients[0].ClientID != "tern-consumer" || channel.InFlightCount != 3 {
		t.Fatalf("NSQ's nsqadmin /api/topics/orders/billing over Tern: %+v", channel.ChannelStats)
	}
	var counter struct {
		Stats map[string]json.RawMessage `json:"stats"`
	}
	api("/api/counter", &counter)
	if len(counter.Stats) != 1 {
		t.Fatalf("NSQ's nsqadmin /api/counter over Tern: %v", counter.Stats)
	}
	// Its HTML shell loads, with its assets.
	resp, err := http.Get("http://" + adminHTTP + "/")
	if err != nil {
		t.Fatal(err)
	}
	shell, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(shell), "nsqadmin") {
		t.Fatalf("NSQ's nsqadmin index: %d", resp.StatusCode)
	}

	if code, body := call(t, "POST", "http://"+adminHTTP+"/api/topics/orders/billing", `{"action":"pause"}`); code != 200 {
		t.Fatalf("NSQ's nsqadmin pausing Tern's channel: %d %s", code, body)
	}
	for i, d := range c.nodes {
		if cs, ok := d.ChannelStats("orders", "billing"); ok && !cs.Paused {
			t.Errorf("Tern node %d did not pause the channel for NSQ's nsqadmin", i)
		}
	}
	if code, body := call(t, "POST", "http://"+adminHTTP+"/api/topics", `{"topic":"orders","channel":"archive"}`); code != 200 {
		t.Fatalf("NSQ's nsqadmin creating a channel on Tern: %d %s", code, body)
	}
	for i, d := range c.nodes {
		if _, ok := d.ChannelStats("orders", "archive"); !ok {
			t.Errorf("Tern node %d did not create the channel for NSQ's nsqadmin", i)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "DELETE", "http://"+adminHTTP+"/api/topics/orders/archive", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("NSQ's nsqadmin deleting Tern's channel: %d", resp.StatusCode)
	}
	for i, d := range c.nodes {
		if _, ok := d.ChannelStats("orders", "archive"); ok {
			t.Errorf("Tern node %d kept the channel NSQ's nsqadmin deleted", i)
		}
	}
}
