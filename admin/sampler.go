package admin

import (
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

// ring keeps the latest points of one series, oldest first once unrolled.
type ring struct {
	pts  []point
	next int // where the next point goes once pts is full
	seen int64
}

func (r *ring) add(p point, capacity int) {
	r.seen = p.at
	if len(r.pts) < capacity {
		r.pts = append(r.pts, p)
		return
	}
	r.pts[r.next] = p
	r.next = (r.next + 1) % capacity
}

// points returns a copy of the points, oldest first.
func (r *ring) points() []point {
	out := make([]point, 0, len(r.pts))
	out = append(out, r.pts[r.next:]...)
	return append(out, r.pts[:r.next]...)
}

func (r *ring) last() (point, bool) {
	if len(r.pts) == 0 {
		return point{}, false
	}
	i := r.next - 1
	if i < 0 {
		i = len(r.pts) - 1
	}
	return r.pts[i], true
}

// seriesKey names a series: a channel, a topic (channel ""), or the whole cluster (both "").
type seriesKey struct{ topic, channel string }

// nodeKey names one node's copy of a topic or channel.
type nodeKey struct{ node, topic, channel string }

// counters are the cumulative counts rates are computed from.
type counters struct{ messages, processed int64 }

// rates are a node's rates over the last sample interval.
type rates struct{ pub, fin float64 }

// sampler keeps the history behind the charts and the rates on every page: a ring of points
// per topic, per channel and for the whole cluster, summed over the nodes. Rates are computed
// per node and then summed, so that a node missing from one sample (it was slow) lowers the
// rate for that sample instead of turning the sum of its counters into a spike when it
// returns, and a node whose counters went backwards (it restarted) counts nothing once.
//
// The sampler only records: its goroutine (in Admin.Run) feeds it snapshots.
type sampler struct {
	interval time.Duration
	capacity int

	mu     sync.Mutex
	series map[seriesKey]*ring
	prev   map[nodeKey]counters
	prevAt time.Time
	latest map[nodeKey]rates
}

func newSampler(interval time.Duration) *sampler {
	return &sampler{
		interval: interval,
		capacity: int(chartWindow/interval) + 1,
		series:   make(map[seriesKey]*ring),
		prev:     make(map[nodeKey]counters),
		latest:   make(map[nodeKey]rates),
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
	prev := sm.prev
	sm.prev = make(map[nodeKey]counters, len(prev))
	sm.latest = make(map[nodeKey]rates, len(prev))
	sm.prevAt = s.taken

	// rate computes a node's rates from its counters and remembers them.
	rate := func(k nodeKey, c counters) rates {
		sm.prev[k] = c
		old, ok := prev[k]
		if !ok || !havePrev || c.messages < old.messages || c.processed < old.processed {
			return rates{}
		}
		r := rates{pub: float64(c.messages-old.messages) / dt, fin: float64(c.processed-old.processed) / dt}
		sm.latest[k] = r
		return r
	}

	at := s.taken.UnixMilli()
	var cluster point
	for _, t := range s.topics {
		tp := point{at: at, depth: t.TotalDepth(), rates: havePrev}
		chans := make(map[string]*point, len(t.Channels))
		for _, c := range t.Channels {
			chans[c.ChannelName] = &point{at: at, depth: c.Depth, rates: havePrev}
		}
		for _, nt := range t.NodeStats {
			r := rate(nodeKey{nt.Node, t.TopicName, ""}, counters{messages: nt.MessageCount})
			tp.pub += r.pub
			for _, c := range nt.Channels {
				cr := rate(nodeKey{nt.Node, t.TopicName, c.ChannelName}, counters{c.MessageCount, c.Processed()})
				cp := chans[c.ChannelName]
				cp.pub += cr.pub
				cp.fin += cr.fin
				tp.fin += cr.fin
			}
		}
		sm.ring(seriesKey{t.TopicName, ""}).add(tp, sm.capacity)
		for name, cp := range chans {
			sm.ring(seriesKey{t.TopicName, name}).add(*cp, sm.capacity)
		}
		cluster.depth += tp.depth
		cluster.pub += tp.pub
		cluster.fin += tp.fin
	}
	cluster.at, cluster.rates = at, havePrev
	sm.ring(seriesKey{}).add(cluster, sm.capacity)

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
	r, ok := sm.latest[k]
	return r, ok
}
