// Package logging holds the log-level handling every Tern daemon shares: NSQ's level names,
// and a slog handler that filters at a level the daemon owns.
//
// A daemon filters its own records rather than relying on the handler it is given, so that
// --log-level means the same when the daemon is embedded in a test as in its binary, and so
// that the level can change at run time (nsqd's PUT /config/log_level). The binaries
// therefore hand their daemons a handler that lets every level through.
package logging

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// ParseLevel maps NSQ's level names (debug, info, warn, error, fatal; any case) to slog
// levels. fatal is error, since only main exits.
func ParseLevel(name string) (slog.Level, error) {
	switch strings.ToLower(name) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error", "fatal":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("invalid log level %q", name)
}

// LevelHandler passes on the records at or above its level to the handler it wraps. With a
// *slog.LevelVar as its level, the level can change while it is in use.
type LevelHandler struct {
	inner slog.Handler
	level slog.Leveler
}

// NewLevelHandler wraps inner, filtering at level.
func NewLevelHandler(inner slog.Handler, level slog.Leveler) *LevelHandler {
	return &LevelHandler{inner: inner, level: level}
}

// Enabled reports whether l is at or above the handler's level and the wrapped handler's.
func (h *LevelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level.Level() && h.inner.Enabled(ctx, l)
}

// Handle passes r on.
func (h *LevelHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.inner.Handle(ctx, r)
}

// WithAttrs returns a LevelHandler, with the same level, around inner.WithAttrs(attrs).
func (h *LevelHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &LevelHandler{inner: h.inner.WithAttrs(attrs), level: h.level}
}

// WithGroup returns a LevelHandler, with the same level, around inner.WithGroup(name).
func (h *LevelHandler) WithGroup(name string) slog.Handler {
	return &LevelHandler{inner: h.inner.WithGroup(name), level: h.level}
}
