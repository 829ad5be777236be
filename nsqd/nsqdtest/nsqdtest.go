// Package nsqdtest runs an nsqd inside a test, for the black-box tests of nsqd itself and for
// the tests of packages that talk to it: the client, the benchmark tool, nsqadmin.
//
// Package nsqd's own internal tests cannot import it (nsqdtest imports nsqd), so they keep a
// starter of their own in the same shape.
package nsqdtest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/nsqd"
)

// stopTimeout is how long stopping waits for Run to return after cancelling it. A daemon that
// takes longer is stuck, and waiting for the test binary's own timeout would hide where.
const stopTimeout = 15 * time.Second

// Start runs an NSQD with TCP and HTTP (and HTTPS, when configured) on 127.0.0.1 with ports chosen by the kernel, broadcast
// address 127.0.0.1, a fresh temporary data path and node ID 1, logging through t, until the
// test ends. configure, when not nil, may change the options first (limits, a fixed address
// for a restart, HTTPAddress "" to turn HTTP off). The test fails if the daemon cannot start,
// or if Run returns an error or does not return within 15 seconds once the test ends.
func Start(t testing.TB, configure func(*nsqd.Options)) *nsqd.NSQD {
	t.Helper()
	d, _ := StartWithStop(t, configure)
	return d
}

// StartWithStop is Start that also returns stop, which cancels Run and waits for it before
// the test ends, for tests that restart a daemon or watch clients see it go. stop fails the
// test as the cleanup does; calling it more than once, or letting the cleanup call it again,
// stops the daemon once.
func StartWithStop(t testing.TB, configure func(*nsqd.Options)) (d *nsqd.NSQD, stop func()) {
	t.Helper()
	opts := nsqd.NewOptions()
	opts.TCPAddress = "127.0.0.1:0"
	opts.HTTPAddress = "127.0.0.1:0"
	opts.HTTPSAddress = "127.0.0.1:0" // serves only when a test configures TLS
	opts.BroadcastAddress = "127.0.0.1"
	opts.DataPath = t.TempDir()
	opts.NodeID = 1
	if configure != nil {
		configure(opts)
	}
	d, err := nsqd.New(opts, testutil.Logger(t), nil)
	if err != nil {
		t.Fatalf("nsqd.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	// Tests start using the daemon at once, and some count goroutines: wait until it serves.
	select {
	case <-d.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("nsqd.Run returned before serving: %v", err)
	case <-time.After(stopTimeout):
		cancel()
		t.Fatalf("nsqd did not start serving within %v", stopTimeout)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("nsqd.Run: %v", err)
				}
			case <-time.After(stopTimeout):
				t.Errorf("nsqd.Run did not return within %v of cancellation", stopTimeout)
			}
		})
	}
	t.Cleanup(stop)
	return d, stop
}
