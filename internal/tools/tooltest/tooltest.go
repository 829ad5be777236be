// Package tooltest runs what the tests of NSQ's tools need in-process: nsqds (with a
// lookupd, when asked), publishing to them, and reading back what a topic holds, with
// polling until a deadline instead of sleeps.
package tooltest

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/lookupd"
	"github.com/ternmq/tern/lookupd/lookupdtest"
	"github.com/ternmq/tern/nsq"
	"github.com/ternmq/tern/nsqd"
	"github.com/ternmq/tern/nsqd/nsqdtest"
)

// Timeout bounds every wait of a tool test.
const Timeout = 15 * time.Second

// Cluster is a lookupd (or none) and nsqds registered with it.
type Cluster struct {
	Lookupd *lookupd.Lookupd
	Nodes   []*nsqd.NSQD
}

// Start runs n nsqds, and a lookupd they register with when withLookupd is set, until the
// test ends.
func Start(t testing.TB, n int, withLookupd bool) *Cluster {
	t.Helper()
	c := &Cluster{}
	if withLookupd {
		c.Lookupd = lookupdtest.Start(t, nil)
	}
	for i := range n {
		c.Nodes = append(c.Nodes, nsqdtest.Start(t, func(o *nsqd.Options) {
			o.NodeID = int64(i + 1)
			if c.Lookupd != nil {
				o.LookupdTCPAddresses = []string{c.Lookupd.TCPAddr().String()}
			}
		}))
	}
	return c
}

// TCP returns node i's TCP address.
func (c *Cluster) TCP(i int) string { return c.Nodes[i].TCPAddr().String() }

// HTTP returns node i's HTTP address, host:port.
func (c *Cluster) HTTP(i int) string { return c.Nodes[i].HTTPAddr().String() }

// LookupdHTTP returns the lookupd's HTTP address, host:port.
func (c *Cluster) LookupdHTTP() string { return c.Lookupd.HTTPAddr().String() }

// Publish publishes bodies to topic on node i and waits for nsqd's acknowledgement.
func (c *Cluster) Publish(t testing.TB, i int, topic string, bodies ...string) {
	t.Helper()
	p, err := nsq.NewProducer(c.TCP(i), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	for _, b := range bodies {
		if err := p.Publish(ctx, topic, []byte(b)); err != nil {
			t.Fatalf("publish to %s: %v", topic, err)
		}
	}
}

// MessageCount returns how many messages topic on node i has taken in.
func (c *Cluster) MessageCount(i int, topic string) uint64 {
	ts, _ := c.Nodes[i].TopicStats(topic)
	return ts.MessageCount
}

// WaitRegistered waits until the lookupd lists node i for topic.
func (c *Cluster) WaitRegistered(t testing.TB, i int, topic string) {
	t.Helper()
	port := c.Nodes[i].TCPAddr().(*net.TCPAddr).Port
	testutil.Eventually(t, Timeout, func() bool {
		resp, err := http.Get("http://" + c.LookupdHTTP() + "/lookup?topic=" + url.QueryEscape(topic))
		if err != nil {
			return false
		}
		defer func() { _ = resp.Body.Close() }()
		var lookup struct {
			Producers []struct {
				TCPPort int `json:"tcp_port"`
			} `json:"producers"`
		}
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&lookup) != nil {
			return false
		}
		return slices.ContainsFunc(lookup.Producers, func(p struct {
			TCPPort int `json:"tcp_port"`
		}) bool {
			return p.TCPPort == port
		})
	}, "lookupd lists node %d for %s", i, topic)
}

// Read consumes topic on node i through channel until want messages arrived (failing the
// test after Timeout) and returns their bodies, in arrival order.
func (c *Cluster) Read(t testing.TB, i int, topic, channel string, want int) []string {
	t.Helper()
	var mu sync.Mutex
	var got []string
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 100
	con, err := nsq.NewConsumer(topic, channel, nsq.HandlerFunc(func(m *nsq.Message) error {
		mu.Lock()
		got = append(got, string(m.Body))
		mu.Unlock()
		return nil
	}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	defer func() { _ = con.Stop(ctx) }()
	if err := con.ConnectToNSQD(ctx, c.TCP(i)); err != nil {
		t.Fatal(err)
	}
	n := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	testutil.Eventually(t, Timeout, func() bool { return n() >= want }, "%d of %d messages read from %s", n, want, topic)
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(got)
}
