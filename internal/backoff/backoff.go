// Package backoff is the reconnection backoff every part of Tern uses, written once: the
// client's Producer and Consumer redialling an nsqd, and nsqd redialling its nsqlookupds.
//
// It is exponential and capped, with jitter: each wait is drawn from the upper half of its
// exponential step, so that the many clients or nodes that lost the same server at the same
// moment do not all come back in step when it restarts, yet none retries much sooner than
// the step says.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff counts consecutive failures and says how long to wait after each. The zero value
// is not useful: set Min and Max. It is not safe for concurrent use; each reconnecting loop
// owns one.
type Backoff struct {
	// Min is the step after the first failure; each further failure doubles it.
	Min time.Duration
	// Max caps the step.
	Max time.Duration

	failures int
}

// Next records a failure and returns how long to wait before the next attempt: a random
// duration in the upper half of min(Min * 2^(failures-1), Max).
func (b *Backoff) Next() time.Duration {
	b.failures++
	return Delay(b.Min, b.Max, b.failures)
}

// Reset forgets the failures, after a success.
func (b *Backoff) Reset() { b.failures = 0 }

// Failures returns the number of failures since the last Reset.
func (b *Backoff) Failures() int { return b.failures }

// Delay is the wait after failures consecutive failures (at least 1): a random duration in
// [step/2, step] where step is min(lo * 2^(failures-1), hi).
func Delay(lo, hi time.Duration, failures int) time.Duration {
	step := lo
	for i := 1; i < failures && step < hi; i++ {
		step *= 2
	}
	step = min(step, max(hi, lo))
	if step <= 0 {
		return 0
	}
	half := step / 2
	return step - half + rand.N(half+1)
}
