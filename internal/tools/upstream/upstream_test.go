package upstream

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		s         string
		multicast bool
		want      Mode
		err       string
	}{
		{"round-robin", false, RoundRobin, ""},
		{"hostpool", false, HostPool, ""},
		{"epsilon-greedy", true, EpsilonGreedy, ""},
		{"multicast", true, Multicast, ""},
		{"multicast", false, 0, `--mode "multicast": want round-robin, hostpool or epsilon-greedy`},
		{"all", true, 0, "or multicast"},
	}
	for _, tt := range tests {
		got, err := ParseMode(tt.s, tt.multicast)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseMode(%q) error %v, want %q", tt.s, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseMode(%q) = %v, %v", tt.s, got, err)
		}
	}
}

// picks returns the next n picks of single destinations.
func picks(p *Pool, n int) []int {
	var out []int
	for range n {
		out = append(out, p.Pick()...)
	}
	return out
}

func TestPool(t *testing.T) {
	failed := errors.New("failed")
	t.Run("round-robin", func(t *testing.T) {
		p := NewPool(RoundRobin, 3)
		p.Mark(1, failed, 0) // no effect on round-robin
		if got := picks(p, 6); !slices.Equal(got, []int{0, 1, 2, 0, 1, 2}) {
			t.Errorf("picks %v", got)
		}
	})
	t.Run("multicast", func(t *testing.T) {
		if got := NewPool(Multicast, 3).Pick(); !slices.Equal(got, []int{0, 1, 2}) {
			t.Errorf("pick %v", got)
		}
	})
	t.Run("hostpool sets failures aside, then retries", func(t *testing.T) {
		p := NewPool(HostPool, 3)
		now := time.Unix(1000, 0)
		p.now = func() time.Time { return now }
		if got := picks(p, 3); !slices.Equal(got, []int{0, 1, 2}) {
			t.Fatalf("picks %v", got)
		}
		p.Mark(1, failed, 0)
		if got := picks(p, 4); slices.Contains(got, 1) {
			t.Fatalf("picked the failed destination: %v", got)
		}
		now = now.Add(initialRetryDelay)
		if got := picks(p, 3); !slices.Contains(got, 1) {
			t.Fatalf("did not retry after the delay: %v", got)
		}
		p.Mark(1, failed, 0)
		if h := p.hosts[1]; h.retryDelay != 2*initialRetryDelay {
			t.Fatalf("retry delay %v after a second failure", h.retryDelay)
		}
		p.Mark(1, nil, time.Millisecond)
		if h := p.hosts[1]; h.retryDelay != 0 || !h.deadUntil.IsZero() {
			t.Fatalf("success did not revive it: %+v", h)
		}
	})
	t.Run("hostpool with every destination failing uses them all", func(t *testing.T) {
		p := NewPool(HostPool, 2)
		p.Mark(0, failed, 0)
		p.Mark(1, failed, 0)
		if got := picks(p, 2); !slices.Equal(got, []int{0, 1}) {
			t.Fatalf("picks %v", got)
		}
	})
	t.Run("epsilon-greedy prefers the fastest", func(t *testing.T) {
		p := NewPool(EpsilonGreedy, 3)
		p.Mark(0, nil, 50*time.Millisecond)
		p.Mark(1, nil, time.Millisecond)
		p.Mark(2, nil, 80*time.Millisecond)
		n := 0
		for _, i := range picks(p, 1000) {
			if i == 1 {
				n++
			}
		}
		if n < 600 {
			t.Fatalf("the fastest got %d of 1000 picks", n)
		}
	})
}

func TestTimings(t *testing.T) {
	var out strings.Builder
	logger := slog.New(slog.NewTextHandler(&out, nil))
	tm := NewTimings(4, "[aggregate]:", logger)
	for _, ms := range []int{1, 2, 3, 10, 5} {
		tm.Add(time.Duration(ms) * time.Millisecond)
	}
	if got := out.String(); strings.Count(got, "finished requests") != 1 ||
		!strings.Contains(got, "requests=4 p99_ms=10 p95_ms=10 avg_ms=4") || !strings.Contains(got, `upstream=[aggregate]:`) {
		t.Errorf("log %q", got)
	}
	NewTimings(0, "off", logger).Add(time.Second) // never logs, never panics
}
