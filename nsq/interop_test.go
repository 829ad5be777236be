package nsq_test

import (
	"log"
	"slices"
	"sync"
	"testing"
	"time"

	gonsq "github.com/nsqio/go-nsq"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/nsq"
)

// Our Producer -> Tern nsqd -> go-nsq Consumer: what a user mixing clients sees, with each
// compression our Producer can negotiate.
func TestInteropProducerToGoNSQConsumer(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name            string
		snappy, deflate bool
	}{
		{"plain", false, false},
		{"snappy", true, false},
		{"deflate", false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startNSQD(t, nil)
			cfg := nsq.NewConfig()
			cfg.Snappy, cfg.Deflate = tc.snappy, tc.deflate
			p := newProducer(t, s.tcpAddr(), cfg)
			ctx := ctxTimeout(t, 10*time.Second)

			want := bodies("interop", 60)
			for _, b := range want[:20] {
				if err := p.Publish(ctx, "interop", b); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.MultiPublish(ctx, "interop", want[20:40]); err != nil {
				t.Fatal(err)
			}
			for _, b := range want[40:] {
				if err := p.DeferredPublish(ctx, "interop", 10*time.Millisecond, b); err != nil {
					t.Fatal(err)
				}
			}

			got := consumeGoNSQ(t, s.tcpAddr(), "interop", "ch", len(want))
			wantS := make([]string, len(want))
			for i, b := range want {
				wantS[i] = string(b)
			}
			slices.Sort(got)
			if !slices.Equal(got, wantS) {
				t.Fatalf("go-nsq consumer received %d messages %v, want %v", len(got), got, wantS)
			}
		})
	}
}

// consumeGoNSQInOrder is consumeGoNSQ with one message in flight at a time, so that the
// bodies come back in the order nsqd delivers them.
func consumeGoNSQInOrder(t *testing.T, addr, topic string, n int) []string {
	t.Helper()
	cfg := gonsq.NewConfig()
	cfg.MaxInFlight = 1
	return consumeGoNSQWith(t, cfg, addr, topic, "ordered", n)
}

// consumeGoNSQ subscribes a go-nsq Consumer to topic/channel and returns the first n bodies
// it receives.
func consumeGoNSQ(t *testing.T, addr, topic, channel string, n int) []string {
	t.Helper()
	cfg := gonsq.NewConfig()
	cfg.MaxInFlight = 50
	return consumeGoNSQWith(t, cfg, addr, topic, channel, n)
}

func consumeGoNSQWith(t *testing.T, cfg *gonsq.Config, addr, topic, channel string, n int) []string {
	t.Helper()
	c, err := gonsq.NewConsumer(topic, channel, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetLogger(log.New(testWriter{t}, "", 0), gonsq.LogLevelWarning)
	var (
		mu  sync.Mutex
		got []string
	)
	c.AddHandler(gonsq.HandlerFunc(func(m *gonsq.Message) error {
		mu.Lock()
		got = append(got, string(m.Body))
		mu.Unlock()
		return nil
	}))
	if err := c.ConnectToNSQD(addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop()
		<-c.StopChan
	})
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return count() >= n }, "go-nsq consumer received %d of %d", count, n)
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(got)
}

// testWriter sends go-nsq's log lines to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
