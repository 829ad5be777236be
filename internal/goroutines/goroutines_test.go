package goroutines

import (
	"sync/atomic"
	"testing"
)

func TestTrackerWaitsAndRefusesAfterStop(t *testing.T) {
	var tr Tracker
	var ran atomic.Int32
	release := make(chan struct{})
	for range 3 {
		if !tr.Go(func() { <-release; ran.Add(1) }) {
			t.Fatal("Go refused before Stop")
		}
	}
	tr.Stop()
	if tr.Go(func() { ran.Add(100) }) {
		t.Fatal("Go accepted after Stop")
	}
	close(release)
	tr.Wait()
	if got := ran.Load(); got != 3 {
		t.Fatalf("%d goroutines ran to completion before Wait returned, want 3", got)
	}
}
