package publish

import (
	"context"
	"time"
)

// throttle is a token bucket: rate tokens a second, holding at most one second's worth,
// starting with one, as NSQ's to_nsq does. A zero rate never waits.
type throttle struct {
	interval time.Duration // one token's worth of time
	capacity float64
	tokens   float64
	last     time.Time
}

func newThrottle(rate int64) *throttle {
	if rate <= 0 {
		return &throttle{}
	}
	return &throttle{interval: time.Second / time.Duration(rate), capacity: float64(rate), tokens: 1, last: time.Now()}
}

// wait takes a token, waiting for one if there is none; it fails only when ctx ends.
func (t *throttle) wait(ctx context.Context) error {
	if t.interval == 0 {
		return nil
	}
	t.refill()
	if t.tokens < 1 {
		timer := time.NewTimer(time.Duration((1 - t.tokens) * float64(t.interval)))
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		}
		t.refill()
		t.tokens = max(t.tokens, 1) // the timer fired: a token is due, whatever the rounding
	}
	t.tokens--
	return nil
}

func (t *throttle) refill() {
	now := time.Now()
	t.tokens = min(t.capacity, t.tokens+float64(now.Sub(t.last))/float64(t.interval))
	t.last = now
}
