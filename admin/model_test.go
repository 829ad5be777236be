package admin

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestAggregateTopics(t *testing.T) {
	node := func(host string, port int, topics ...*TopicStats) *nodeStats {
		ns := &nodeStats{producer: &Producer{Hostname: host, BroadcastAddress: "10.0.0.1", HTTPPort: port}, Topics: topics}
		ns.prepare()
		return ns
	}
	lat := func(count int, p99, p50 float64) *Latency {
		return &Latency{Count: count, Percentiles: []Percentile{{Quantile: 0.99, Value: p99, HasValue: true}, {Quantile: 0.5, Value: p50, HasValue: true}}}
	}
	b := node("b", 2,
		&TopicStats{TopicName: "t", Depth: 4, BackendDepth: 1, MessageCount: 10, Channels: []*ChannelStats{
			{ChannelName: "c", Depth: 2, InFlightCount: 1, MessageCount: 9, ClientCount: 1, Clients: []*ClientStats{{ClientID: "x"}}, E2eProcessingLatency: lat(10, 300, 30)},
		}})
	a := node("a", 1,
		&TopicStats{TopicName: "t", Depth: 1, MessageCount: 5, Paused: true, Channels: []*ChannelStats{
			{ChannelName: "c", Depth: 3, MessageCount: 5, ClientCount: 2, E2eProcessingLatency: lat(30, 100, 10)},
			{ChannelName: "d", Depth: 1, MessageCount: 5},
		}},
		&TopicStats{TopicName: "s", Depth: 7, MessageCount: 7})
	sums := aggregateTopics([]*nodeStats{b, a})
	if len(sums) != 2 || sums[0].TopicName != "s" || sums[1].TopicName != "t" {
		t.Fatalf("topics %+v", sums)
	}
	topic := sums[1]
	if topic.Node != "*" || topic.Depth != 5 || topic.MemoryDepth != 4 || topic.BackendDepth != 1 || topic.MessageCount != 15 || !topic.Paused {
		t.Errorf("sum %+v", topic)
	}
	if len(topic.NodeStats) != 2 || topic.NodeStats[0].Hostname != "a" || topic.NodeStats[0].Node != "10.0.0.1:1" {
		t.Errorf("per-node entries not sorted by host name: %+v", topic.NodeStats)
	}
	if topic.TotalDepth() != 5+5+1 || topic.ClientCount() != 3 {
		t.Errorf("total depth %d, clients %d", topic.TotalDepth(), topic.ClientCount())
	}
	c := topic.Channel("c")
	if c.Node != "*" || c.Depth != 5 || c.InFlightCount != 1 || c.MessageCount != 14 || c.ClientCount != 3 || len(c.Clients) != 1 || len(c.NodeStats) != 2 {
		t.Errorf("channel sum %+v", c)
	}
	if c.Clients[0].Node != "10.0.0.1:2" {
		t.Errorf("client's node %q", c.Clients[0].Node)
	}
	l := c.E2eProcessingLatency
	if l.Count != 40 || l.Host != "*" || l.Topic != "t" || l.Channel != "c" || len(l.Percentiles) != 2 {
		t.Fatalf("latency sum %+v", l)
	}
	p99 := l.Percentiles[0]
	if p99.Quantile != 0.99 || p99.Min != 100 || p99.Max != 300 || p99.Count != 40 || math.Abs(p99.Average-150) > 1e-9 || p99.HasValue {
		t.Errorf("p99 sum %+v, want min 100 max 300 average 150 over 40", p99)
	}
	// The nodes' own entries keep their values, with NSQ's min = max = average = value.
	if nl := b.Topics[0].Channels[0].E2eProcessingLatency; nl.Host != "10.0.0.1:2" || nl.Percentiles[0].Min != 300 || nl.Percentiles[0].Average != 300 {
		t.Errorf("node latency %+v", nl)
	}
	out, err := json.Marshal(p99)
	if err != nil || string(out) != `{"quantile":0.99,"min":100,"max":300,"average":150,"count":40}` {
		t.Errorf("percentile JSON %s %v", out, err)
	}
	out, _ = json.Marshal(b.Topics[0].Channels[0].E2eProcessingLatency.Percentiles[1])
	if string(out) != `{"quantile":0.5,"value":30,"min":30,"max":30,"average":30,"count":10}` {
		t.Errorf("node percentile JSON %s", out)
	}
}

func TestProcessed(t *testing.T) {
	c := &ChannelStats{MessageCount: 100, Depth: 10, InFlightCount: 5, DeferredCount: 5}
	if c.Processed() != 80 {
		t.Errorf("processed %d, want 80", c.Processed())
	}
	c.Depth = 200 // a channel emptied and refilled between the two reads: never negative
	if c.Processed() != 0 {
		t.Errorf("processed %d, want 0", c.Processed())
	}
}

