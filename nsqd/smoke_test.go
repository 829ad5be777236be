package nsqd

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gonsq "github.com/nsqio/go-nsq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ternmq/tern/internal/testutil"
)

// testStopTimeout is how long stopping a test daemon waits for Run to return after cancelling
// it: a daemon that takes longer is stuck.
const testStopTimeout = 15 * time.Second

// testDaemonOption changes how startTestDaemon builds or runs a daemon beyond its Options.
type testDaemonOption func(*testDaemonSetup)

// testDaemonSetup is what the testDaemonOptions set.
type testDaemonSetup struct {
	registry  *prometheus.Registry // passed to New; nil: New makes its own
	beforeRun []func(*NSQD)        // run in order between New and Run
	logger    *slog.Logger         // nil: the test's log
}

// withLogger makes the daemon log to l rather than to the test's log (a fuzz target may not
// write to the log of its *testing.F).
func withLogger(l *slog.Logger) testDaemonOption {
	return func(s *testDaemonSetup) { s.logger = l }
}

// withRegistry makes the daemon register its metrics on reg.
func withRegistry(reg *prometheus.Registry) testDaemonOption {
	return func(s *testDaemonSetup) { s.registry = reg }
}

// beforeRun runs fn between New and Run, to set unexported tuning or state the daemon reads
// once it starts.
func beforeRun(fn func(*NSQD)) testDaemonOption {
	return func(s *testDaemonSetup) { s.beforeRun = append(s.beforeRun, fn) }
}

// withHTTP is mutate after turning HTTP on at 127.0.0.1:0, and broadcasting 127.0.0.1 when
// broadcast is set, for the starters of daemons that serve HTTP or register with a lookupd.
func withHTTP(broadcast bool, mutate func(*Options)) func(*Options) {
	return func(o *Options) {
		o.HTTPAddress = "127.0.0.1:0"
		if broadcast {
			o.BroadcastAddress = "127.0.0.1"
		}
		if mutate != nil {
			mutate(o)
		}
	}
}

// startTestDaemon runs an nsqd in-process with TCP on 127.0.0.1:0, no HTTP, node ID 1 and
// the given data path, stopped when the test ends. stop may be called earlier; it returns
// Run's error, or an error if Run does not return within testStopTimeout, and the test then
// owns that error. When the test does not call stop, the cleanup fails the test on it.
func startTestDaemon(t testing.TB, dataPath string, mutate func(*Options), options ...testDaemonOption) (*NSQD, func() error) {
	t.Helper()
	var setup testDaemonSetup
	for _, o := range options {
		o(&setup)
	}
	opts := NewOptions()
	opts.TCPAddress = "127.0.0.1:0"
	opts.HTTPAddress = ""
	opts.DataPath = dataPath
	opts.NodeID = 1
	if mutate != nil {
		mutate(opts)
	}
	logger := setup.logger
	if logger == nil {
		logger = testutil.Logger(t)
	}
	n, err := New(opts, logger, setup.registry)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, fn := range setup.beforeRun {
		fn(n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	select {
	case <-n.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Run returned before serving: %v", err)
	case <-time.After(testStopTimeout):
		cancel()
		t.Fatalf("the daemon did not start serving within %v", testStopTimeout)
	}
	stop := sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(testStopTimeout):
			return fmt.Errorf("did not return within %v of cancellation", testStopTimeout)
		}
	})
	var taken atomic.Bool
	t.Cleanup(func() {
		if err := stop(); err != nil && !taken.Load() {
			t.Errorf("Run: %v", err)
		}
	})
	return n, func() error {
		taken.Store(true)
		return stop()
	}
}

func quietConfig() *gonsq.Config {
	cfg := gonsq.NewConfig()
	cfg.LookupdPollInterval = time.Second
	return cfg
}

func TestSmokePublishConsume(t *testing.T) {
	n, _ := startTestDaemon(t, t.TempDir(), nil)
	addr := n.TCPAddr().String()

	p, err := gonsq.NewProducer(addr, quietConfig())
	if err != nil {
		t.Fatal(err)
	}
	p.SetLogger(log.New(io.Discard, "", 0), gonsq.LogLevelError)
	defer p.Stop()
	const total = 1000
	for i := range total / 10 {
		var batch [][]byte
		for j := range 10 {
			batch = append(batch, fmt.Appendf(nil, "m%d", i*10+j))
		}
		if err := p.MultiPublish("smoke", batch); err != nil {
			t.Fatalf("MPUB: %v", err)
		}
	}

	cfg := quietConfig()
	cfg.MaxInFlight = 100
	c, err := gonsq.NewConsumer("smoke", "ch", cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetLogger(log.New(io.Discard, "", 0), gonsq.LogLevelError)
	var mu sync.Mutex
	got := make(map[string]int)
	c.AddHandler(gonsq.HandlerFunc(func(m *gonsq.Message) error {
		mu.Lock()
		got[string(m.Body)]++
		mu.Unlock()
		return nil
	}))
	if err := c.ConnectToNSQD(addr); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	testutil.Eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == total
	}, "consumed all %d messages", total)
	testutil.Eventually(t, 5*time.Second, func() bool {
		s := n.Stats()
		return len(s) == 1 && len(s[0].Channels) == 1 && s[0].Channels[0].InFlightCount == 0
	}, "all messages finished")
	for k, v := range got {
		if v != 1 {
			t.Fatalf("%s delivered %d times", k, v)
		}
	}
}
