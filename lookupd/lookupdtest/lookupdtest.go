// Package lookupdtest runs an nsqlookupd inside a test, for the cluster tests of other
// packages: nsqd's registration, the client's discovery, nsqadmin.
package lookupdtest

import (
	"context"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/lookupd"
)

// stopTimeout is how long Start's cleanup waits for Run to return.
const stopTimeout = 10 * time.Second

// Start runs a Lookupd on 127.0.0.1 with both ports chosen by the kernel and broadcast address
// 127.0.0.1, logging through t, until the test ends. configure, when not nil, may change the
// options first (shorter timeouts, say). The test fails if the daemon cannot start or does not
// stop cleanly.
//
// nsqd registers with l.TCPAddr().String(); consumers query "http://" + l.HTTPAddr().String().
func Start(t testing.TB, configure func(*lookupd.Options)) *lookupd.Lookupd {
	t.Helper()
	opts := lookupd.NewOptions()
	opts.TCPAddress = "127.0.0.1:0"
	opts.HTTPAddress = "127.0.0.1:0"
	opts.BroadcastAddress = "127.0.0.1"
	opts.LogLevel = "debug"
	if configure != nil {
		configure(opts)
	}
	l, err := lookupd.New(opts, testutil.Logger(t), nil)
	if err != nil {
		t.Fatalf("start lookupd: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("lookupd stopped with an error: %v", err)
			}
		case <-time.After(stopTimeout):
			t.Errorf("lookupd did not stop within %v", stopTimeout)
		}
	})
	return l
}
