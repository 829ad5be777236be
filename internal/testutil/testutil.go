// Package testutil holds what tests across Tern share: a logger that writes through the test,
// and polling with a deadline in place of sleeps.
package testutil

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// Eventually polls cond every few milliseconds until it holds, failing the test with msg if it
// does not hold within timeout.
//
// msg is formatted only on failure, and an argument that is a function taking nothing and
// returning one value (a method value such as counter.Load, or a closure) is called then, so
// the message shows the state that made the test fail rather than the state when Eventually
// was called.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, Sprintf(msg, args...))
		}
		time.Sleep(wait) // polling interval, not synchronisation: cond is re-checked
		wait = min(wait*2, 20*time.Millisecond)
	}
}

// Sprintf is fmt.Sprintf that first calls every argument that is a function taking nothing
// and returning one value, and formats what it returns: failure messages built with it show
// values read when they are printed.
func Sprintf(format string, args ...any) string {
	vals := make([]any, len(args))
	for i, a := range args {
		vals[i] = a
		if v := reflect.ValueOf(a); v.Kind() == reflect.Func && !v.IsNil() &&
			v.Type().NumIn() == 0 && v.Type().NumOut() == 1 {
			vals[i] = v.Call(nil)[0].Interface()
		}
	}
	return fmt.Sprintf(format, vals...)
}

// Logger returns a slog.Logger that writes through t.Log, so output appears with the failing
// test and only then. Records logged after the test ends are dropped.
func Logger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// Context returns a context cancelled when the test ends.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}
