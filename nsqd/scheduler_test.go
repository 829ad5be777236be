package nsqd

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakeTimed records when it was fired.
type fakeTimed struct {
	slot  schedSlot
	mu    sync.Mutex
	fired []int64
	ch    chan int64
}

func newFakeTimed() *fakeTimed {
	return &fakeTimed{slot: schedSlot{index: -1}, ch: make(chan int64, 16)}
}

func (f *fakeTimed) schedSlot() *schedSlot { return &f.slot }
func (f *fakeTimed) fire(now int64) {
	f.mu.Lock()
	f.fired = append(f.fired, now)
	f.mu.Unlock()
	f.ch <- now
}

func TestSchedulerFiresInOrderAndOnTime(t *testing.T) {
	s := newScheduler()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	base := time.Now().Add(20 * time.Millisecond).UnixNano()
	items := make([]*fakeTimed, 50)
	for i := range items {
		items[i] = newFakeTimed()
		// Registered in reverse so the heap, not arrival order, decides.
		s.schedule(items[i], base+int64(len(items)-i)*int64(time.Millisecond))
	}
	for i, it := range items {
		select {
		case at := <-it.ch:
			due := base + int64(len(items)-i)*int64(time.Millisecond)
			if at < due {
				t.Fatalf("item %d fired %v early", i, time.Duration(due-at))
			}
			if late := time.Duration(at - due); late > 50*time.Millisecond {
				t.Errorf("item %d fired %v late", i, late)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("item %d never fired", i)
		}
	}
}

func TestSchedulerKeepsEarliestRegistration(t *testing.T) {
	s := newScheduler()
	f := newFakeTimed()
	s.schedule(f, 100)
	s.schedule(f, 200) // later: ignored
	if f.slot.at != 100 {
		t.Fatalf("registration moved to %d, want 100", f.slot.at)
	}
	s.schedule(f, 50) // earlier: replaces
	if f.slot.at != 50 || len(s.items) != 1 {
		t.Fatalf("at=%d items=%d, want 50 and 1", f.slot.at, len(s.items))
	}
	s.cancel(f)
	if len(s.items) != 0 || f.slot.index != -1 {
		t.Fatalf("cancel left %d items, index %d", len(s.items), f.slot.index)
	}
}

func TestIDGeneratorUniqueAndPastObserved(t *testing.T) {
	g := newIDGenerator(5, 0)
	seen := make(map[uint64]bool)
	for range 1000 {
		id := g.next(3)
		for k := uint64(0); k < 3; k++ {
			if seen[id+k] {
				t.Fatalf("id %x handed out twice", id+k)
			}
			seen[id+k] = true
		}
		if id>>nodeIDShift != 5 {
			t.Fatalf("node bits of %x are %d, want 5", id, id>>nodeIDShift)
		}
	}
	far := uint64(1) << 53
	g.observe(5<<nodeIDShift | far)
	if id := g.next(1) & (1<<nodeIDShift - 1); id <= far {
		t.Fatalf("after observing %d the generator handed out %d", far, id)
	}
}
