package nsqd

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// ParseLogLevel maps NSQ's level names (debug, info, warn, error, fatal) to slog levels;
// fatal is error, since only main exits.
func ParseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error", "fatal":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("invalid log level %q", s)
}

// levelHandler filters records below a level that can change at run time (PUT
// /config/log_level). The handler it wraps should let everything through; main builds it so.
type levelHandler struct {
	inner slog.Handler
	level *slog.LevelVar
}

func (h *levelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level.Level() && h.inner.Enabled(ctx, l)
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

// setLogLevel changes the daemon's log level and records it in the options.
func (n *NSQD) setLogLevel(s string) error {
	l, err := ParseLogLevel(s)
	if err != nil {
		return err
	}
	n.logLevel.Set(l)
	o := *n.getOpts()
	o.LogLevel = strings.ToLower(s)
	n.opts.Store(&o)
	return nil
}
