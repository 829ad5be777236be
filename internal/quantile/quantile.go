// Package quantile estimates percentiles of a stream over a rolling time window, for nsqd's
// end-to-end processing latency.
//
// The window is split into two halves; each half keeps a uniform reservoir sample of what it
// saw. Percentiles are computed over both halves at read time, and the older half is dropped
// as time moves on, so the result covers between half a window and a whole one, as NSQ's
// does. Memory is bounded by the reservoir size whatever the rate.
package quantile

import (
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// reservoirSize is how many samples each half-window keeps.
const reservoirSize = 1024

// Result is NSQ's JSON shape for a latency summary: the number of observations in the
// window and the requested percentiles, values in nanoseconds.
type Result struct {
	Count       int                  `json:"count"`
	Percentiles []map[string]float64 `json:"percentiles"`
}

type half struct {
	start   time.Time
	seen    int
	samples []float64
}

// Stream collects observations. It is safe for concurrent use.
type Stream struct {
	mu        sync.Mutex
	window    time.Duration
	quantiles []float64
	halves    [2]half // halves[1] is the current one
}

// New returns a stream reporting the given quantiles (each in (0,1]) over window.
func New(window time.Duration, quantiles []float64) *Stream {
	s := &Stream{window: window, quantiles: slices.Clone(quantiles)}
	now := time.Now()
	s.halves[0].start, s.halves[1].start = now, now
	return s
}

func (s *Stream) rotateLocked(now time.Time) {
	for now.Sub(s.halves[1].start) >= s.window/2 {
		s.halves[0] = s.halves[1]
		s.halves[1] = half{start: s.halves[0].start.Add(s.window / 2), samples: s.halves[1].samples[:0:0]}
		if now.Sub(s.halves[1].start) >= s.window {
			s.halves[0] = half{start: now}
			s.halves[1] = half{start: now}
		}
	}
}

// Observe adds one value.
func (s *Stream) Observe(v float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rotateLocked(time.Now())
	h := &s.halves[1]
	h.seen++
	if len(h.samples) < reservoirSize {
		h.samples = append(h.samples, v)
		return
	}
	if i := rand.IntN(h.seen); i < reservoirSize {
		h.samples[i] = v
	}
}

// Result returns the percentiles over the current window, or nil for a stream that reports
// none (as NSQ's JSON has null there).
func (s *Stream) Result() *Result {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	s.rotateLocked(time.Now())
	count := s.halves[0].seen + s.halves[1].seen
	// Each half's samples stand for its own count: weight them so a busy half counts more.
	type weighted struct{ v, w float64 }
	var all []weighted
	total := 0.0
	for _, h := range s.halves {
		if len(h.samples) == 0 {
			continue
		}
		w := float64(h.seen) / float64(len(h.samples))
		for _, v := range h.samples {
			all = append(all, weighted{v, w})
		}
		total += float64(h.seen)
	}
	s.mu.Unlock()

	slices.SortFunc(all, func(a, b weighted) int {
		switch {
		case a.v < b.v:
			return -1
		case a.v > b.v:
			return 1
		}
		return 0
	})
	r := &Result{Count: count, Percentiles: []map[string]float64{}}
	for _, q := range s.quantiles {
		value := 0.0
		if len(all) > 0 {
			target, acc := q*total, 0.0
			value = all[len(all)-1].v
			for _, x := range all {
				acc += x.w
				if acc >= target {
					value = x.v
					break
				}
			}
		}
		r.Percentiles = append(r.Percentiles, map[string]float64{"quantile": q, "value": value})
	}
	return r
}

// Merge combines results of several streams with the same quantiles, as NSQ reports a topic's
// latency from its channels': counts add, each percentile is the count-weighted mean.
func Merge(results ...*Result) *Result {
	var out *Result
	for _, r := range results {
		if r == nil {
			continue
		}
		if out == nil {
			out = &Result{Percentiles: []map[string]float64{}}
			for _, p := range r.Percentiles {
				out.Percentiles = append(out.Percentiles, map[string]float64{"quantile": p["quantile"], "value": 0})
			}
		}
		out.Count += r.Count
	}
	if out == nil || out.Count == 0 {
		return out
	}
	for _, r := range results {
		if r == nil || r.Count == 0 {
			continue
		}
		w := float64(r.Count) / float64(out.Count)
		for i, p := range r.Percentiles {
			if i < len(out.Percentiles) {
				out.Percentiles[i]["value"] += p["value"] * w
			}
		}
	}
	return out
}
