package admin

import (
	"maps"
	"math"
	"sync"
	"time"
)

// chartWindow is how much history the charts show.
const chartWindow = time.Hour

// point is one sample of a series: the depth then, and the rates since the sample before.
type point struct {
	at    int64 // unix milliseconds
	depth int64
	// pub is messages per second published to a topic, or received by a channel; fin is
	// messages per second processed (finished or emptied). Both are valid only when rates is
	// set: the first sample of a series has nothing to compare with.
	pub, fin float64
	rates    bool
}

// chartPoints is how many points a series keeps: one per chartBucket over the chart's hour,
// whatever the sample interval, so that memory does not grow with faster sampling.
const (
	chartPoints = 360
	chartBucket = chartWindow / chartPoints
)

// storedPoint is a point as a ring keeps it, in 24 bytes: a thousand channels' hour of
// samples is ten megabytes. Rates are float32 (their precision is more than a chart shows),
// and NaN when unknown.
type storedPoint struct {
	at       int64
	depth    int64
	pub, fin float32
}

func store(p point) storedPoint {
	sp := storedPoint{at: p.at, depth: p.depth, pub: float32(p.pub), fin: float32(p.fin)}
	if !p.rates {
		sp.pub, sp.fin = float32(math.NaN()), float32(math.NaN())
	}
	return sp
}

func (sp storedPoint) point() point {
	rates := !math.IsNaN(float64(sp.pub))
	p := point{at: sp.at, depth: sp.depth, rates: rates}
	if rates {
		p.pub, p.fin = float64(sp.pub), float64(sp.fin)
	}
	return p
}

// ring keeps the latest points of one series, one per chartBucket: a sample in the same
// bucket as the one before replaces it.
type ring struct {
	pts  []storedPoint
	next int // where the next point goes once pts is full
	seen int64
}

func (r *ring) add(p point) {
	r.seen = p.at
	sp := store(p)
	if n := len(r.pts); n > 0 {
		last := (r.next - 1 + n) % n
		if r.pts[last].at/chartBucket.Milliseconds() == p.at/chartBucket.Milliseconds() {
			r.pts[last] = sp
			return
		}
	}
	if len(r.pts) < chartPoints+1 {
		r.pts = append(r.pts, sp)
		r.next = len(r.pts) % (chartPoints + 1)
		return
	}
	r.pts[r.next] = sp
	r.next = (r.next + 1) % len(r.pts)
}

// points returns the points, oldest first.
func (r *ring) points() []point {
	out := make([]point, 0, len(r.pts))
	if len(r.pts) <= chartPoints {
		for _, sp := range r.pts {
			out = append(out, sp.point())
		}
		return out
	}
	for i := range r.pts {
		out = append(out, r.pts[(r.next+i)%len(r.pts)].point())
	}
	return out
}

func (r *ring) last() (point, bool) {
	n := len(r.pts)
	if n == 0 {
		return point{}, false
	}
	return r.pts[(r.next-1+n)%n].point(), true
}

// seriesKey names a series: a channel, a topic (channel ""), or the whole cluster (both "").
type seriesKey struct{ topic, channel string }

// nodeKey names one node's copy of a topic or channel.
type nodeKey struct{ node, topic, channel string }

// counters are the cumulative counts rates are computed from.
type counters struct{ messages, processed int64 }

// rates are a node's rates over the last sample interval.
type rates struct{ pub, fin float64 }

// nodeSample is what the sampler keeps of one node's topic or channel between samples.
type nodeSample struct {
	counters
	rates
	hasRates bool   // rates compare two consecutive samples
	gen      uint64 // the sample this was last seen in
}

// sampler keeps the history behind the charts and the rates on every page: a ring of points
// per topic, per channel and for the whole cluster, summed over the nodes. Rates are computed
// per node and then summed, so that a node missing from one sample (it was slow) lowers the
// rate for that sample instead of turning the sum of its counters into a spike when it
// returns, and a node whose counters went backwards (it restarted) counts nothing once.
//
// The sampler only records: its goroutine (in Admin.Run) feeds it snapshots.
type sampler struct {
	interval time.Duration

	mu     sync.Mutex
	series map[seriesKey]*ring
	// nodes holds every node's topics and channels as of the latest sample, updated in place:
	// with a hundred thousand channels across a cluster, a map built anew every sample was
	// most of the admin's garbage.
	nodes  map[nodeKey]nodeSample
	gen    uint64
	prevAt time.Time
}

