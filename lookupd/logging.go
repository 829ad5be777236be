package lookupd

import (
	"log/slog"
	"sync"
	"time"
)

// logLimit is how many records a logLimiter lets through per second.
const logLimit = 20

// logLimiter rate-limits records that a misbehaving peer can cause at will (protocol errors,
// bad magics, dropped silent connections), so that a client looping over bad connections
// cannot flood the log. The metrics count every occurrence regardless.
type logLimiter struct {
	mu          sync.Mutex
	windowStart time.Time
	n           int
	suppressed  int
}

// allow reports whether a record may be logged now. When a new one-second window begins it
// also returns how many records the previous windows suppressed, for the caller to mention.
func (r *logLimiter) allow(now time.Time) (ok bool, suppressed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.windowStart) >= time.Second {
		r.windowStart, r.n = now, 0
		suppressed, r.suppressed = r.suppressed, 0
	}
	if r.n >= logLimit {
		r.suppressed++
		return false, suppressed
	}
	r.n++
	return true, suppressed
}

// logPeerProblem logs msg at info level unless the limiter says too many have been logged.
func (l *Lookupd) logPeerProblem(logger *slog.Logger, msg string, args ...any) {
	ok, suppressed := l.peerLogLimit.allow(time.Now())
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed_before", suppressed)
	}
	logger.Info(msg, args...)
}
