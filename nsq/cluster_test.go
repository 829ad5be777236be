package nsq_test

import (
	"slices"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/lookupd/lookupdtest"
	"github.com/ternmq/tern/nsq"
	"github.com/ternmq/tern/nsqd"
)

// TestConsumerDiscoversNodesThroughRealLookupd runs a real in-process cluster: a lookupd, and
// nsqd nodes registering with it. A Consumer that knows only the lookupd consumes from the
// first node, then finds a second node that joins later and consumes from it too, each
// message exactly once.
func TestConsumerDiscoversNodesThroughRealLookupd(t *testing.T) {
	l := lookupdtest.Start(t, nil)
	node := func(id int64) *server {
		return startNSQD(t, func(o *nsqd.Options) {
			o.NodeID = id
			o.BroadcastAddress = "127.0.0.1"
			o.LookupdTCPAddresses = []string{l.TCPAddr().String()}
		})
	}
	const topic = "discovered"
	first := node(1)
	firstBodies := bodies("first-", 50)
	if err := newProducer(t, first.tcpAddr(), nil).MultiPublish(ctxTimeout(t, 10*time.Second), topic, firstBodies); err != nil {
		t.Fatal(err)
	}

	cfg := nsq.NewConfig()
	cfg.LookupdPollInterval = 100 * time.Millisecond
	cfg.MaxInFlight = 10
	col := newCollector()
	c := newConsumer(t, topic, "ch", col, cfg)
	if err := c.ConnectToNSQLookupd(l.HTTPAddr().String()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return col.n.Load() == int64(len(firstBodies)) },
		"the consumer, knowing only the lookupd, consumed the first node's messages")

	second := node(2)
	secondBodies := bodies("second-", 50)
	if err := newProducer(t, second.tcpAddr(), nil).MultiPublish(ctxTimeout(t, 10*time.Second), topic, secondBodies); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return c.Stats().Connections == 2 },
		"the consumer connected to the node that joined later")
	want := slices.Concat(firstBodies, secondBodies)
	testutil.Eventually(t, 10*time.Second, func() bool { return col.n.Load() == int64(len(want)) },
		"the consumer consumed the second node's messages")
	col.check(t, want)
}