func TestVersionLess(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		less bool
	}{
		{"1.2.1", "1.3.0", true}, {"1.3.0", "1.3.0", false}, {"1.10.0", "1.9.0", false},
		{"1.3.0-alpha", "1.3.1", true}, {"garbage", "0.0.1", true}, {"1.3", "1.3.0", true},
	} {
		if got := versionLess(tc.a, tc.b); got != tc.less {
			t.Errorf("versionLess(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
}

// TestProducersFromSeveralLookupds: a node registered with two lookupds is one node with two
// remote addresses; one registered with only one is inconsistent; versions are compared.
func TestProducersFromSeveralLookupds(t *testing.T) {
	l1 := fakeDaemon(t, map[string]string{"/nodes": `{"producers":[
		{"remote_address":"10.0.0.1:5000","hostname":"n1","broadcast_address":"n1","tcp_port":4150,"http_port":4151,"version":"1.3.0","topics":["a","b"],"tombstones":[false,true]},
		{"remote_address":"10.0.0.2:5000","hostname":"n2","broadcast_address":"n2","tcp_port":4150,"http_port":4151,"version":"1.2.1","topics":["a"],"tombstones":[false]}]}`})
	l2 := fakeDaemon(t, map[string]string{"/nodes": `{"producers":[
		{"remote_address":"10.0.0.1:6000","hostname":"n1","broadcast_address":"n1","tcp_port":4150,"http_port":4151,"version":"1.3.0","topics":["a","c"],"tombstones":[false,false]}]}`})
	dead := deadAddress(t)
	o := NewOptions()
	o.NSQLookupdHTTPAddresses = []string{l1, l2, dead}
	client, err := newHTTPClient(o)
	if err != nil {
		t.Fatal(err)
	}
	defer client.close()
	c := &cluster{client: client, options: func() *Options { return o }}
	ps, errs := c.producers(context.Background())
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "nsqlookupd "+dead+": ") {
		t.Errorf("errors %v", errs)
	}
	if len(ps) != 2 || ps[0].Hostname != "n1" || ps[1].Hostname != "n2" {
		t.Fatalf("producers %+v", ps)
	}
	n1, n2 := ps[0], ps[1]
	if len(n1.RemoteAddresses) != 2 || n1.RemoteAddresses[0] != l1+"/10.0.0.1:5000" || n1.RemoteAddresses[1] != l2+"/10.0.0.1:6000" {
		t.Errorf("n1 remote addresses %q", n1.RemoteAddresses)
	}
	if want := []ProducerTopic{{"a", false}, {"b", true}, {"c", false}}; len(n1.Topics) != 3 || n1.Topics[0] != want[0] || n1.Topics[1] != want[1] || n1.Topics[2] != want[2] {
		t.Errorf("n1 topics %+v", n1.Topics)
	}
	if n1.OutOfDate || !n2.OutOfDate {
		t.Errorf("out of date: n1 %v n2 %v", n1.OutOfDate, n2.OutOfDate)
	}
	if n1.Inconsistent(3) != true || n1.Inconsistent(2) || !n2.Inconsistent(2) {
		t.Error("inconsistency is the number of lookupds a node is registered with")
	}
	if !n1.Carries("a") || n1.Carries("b") || !n1.HasTopic("b") {
		t.Error("a tombstoned topic is the node's but not carried")
	}
}

func TestSnapshotCacheFetchesOnceForManyWaiters(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var fetches atomic.Int32
	release := make(chan struct{})
	c := &snapshotCache{
		ctx: ctx,
		fetch: func(context.Context) *snapshot {
			fetches.Add(1)
			<-release
			return &snapshot{taken: time.Now()}
		},
		start: func(f func()) bool { go f(); return true },
	}
	results := make(chan *snapshot, 10)
	for range 10 {
		go func() {
			s, err := c.get(context.Background(), time.Minute)
			if err != nil {
				t.Error(err)
			}
			results <- s
		}()
	}
	// Whether the waiters join the fetch under way or find its snapshot cached, there is one.
	close(release)
	first := <-results
	for range 9 {
		if s := <-results; s != first {
			t.Fatal("waiters got different snapshots")
		}
	}
	if fetches.Load() != 1 {
		t.Fatalf("%d fetches for 10 waiters, want 1", fetches.Load())
	}
	if s, _ := c.get(context.Background(), time.Minute); s != first || fetches.Load() != 1 {
		t.Fatal("a fresh snapshot was fetched again")
	}
	c.invalidate()
	if s, _ := c.get(context.Background(), time.Minute); s == first || fetches.Load() != 2 {
		t.Fatal("invalidate did not make the next get fetch")
	}
	cancel()
	c.start = func(func()) bool { return false }
	c.invalidate()
	if _, err := c.get(context.Background(), time.Minute); err != errStopped {
		t.Fatalf("get after stop: %v", err)
	}
}

// TestDaemonAddresses: the admin sends requests only to host:port, whatever a lookupd lists,
// and follows no redirect.
func TestDaemonAddresses(t *testing.T) {
	for _, tt := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:4151", true},
		{"nsqd-1.example.com:4151", true},
		{"[::1]:4151", true},
		{"169.254.169.254/latest/meta-data/#:80", false},
		{"x@10.0.0.5:4151", false},
		{"10.0.0.5:4151/x", false},
		{"10.0.0.5", false},
		{"10.0.0.5:0", false},
		{"host name:4151", false},
		{":4151", false},
	} {
		if err := checkDaemonAddr(tt.addr); (err == nil) != tt.ok {
			t.Errorf("checkDaemonAddr(%q) = %v, want ok %v", tt.addr, err, tt.ok)
		}
	}

	redirect := httptest.NewServer(http.RedirectHandler("http://169.254.169.254/", http.StatusFound))
	t.Cleanup(redirect.Close)
	client, err := newHTTPClient(NewOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.close)
	var v any
	err = client.getJSON(context.Background(), strings.TrimPrefix(redirect.URL, "http://"), "/stats", &v)
	if err == nil || !strings.Contains(err.Error(), "got response 302 Found") {
		t.Errorf("a redirect: %v, want it reported, not followed", err)
	}
	if err := client.getJSON(context.Background(), "x@127.0.0.1:1", "/stats", &v); err == nil || !strings.Contains(err.Error(), "invalid daemon address") {
		t.Errorf("a request to x@127.0.0.1:1: %v", err)
	}
}
