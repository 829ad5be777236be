package nsqd

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// timed is something the scheduler wakes at a due time: a channel with in-flight deadlines,
// requeue delays or deferred messages. fire is called with the scheduler's lock released.
type timed interface {
	fire(now int64)
	schedSlot() *schedSlot
}

// schedSlot is a timed's place in the scheduler's heap. It is guarded by the scheduler's lock.
type schedSlot struct {
	at    int64 // Unix ns the owner asked to be woken at; 0 when not scheduled
	index int   // position in the heap, -1 when absent
}

// scheduler is the one timer behind every timeout, requeue delay and deferred message of the
// daemon. NSQ samples 20 random channels every 100 ms, so a due message can wait seconds when
// there are many channels; here each channel registers the earliest time it needs attention
// and a single goroutine sleeps exactly until the earliest of those.
//
// Channels register lazily: only when their earliest due time moves earlier than what is
// registered. A registration that turns out early (its message was FINished meanwhile) costs
// one spurious fire, after which the channel registers its real next due time. This keeps the
// scheduler's lock off the per-message path.
type scheduler struct {
	mu    sync.Mutex
	items schedHeap
	kick  chan struct{} // capacity 1: the earliest time changed
}

func newScheduler() *scheduler {
	return &scheduler{kick: make(chan struct{}, 1)}
}

// schedule asks for t.fire at or after at. A registration later than one already held is
// ignored; an earlier one replaces it.
func (s *scheduler) schedule(t timed, at int64) {
	slot := t.schedSlot()
	s.mu.Lock()
	switch {
	case slot.index >= 0 && slot.at <= at:
		s.mu.Unlock()
		return
	case slot.index >= 0:
		slot.at = at
		heap.Fix(&s.items, slot.index)
	default:
		slot.at = at
		heap.Push(&s.items, t)
	}
	first := s.items[0] == t
	s.mu.Unlock()
	if first {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// cancel removes t's registration, if any.
func (s *scheduler) cancel(t timed) {
	slot := t.schedSlot()
	s.mu.Lock()
	if slot.index >= 0 {
		heap.Remove(&s.items, slot.index)
	}
	slot.at = 0
	s.mu.Unlock()
}

// run fires due registrations until ctx is done. It is the scheduler's only goroutine, started
// by NSQD.Run, and it exits when ctx is cancelled.
func (s *scheduler) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var due []timed
	for {
		now := time.Now().UnixNano()
		due = due[:0]
		wait := time.Hour
		s.mu.Lock()
		for len(s.items) > 0 && s.items[0].schedSlot().at <= now {
			t := heap.Pop(&s.items).(timed)
			t.schedSlot().at = 0
			due = append(due, t)
		}
		if len(s.items) > 0 {
			wait = time.Duration(s.items[0].schedSlot().at - now)
		}
		s.mu.Unlock()

		for i, t := range due {
			t.fire(now)
			due[i] = nil
		}
		if len(due) > 0 {
			// Firing takes time and may have registered new, earlier work: look again.
			continue
		}

		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
			// Since Go 1.23 Reset discards a stale expiry, so the timer needs no draining.
		case <-timer.C:
		}
	}
}

type schedHeap []timed

func (h schedHeap) Len() int           { return len(h) }
func (h schedHeap) Less(i, j int) bool { return h[i].schedSlot().at < h[j].schedSlot().at }
func (h schedHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].schedSlot().index = i
	h[j].schedSlot().index = j
}
func (h *schedHeap) Push(x any) {
	t := x.(timed)
	t.schedSlot().index = len(*h)
	*h = append(*h, t)
}
func (h *schedHeap) Pop() any {
	old := *h
	n := len(old)
	t := old[n-1]
	old[n-1] = nil
	t.schedSlot().index = -1
	*h = old[:n-1]
	return t
}
