// Package upstream is what nsq_to_http and nsq_to_nsq share about their destinations: which
// one a message goes to (--mode: round-robin, hostpool, epsilon-greedy, or to all of them
// with nsq_to_http's multicast), and the response times they log every --status-every
// requests.
//
// A Pool picks destinations by index and is told how each request went (Mark). Round-robin
// takes them in turn. Hostpool, as bitly's go-hostpool that NSQ uses, takes the live ones in
// turn and sets a failing destination aside for 30s, doubling up to 15m while it keeps
// failing, and resets them all when none is left. Epsilon-greedy takes, among the live ones,
// the fastest by a moving average of response times, except that 30% of the picks explore
// one at random.
package upstream

import (
	"cmp"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// Mode is how a Pool picks destinations.
type Mode int

// The modes, by their --mode names.
const (
	RoundRobin    Mode = iota // "round-robin"
	HostPool                  // "hostpool", NSQ's default
	EpsilonGreedy             // "epsilon-greedy"
	Multicast                 // "multicast": every destination (nsq_to_http only)
)

var modeNames = map[string]Mode{"round-robin": RoundRobin, "hostpool": HostPool, "epsilon-greedy": EpsilonGreedy, "multicast": Multicast}

// ParseMode returns the mode named s; multicast only when allowed.
func ParseMode(s string, multicast bool) (Mode, error) {
	m, ok := modeNames[s]
	if !ok || m == Multicast && !multicast {
		want := "round-robin, hostpool or epsilon-greedy"
		if multicast {
			want = "round-robin, hostpool, epsilon-greedy or multicast"
		}
		return 0, fmt.Errorf("--mode %q: want %s", s, want)
	}
	return m, nil
}

// Hostpool's retry delays of a failing destination, as go-hostpool's.
const (
	initialRetryDelay = 30 * time.Second
	maxRetryDelay     = 900 * time.Second
	epsilon           = 0.3
	// ewmaWeight is the weight of the newest response time in epsilon-greedy's average.
	ewmaWeight = 0.2
)

// Pool picks destinations. It is safe for concurrent use.
type Pool struct {
	mode  Mode
	n     int
	mu    sync.Mutex // guards the rest
	next  int
	hosts []host
	now   func() time.Time
}

type host struct {
	deadUntil  time.Time // zero when alive
	retryDelay time.Duration
	avg        time.Duration // epsilon-greedy's moving average; 0 until measured
}

// NewPool returns a Pool over n destinations.
func NewPool(mode Mode, n int) *Pool {
	return &Pool{mode: mode, n: n, hosts: make([]host, n), now: time.Now}
}

// Pick returns the destinations of one message: every one for multicast, else one.
func (p *Pool) Pick() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch p.mode {
	case Multicast:
		all := make([]int, p.n)
		for i := range all {
			all[i] = i
		}
		return all
	case RoundRobin:
		i := p.next
		p.next = (p.next + 1) % p.n
		return []int{i}
	}
	live := p.liveLocked()
	if p.mode == EpsilonGreedy && rand.Float64() >= epsilon {
		return []int{slices.MinFunc(live, func(a, b int) int { return cmp.Compare(p.hosts[a].avg, p.hosts[b].avg) })}
	}
	if p.mode == EpsilonGreedy {
		return []int{live[rand.IntN(len(live))]}
	}
	// Hostpool: the next live one in turn.
	for k := range p.n {
		i := (p.next + k) % p.n
		if slices.Contains(live, i) {
			p.next = (i + 1) % p.n
			return []int{i}
		}
	}
	return []int{live[0]}
}

// liveLocked returns the destinations not set aside, all of them if none is left.
func (p *Pool) liveLocked() []int {
	now := p.now()
	var live []int
	for i, h := range p.hosts {
		if h.deadUntil.IsZero() || !now.Before(h.deadUntil) {
			live = append(live, i)
		}
	}
	if len(live) == 0 {
		for i := range p.hosts {
			p.hosts[i].deadUntil = time.Time{}
			live = append(live, i)
		}
	}
	return live
}

// Mark reports how a request to destination i went and how long it took.
func (p *Pool) Mark(i int, err error, took time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := &p.hosts[i]
	if err != nil {
		switch {
		case h.retryDelay == 0:
			h.retryDelay = initialRetryDelay
		case h.deadUntil.IsZero() || !p.now().Before(h.deadUntil):
			h.retryDelay = min(2*h.retryDelay, maxRetryDelay)
		}
		if p.mode == HostPool || p.mode == EpsilonGreedy {
			h.deadUntil = p.now().Add(h.retryDelay)
		}
		return
	}
	h.deadUntil, h.retryDelay = time.Time{}, 0
	if h.avg == 0 {
		h.avg = took
	} else {
		h.avg = time.Duration(ewmaWeight*float64(took) + (1-ewmaWeight)*float64(h.avg))
	}
}

// Timings logs, every so many requests, their 99th and 95th percentile and average response
// times, as NSQ's tools do with --status-every. It is safe for concurrent use.
type Timings struct {
	every  int
	label  string
	logger *slog.Logger
	mu     sync.Mutex
	times  []time.Duration
}

// NewTimings returns Timings that log every `every` requests (never when 0), labelled.
func NewTimings(every int, label string, logger *slog.Logger) *Timings {
	return &Timings{every: every, label: label, logger: logger}
}

// Add records one request's response time.
func (t *Timings) Add(d time.Duration) {
	if t.every <= 0 {
		return
	}
	t.mu.Lock()
	t.times = append(t.times, d)
	if len(t.times) < t.every {
		t.mu.Unlock()
		return
	}
	times := t.times
	t.times = make([]time.Duration, 0, t.every)
	t.mu.Unlock()

	slices.Sort(times)
	var total time.Duration
	for _, d := range times {
		total += d
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	t.logger.Info("finished requests", "upstream", t.label, "requests", len(times),
		"p99_ms", ms(percentile(times, 99)), "p95_ms", ms(percentile(times, 95)), "avg_ms", ms(total/time.Duration(len(times))))
}

// percentile returns the p-th percentile of sorted, by the nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
