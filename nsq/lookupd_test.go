package nsq_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/nsq"
)

// fakeLookupd answers /lookup like nsqlookupd with the nsqds it is told about.
type fakeLookupd struct {
	mu      sync.Mutex
	topic   string
	nsqds   []string // tcp addresses
	queries int
	failing bool
	srv     *httptest.Server
}

func newFakeLookupd(t *testing.T, topic string) *fakeLookupd {
	t.Helper()
	f := &fakeLookupd{topic: topic}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeLookupd) set(addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nsqds = addrs
}

func (f *fakeLookupd) queryCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.queries
}

func (f *fakeLookupd) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries++
	if f.failing {
		http.Error(w, "down", http.StatusInternalServerError)
		return
	}
	if r.URL.Path != "/lookup" {
		http.NotFound(w, r)
		return
	}
	if r.URL.Query().Get("topic") != f.topic || len(f.nsqds) == 0 {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"message":"TOPIC_NOT_FOUND"}`))
		return
	}
	type producer struct {
		RemoteAddress    string `json:"remote_address"`
		Hostname         string `json:"hostname"`
		BroadcastAddress string `json:"broadcast_address"`
		TCPPort          int    `json:"tcp_port"`
		HTTPPort         int    `json:"http_port"`
		Version          string `json:"version"`
	}
	resp := struct {
		Channels  []string   `json:"channels"`
		Producers []producer `json:"producers"`
	}{Channels: []string{}}
	for _, a := range f.nsqds {
		host, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		resp.Producers = append(resp.Producers, producer{
			RemoteAddress: a, Hostname: "test", BroadcastAddress: host, TCPPort: p, HTTPPort: 1, Version: "1.3.0",
		})
	}
	_ = json.NewEncoder(w).Encode(resp)
}

// Two lookupds, each knowing one nsqd, the second added later; then one nsqd is no
// longer listed and its connection is drained and dropped.
func TestConsumerLookupdDiscovery(t *testing.T) {
	t.Parallel()
	s1, s2 := startNSQD(t, nil), startNSQD(t, nil)
	l1, l2 := newFakeLookupd(t, "disc"), newFakeLookupd(t, "disc")
	l1.set(s1.tcpAddr())
	cfg := nsq.NewConfig()
	cfg.LookupdPollInterval = 20 * time.Millisecond
	cfg.MaxInFlight = 10
	col := newCollector()
	c := newConsumer(t, "disc", "ch", col, cfg)
	if err := c.ConnectToNSQLookupd(l1.srv.URL); err != nil {
		t.Fatal(err)
	}
	hostPort := l2.srv.Listener.Addr().String() // the plain host:port form
	if err := c.ConnectToNSQLookupd(hostPort); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return c.Stats().Connections == 1 }, "connects to the listed nsqd")
	first := bodies("one", 10)
	publish(t, s1, "disc", first)
	testutil.Eventually(t, 5*time.Second, func() bool { return col.n.Load() == 10 }, "handled from the first nsqd")

	// A node added later, known to the second lookupd only.
	l2.set(s2.tcpAddr())
	testutil.Eventually(t, 5*time.Second, func() bool { return c.Stats().Connections == 2 }, "connects to the nsqd added later")
	second := bodies("two", 10)
	publish(t, s2, "disc", second)
	testutil.Eventually(t, 5*time.Second, func() bool { return col.n.Load() == 20 }, "handled from the second nsqd")

	// Both lookupds are polled, each interval.
	q1, q2 := l1.queryCount(), l2.queryCount()
	testutil.Eventually(t, 5*time.Second, func() bool { return l1.queryCount() > q1+2 && l2.queryCount() > q2+2 }, "polls every lookupd")

	// A lookupd that fails keeps its last answer: nothing is dropped.
	l2.mu.Lock()
	l2.failing = true
	l2.mu.Unlock()
	q1 = l1.queryCount()
	testutil.Eventually(t, 5*time.Second, func() bool { return l1.queryCount() > q1+3 }, "keeps polling")
	if n := c.Stats().Connections; n != 2 {
		t.Fatalf("%d connections after a lookupd failed, want 2", n)
	}

	// The first nsqd disappears from its lookupd: its connection is dropped.
	l1.set()
	testutil.Eventually(t, 5*time.Second, func() bool { return c.Stats().Connections == 1 }, "drops the nsqd no longer listed")
	testutil.Eventually(t, 5*time.Second, func() bool { return channelStats(s1, "disc", "ch").ClientCount == 0 }, "nsqd sees the consumer leave")
	col.check(t, append(first, second...))
}

func TestConnectToNSQLookupdBadAddress(t *testing.T) {
	t.Parallel()
	c := newConsumer(t, "t", "ch", newCollector(), nil)
	for _, addr := range []string{"", "http://", "://x"} {
		if err := c.ConnectToNSQLookupd(addr); err == nil {
			t.Errorf("ConnectToNSQLookupd(%q) succeeded", addr)
		}
	}
}
