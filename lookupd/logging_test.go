package lookupd

import (
	"testing"
	"time"
)

func TestLogLimiter(t *testing.T) {
	var r logLimiter
	start := time.Unix(1_700_000_000, 0)
	steps := []struct {
		at             time.Duration
		count          int // calls at this instant
		wantAllowed    int
		wantSuppressed int // reported by the first call
	}{
		{0, logLimit + 5, logLimit, 0},
		{500 * time.Millisecond, 3, 0, 0},
		{time.Second, 1, 1, 8},
		{1500 * time.Millisecond, 1, 1, 0},
	}
	for _, s := range steps {
		allowed := 0
		for i := range s.count {
			ok, suppressed := r.allow(start.Add(s.at))
			if ok {
				allowed++
			}
			if i == 0 && suppressed != s.wantSuppressed {
				t.Errorf("at %v: suppressed %d, want %d", s.at, suppressed, s.wantSuppressed)
			}
		}
		if allowed != s.wantAllowed {
			t.Errorf("at %v: allowed %d of %d, want %d", s.at, allowed, s.count, s.wantAllowed)
		}
	}
}
