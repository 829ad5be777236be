// Package goroutines tracks the goroutines a daemon starts, so that its Run can wait for every
// one of them at shutdown and none can start once shutdown has begun.
package goroutines

import "sync"

// Tracker starts goroutines and waits for them, and refuses to start any once stopped. The
// zero Tracker is ready to use.
type Tracker struct {
	mu      sync.Mutex
	stopped bool
	wg      sync.WaitGroup
}

// Go runs f in a new goroutine and reports true, or reports false, running nothing, once
// Stop was called.
func (t *Tracker) Go(f func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	t.wg.Go(f)
	return true
}

// Stop makes every later Go refuse.
func (t *Tracker) Stop() {
	t.mu.Lock()
	t.stopped = true
	t.mu.Unlock()
}

// Wait waits for every goroutine Go started.
func (t *Tracker) Wait() { t.wg.Wait() }
