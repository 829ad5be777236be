package nsqd

import (
	"context"
	"fmt"
	"io"
	"log"
	"sync"
	"testing"
	"time"

	gonsq "github.com/nsqio/go-nsq"

	"github.com/ternmq/tern/internal/testutil"
)

// startTestDaemon runs an nsqd in-process on 127.0.0.1:0 with a fresh data path, stopped when
// the test ends. stop may be called earlier; it returns Run's error.
func startTestDaemon(t testing.TB, dataPath string, mutate func(*Options)) (*NSQD, func() error) {
	t.Helper()
	opts := NewOptions()
	opts.TCPAddress = "127.0.0.1:0"
	opts.HTTPAddress = ""
	opts.DataPath = dataPath
	opts.NodeID = 1
	if mutate != nil {
		mutate(opts)
	}
	n, err := New(opts, testutil.Logger(t), nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	stop := sync.OnceValue(func() error { cancel(); return <-done })
	t.Cleanup(func() { _ = stop() })
	return n, stop
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
