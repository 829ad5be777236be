package testutil

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fatalRecorder is a testing.TB whose Fatalf records the message and ends the goroutine, as
// the real one does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// TestEventuallyFormatsAtFailure checks that the failure message shows values read when the
// test fails, not when Eventually was called.
func TestEventuallyFormatsAtFailure(t *testing.T) {
	var n atomic.Int64
	rec := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Eventually(rec, 30*time.Millisecond, func() bool { n.Add(1); return false },
			"polled %d times, %s", n.Load, func() string { return "late value" })
	}()
	<-done
	if rec.msg == "" {
		t.Fatal("Eventually did not fail")
	}
	if strings.Contains(rec.msg, "polled 0 times") || !strings.Contains(rec.msg, "late value") {
		t.Fatalf("failure message %q was formatted with the values at the call", rec.msg)
	}
}

func TestSprintfLeavesOtherFuncsAlone(t *testing.T) {
	two := func(int) int { return 2 }
	got := Sprintf("%d %v", func() int { return 7 }, two == nil)
	if got != "7 false" {
		t.Fatalf("got %q", got)
	}
}
