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
	topics := aggregateTopics(stats)
	compactTopics(topics)
	return &snapshot{taken: taken, topics: topics}
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

// TestSamplerRingAndExpiry: a series keeps an hour of points, one per 10s bucket however
// fast the samples come, and is dropped an hour after its topic disappears.
func TestSamplerRingAndExpiry(t *testing.T) {
	sm := newSampler(time.Second)
	t0 := time.Unix(1_000_000, 0)
	const live = 4000 // seconds the topic exists, sampled every 5s
	for sec := 0; sec < live+3700; sec += 5 {
		nodes := map[string][3]int64{"a": {int64(sec), int64(sec), 0}}
		if sec >= live {
			nodes = nil // the topic is gone
		}
		sm.record(snapshotOf(t0.Add(time.Duration(sec)*time.Second), nodes))
		if sec == live-5 {
			pts := sm.points(seriesKey{topic: "t"})
			if len(pts) != chartPoints+1 {
				t.Fatalf("ring: %d points, want %d", len(pts), chartPoints+1)
			}
			for i := 1; i < len(pts); i++ {
				if pts[i].at-pts[i-1].at != 10_000 {
					t.Fatalf("points %d and %d are %dms apart, want one per 10s bucket", i-1, i, pts[i].at-pts[i-1].at)
				}
			}
			if last := pts[len(pts)-1]; last.depth != live-5 || !last.rates || last.pub != 1 {
				t.Fatalf("the newest point %+v, want depth %d and 1/s in", last, live-5)
			}
		}
	}
	if pts := sm.points(seriesKey{topic: "t"}); pts != nil {
		t.Fatalf("the series of a topic gone for an hour has %d points", len(pts))
	}
	if pts := sm.points(seriesKey{}); len(pts) != chartPoints+1 {
		t.Fatalf("the cluster series has %d points, want %d", len(pts), chartPoints+1)
	}
}
