package lookupd

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// parseLogLevel maps NSQ's level names (debug, info, warn, error, fatal) to slog levels;
// fatal is error, since only main exits.
func parseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error", "fatal":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("invalid log level %q", s)
}

// levelHandler drops records below --log-level whatever the level of the handler it wraps,
// so that Options.LogLevel means the same embedded in a test as in the binary.
type levelHandler struct {
	inner slog.Handler
	level slog.Level
}

func (h *levelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level && h.inner.Enabled(ctx, l)
}

func (h *levelHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.inner.Handle(ctx, r)
}

func (h *levelHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &levelHandler{inner: h.inner.WithAttrs(attrs), level: h.level}
}

func (h *levelHandler) WithGroup(name string) slog.Handler {
	return &levelHandler{inner: h.inner.WithGroup(name), level: h.level}
}

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
