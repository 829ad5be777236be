package backoff

import (
	"testing"
	"time"
)

func TestDelayBounds(t *testing.T) {
	const lo, hi = 100 * time.Millisecond, 4 * time.Second
	for failures, step := range map[int]time.Duration{
		1: lo, 2: 2 * lo, 3: 4 * lo, 6: 32 * lo, 7: hi, 50: hi,
	} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := Delay(lo, hi, failures)
			if d < step/2 || d > step {
				t.Fatalf("after %d failures: %v, want within [%v, %v]", failures, d, step/2, step)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("after %d failures only %d distinct waits: no jitter", failures, len(seen))
		}
	}
	if d := Delay(0, 0, 3); d != 0 {
		t.Errorf("zero bounds gave %v", d)
	}
}

func TestBackoffCountsAndResets(t *testing.T) {
	b := Backoff{Min: time.Second, Max: time.Minute}
	for i := 1; i <= 3; i++ {
		if d := b.Next(); d > time.Duration(1<<(i-1))*time.Second {
			t.Fatalf("failure %d: %v", i, d)
		}
	}
	if b.Failures() != 3 {
		t.Fatalf("failures %d", b.Failures())
	}
	b.Reset()
	if d := b.Next(); d > time.Second || d < time.Second/2 {
		t.Fatalf("after Reset: %v", d)
	}
}
