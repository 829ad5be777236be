package logging

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestParseLevel(t *testing.T) {
	for _, tc := range []struct {
		name string
		want slog.Level
		ok   bool
	}{
		{"debug", slog.LevelDebug, true}, {"INFO", slog.LevelInfo, true}, {"warn", slog.LevelWarn, true},
		{"error", slog.LevelError, true}, {"fatal", slog.LevelError, true}, {"verbose", 0, false}, {"", 0, false},
	} {
		got, err := ParseLevel(tc.name)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v, ok %v", tc.name, got, err, tc.want, tc.ok)
		}
	}
}

func TestLevelHandlerFiltersAndFollowsChanges(t *testing.T) {
	var buf bytes.Buffer
	inner := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})
	level := new(slog.LevelVar)
	level.Set(slog.LevelWarn)
	logger := slog.New(NewLevelHandler(inner, level)).With("k", "v").WithGroup("g")
	logger.Info("hidden")
	logger.Warn("shown")
	level.Set(slog.LevelDebug)
	logger.Debug("now shown")
	out := buf.String()
	if strings.Contains(out, "hidden") || !strings.Contains(out, "msg=shown") || !strings.Contains(out, "now shown") {
		t.Fatalf("output:\n%s", out)
	}
	if !strings.Contains(out, "k=v") {
		t.Fatalf("attributes lost:\n%s", out)
	}
}