func newSampler(interval time.Duration) *sampler {
	return &sampler{
		interval: interval,
		series:   make(map[seriesKey]*ring),
		nodes:    make(map[nodeKey]nodeSample),
	}
}

// record adds one sample from s to every series.
func (sm *sampler) record(s *snapshot) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if !s.taken.After(sm.prevAt) {
		return // the same snapshot again: nothing new to record
	}
	dt := s.taken.Sub(sm.prevAt).Seconds()
	havePrev := !sm.prevAt.IsZero() && dt > 0
	sm.prevAt = s.taken
	sm.gen++
	gen := sm.gen

	// rate computes a node's rates from its counters and remembers both. A node missing from
	// the sample before has no rate in this one.
	rate := func(k nodeKey, c counters) rates {
		old, ok := sm.nodes[k]
		ns := nodeSample{counters: c, gen: gen}
		if ok && havePrev && old.gen == gen-1 && c.messages >= old.messages && c.processed >= old.processed {
			ns.rates = rates{pub: float64(c.messages-old.messages) / dt, fin: float64(c.processed-old.processed) / dt}
			ns.hasRates = true
		}
		sm.nodes[k] = ns
		return ns.rates
	}

	at := s.taken.UnixMilli()
	var cluster point
	for _, t := range s.topics {
		tp := point{at: at, depth: t.TotalDepth(), rates: havePrev}
		for _, nt := range t.NodeStats {
			tp.pub += rate(nodeKey{nt.Node, t.TopicName, ""}, counters{messages: nt.MessageCount}).pub
		}
		for _, c := range t.Channels {
			cp := point{at: at, depth: c.Depth, rates: havePrev}
			for _, nc := range c.perNode {
				r := rate(nodeKey{nc.node, t.TopicName, c.ChannelName}, counters{nc.messages, nc.processed})
				cp.pub += r.pub
				cp.fin += r.fin
			}
			tp.fin += cp.fin
			sm.ring(seriesKey{t.TopicName, c.ChannelName}).add(cp)
		}
		sm.ring(seriesKey{t.TopicName, ""}).add(tp)
		cluster.depth += tp.depth
		cluster.pub += tp.pub
		cluster.fin += tp.fin
	}
	cluster.at, cluster.rates = at, havePrev
	sm.ring(seriesKey{}).add(cluster)

	maps.DeleteFunc(sm.nodes, func(_ nodeKey, ns nodeSample) bool { return ns.gen != gen })
	// A series not seen for a whole window has nothing left to draw.
	horizon := at - chartWindow.Milliseconds()
	for k, r := range sm.series {
		if r.seen < horizon {
			delete(sm.series, k)
		}
	}
}

func (sm *sampler) ring(k seriesKey) *ring {
	r := sm.series[k]
	if r == nil {
		r = &ring{}
		sm.series[k] = r
	}
	return r
}

// points returns a copy of a series, oldest first (nil if there is none).
func (sm *sampler) points(k seriesKey) []point {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	r := sm.series[k]
	if r == nil {
		return nil
	}
	return r.points()
}

// lastRates returns a series' latest rates, and false before there are any.
func (sm *sampler) lastRates(k seriesKey) (rates, bool) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	r := sm.series[k]
	if r == nil {
		return rates{}, false
	}
	p, ok := r.last()
	if !ok || !p.rates {
		return rates{}, false
	}
	return rates{pub: p.pub, fin: p.fin}, true
}

// nodeRates returns one node's latest rates for a topic or channel, and false when unknown.
func (sm *sampler) nodeRates(k nodeKey) (rates, bool) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	ns, ok := sm.nodes[k]
	return ns.rates, ok && ns.hasRates && ns.gen == sm.gen
}
