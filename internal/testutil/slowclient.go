package testutil

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// Trickle writes data to c one byte every interval from a goroutine of its own, as a
// slowloris client does: each byte comes well within any timeout that a read would restart,
// the whole never within the server's bound. The first byte goes at once. It stops at the end
// of data or at the first failed write (the server closed the connection); the test's cleanup
// closes c and waits for the goroutine.
func Trickle(t testing.TB, c net.Conn, data string, interval time.Duration) {
	t.Helper()
	stop, done := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() {
		close(stop)
		_ = c.Close()
		<-done
	})
	go func() {
		defer close(done)
		tick := time.NewTicker(interval) // paces the bytes; nothing waits on it to synchronise
		defer tick.Stop()
		for i := range len(data) {
			if i > 0 {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
			if _, err := c.Write([]byte{data[i]}); err != nil {
				return
			}
		}
	}()
}

// ExpectDropped reads and discards what c receives until the server closes the connection,
// and fails the test unless that happens between lo and hi after start (taken before the
// dial: the server's clock for the connection starts later).
func ExpectDropped(t testing.TB, c net.Conn, start time.Time, lo, hi time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(start.Add(hi + 5*time.Second))
	_, err := io.Copy(io.Discard, c)
	elapsed := time.Since(start)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("still connected after %v, want dropped within %v", elapsed.Round(time.Millisecond), hi)
	}
	if elapsed < lo || elapsed > hi {
		t.Errorf("dropped after %v (%v), want between %v and %v", elapsed.Round(time.Millisecond), err, lo, hi)
	}
}
