package nsqd

import (
	"sync/atomic"
	"time"
)

// latenessBounds are the upper bounds of the timer lateness buckets.
var latenessBounds = []time.Duration{
	time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, time.Second,
}

// latenessHistogram counts how late timer-released messages (deferred, delayed requeues, timed
// out) reach a client's connection, measured when the pump writes them. It is the daemon's
// own proof of the scheduler's precision, read by tests and exported as a metric.
type latenessHistogram struct {
	buckets [9]atomic.Uint64 // one per bound, plus one for longer
	count   atomic.Uint64
	sum     atomic.Int64 // nanoseconds
	max     atomic.Int64
}

func (h *latenessHistogram) observe(d time.Duration) {
	i := 0
	for i < len(latenessBounds) && d > latenessBounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.count.Add(1)
	h.sum.Add(int64(d))
	for {
		cur := h.max.Load()
		if int64(d) <= cur || h.max.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

// TimerLateness is a snapshot of how late timer-released messages were written to clients.
type TimerLateness struct {
	Count   uint64
	Sum     time.Duration
	Max     time.Duration
	Bounds  []time.Duration // upper bounds of Buckets; the last bucket has no bound
	Buckets []uint64
}

// over reports how many observations were above bound, which must be one of latenessBounds.
func (s TimerLateness) over(bound time.Duration) uint64 {
	n := uint64(0)
	for i, b := range s.Buckets {
		if i == len(s.Bounds) || s.Bounds[i] > bound {
			n += b
		}
	}
	return n
}

func (h *latenessHistogram) snapshot() TimerLateness {
	s := TimerLateness{Count: h.count.Load(), Sum: time.Duration(h.sum.Load()), Max: time.Duration(h.max.Load()), Bounds: latenessBounds}
	for i := range h.buckets {
		s.Buckets = append(s.Buckets, h.buckets[i].Load())
	}
	return s
}
