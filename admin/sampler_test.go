package admin

import (
	"testing"
	"time"
)

// snapshotOf builds a snapshot of one topic with channel "c" on the given nodes.
func snapshotOf(taken time.Time, nodes map[string][3]int64) *snapshot {
	var stats []*nodeStats
	for node, v := range nodes {
		host, port := node, 1
		ns := &nodeStats{producer: &Producer{Hostname: host, BroadcastAddress: host, HTTPPort: port}, Topics: []*TopicStats{{
			TopicName: "t", MessageCount: v[0],
			Channels: []*ChannelStats{{ChannelName: "c", MessageCount: v[1], Depth: v[1] - v[2]}},
		}}}
		ns.prepare()
		stats = append(stats, ns)
	}
	return &snapshot{taken: taken, topics: aggregateTopics(stats)}
}

// TestSamplerRates: rates are per node and summed; a node missing from a sample, or one whose
// counters went back (a restart), adds nothing instead of a spike.
func TestSamplerRates(t *testing.T) {
	sm := newSampler(10 * time.Second)
	t0 := time.Unix(1_000_000, 0)
	// values: topic messages, channel messages, channel processed
	sm.record(snapshotOf(t0, map[string][3]int64{"a": {100, 100, 50}, "b": {10, 10, 10}}))
	if _, ok := sm.lastRates(seriesKey{topic: "t"}); ok {
		t.Fatal("rates after one sample")
	}
	sm.record(snapshotOf(t0.Add(10*time.Second), map[string][3]int64{"a": {200, 200, 150}, "b": {60, 60, 60}}))
	r, ok := sm.lastRates(seriesKey{topic: "t"})
	if !ok || r.pub != 15 || r.fin != 15 {
		t.Fatalf("topic rates %+v, want 15/s in and processed", r)
	}
	if r, _ := sm.lastRates(seriesKey{"t", "c"}); r.pub != 15 || r.fin != 15 {
		t.Fatalf("channel rates %+v", r)
	}
	if r, ok := sm.nodeRates(nodeKey{"a:1", "t", ""}); !ok || r.pub != 10 {
		t.Fatalf("node a rates %+v", r)
	}
	// b misses a sample, then comes back restarted with lower counters.
	sm.record(snapshotOf(t0.Add(20*time.Second), map[string][3]int64{"a": {300, 300, 250}}))
	sm.record(snapshotOf(t0.Add(30*time.Second), map[string][3]int64{"a": {400, 400, 350}, "b": {5, 5, 5}}))
	sm.record(snapshotOf(t0.Add(40*time.Second), map[string][3]int64{"a": {400, 400, 350}, "b": {1, 1, 1}}))
	pts := sm.points(seriesKey{topic: "t"})
	if len(pts) != 5 {
		t.Fatalf("%d points, want 5", len(pts))
	}
	for i, want := range []float64{0, 15, 10, 10, 0} {
		if pts[i].pub != want {
			t.Errorf("point %d: %v/s in, want %v", i, pts[i].pub, want)
		}
	}
	if c := sm.points(seriesKey{}); len(c) != 5 || c[1].pub != 15 || c[4].depth != 50 {
		t.Errorf("cluster series %+v", c)
	}
	// The same snapshot twice is one sample.
	sm.record(snapshotOf(t0.Add(40*time.Second), nil))
	if len(sm.points(seriesKey{topic: "t"})) != 5 {
		t.Error("a repeated snapshot was recorded")
	}
}

// TestSamplerRingAndExpiry: a series keeps an hour of points and is dropped an hour after its
// topic disappears.
func TestSamplerRingAndExpiry(t *testing.T) {
	sm := newSampler(time.Minute)
	t0 := time.Unix(1_000_000, 0)
	for i := range 140 {
		nodes := map[string][3]int64{"a": {int64(i), int64(i), 0}}
		if i >= 70 {
			nodes = nil // the topic is gone
		}
		sm.record(snapshotOf(t0.Add(time.Duration(i)*time.Minute), nodes))
		if i == 69 {
			pts := sm.points(seriesKey{topic: "t"})
			if len(pts) != sm.capacity || pts[0].at >= pts[len(pts)-1].at || pts[len(pts)-1].depth != 69 {
				t.Fatalf("ring: %d points (capacity %d)", len(pts), sm.capacity)
			}
		}
	}
	if pts := sm.points(seriesKey{topic: "t"}); pts != nil {
		t.Fatalf("the series of a topic gone for an hour has %d points", len(pts))
	}
	if pts := sm.points(seriesKey{}); len(pts) != sm.capacity {
		t.Fatalf("the cluster series has %d points, want %d", len(pts), sm.capacity)
	}
}
