package tail

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/internal/tools/toolflag"
	"github.com/ternmq/tern/internal/tools/tooltest"
	"github.com/ternmq/tern/nsqd"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want []string
	}{
		{"nothing", Options{MaxInFlight: 200}, []string{"--nsqd-tcp-address or --lookupd-http-address required", "--topic required"}},
		{"both sources", Options{MaxInFlight: 200, Topics: []string{"t"}, Source: toolflag.Source{NSQDTCPAddrs: []string{"a:1"}, LookupdHTTPAddrs: []string{"b:2"}}}, []string{"not both"}},
		{"bad names and numbers", Options{MaxInFlight: 0, N: -1, Channel: "bad channel", Topics: []string{"t!"}, Source: toolflag.Source{NSQDTCPAddrs: []string{"a:1"}}}, []string{
			"--max-in-flight 0", "--n -1", `--channel "bad channel"`, `--topic "t!"`,
		}},
		{"consumer option", Options{MaxInFlight: 1, Topics: []string{"t"}, Source: toolflag.Source{NSQDTCPAddrs: []string{"a:1"}}, ConsumerOpts: []string{"low_rdy_timeout,1s"}}, []string{"low_rdy_timeout is not supported"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// syncBuffer is an io.Writer the test reads while the tail writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runTail runs a tail until it returns by itself, failing the test if it does not within
// the timeout.
func runTail(t *testing.T, o *Options) (string, *Tail) {
	t.Helper()
	var out syncBuffer
	tl, err := New(o, testutil.Logger(t), &out)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), tooltest.Timeout)
	defer cancel()
	if err := tl.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatalf("tail did not stop by itself; output so far %q", out.String())
	}
	return out.String(), tl
}

func TestTail(t *testing.T) {
	c := tooltest.Start(t, 1, true)
	nsqd := toolflag.Source{NSQDTCPAddrs: []string{c.TCP(0)}}
	tests := []struct {
		name    string
		publish map[string][]string // topic: bodies, published before the tail starts
		o       Options
		lines   []string
	}{
		{"n messages", map[string][]string{"orders": {"o1", "o2", "o3"}}, Options{Topics: []string{"orders"}, N: 3, Source: nsqd}, []string{"o1", "o2", "o3"}},
		{"print topic", map[string][]string{"a": {"a1", "a2"}}, Options{Topics: []string{"a"}, N: 2, PrintTopic: true, Source: nsqd}, []string{"a | a1", "a | a2"}},
		{"through the lookupd", map[string][]string{"refunds": {"r1"}}, Options{Topics: []string{"refunds"}, N: 1, Source: toolflag.Source{LookupdHTTPAddrs: []string{c.LookupdHTTP()}}}, []string{"r1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for topic, bodies := range tt.publish {
				c.Publish(t, 0, topic, bodies...)
				c.WaitRegistered(t, 0, topic)
			}
			tt.o.MaxInFlight = 200
			out, tl := runTail(t, &tt.o)
			if !strings.HasPrefix(tl.Channel(), "tail") || !strings.HasSuffix(tl.Channel(), "#ephemeral") || len(tl.Channel()) != len("tail000000#ephemeral") {
				t.Errorf("channel %q, want tail<6 digits>#ephemeral", tl.Channel())
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			slices.Sort(lines)
			if !slices.Equal(lines, tt.lines) || !strings.HasSuffix(out, "\n") {
				t.Errorf("output %q, want the lines %q", out, tt.lines)
			}
		})
	}
}

// TestTailNLeavesTheRest: on a durable channel, nsq_tail --n=2 consumes two messages and
// leaves the others to the channel, even when more were in flight.
func TestTailNLeavesTheRest(t *testing.T) {
	c := tooltest.Start(t, 1, false)
	c.Publish(t, 0, "events", "e1", "e2", "e3", "e4", "e5")
	out, _ := runTail(t, &Options{Topics: []string{"events"}, Channel: "keep", N: 2, MaxInFlight: 200, Source: toolflag.Source{NSQDTCPAddrs: []string{c.TCP(0)}}})
	if out != "e1\ne2\n" {
		t.Fatalf("output %q", out)
	}
	rest := c.Read(t, 0, "events", "keep", 3)
	slices.Sort(rest)
	if !slices.Equal(rest, []string{"e3", "e4", "e5"}) {
		t.Fatalf("left on the channel: %q", rest)
	}
}

// TestTailNCountsPerTopic: as in NSQ, --n counts each topic's messages on their own, and
// the tail exits when any one topic has shown n.
func TestTailNCountsPerTopic(t *testing.T) {
	c := tooltest.Start(t, 1, false)
	var out syncBuffer
	tl, err := New(&Options{Topics: []string{"few", "many"}, N: 3, MaxInFlight: 10, PrintTopic: true, Source: toolflag.Source{NSQDTCPAddrs: []string{c.TCP(0)}}}, testutil.Logger(t), &out)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), tooltest.Timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx) }()
	for _, topic := range []string{"few", "many"} {
		testutil.Eventually(t, tooltest.Timeout, func() bool {
			cs, _ := c.Nodes[0].ChannelStats(topic, tl.Channel())
			return cs.ClientCount == 1
		}, "%s subscribed", topic)
	}
	c.Publish(t, 0, "few", "f1", "f2")
	testutil.Eventually(t, tooltest.Timeout, func() bool { return strings.Count(out.String(), "\n") == 2 }, "output %q", out.String)
	c.Publish(t, 0, "many", "m1", "m2", "m3")
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatalf("tail did not stop by itself; output %q", out.String())
	}
	if want := "few | f1\nfew | f2\nmany | m1\nmany | m2\nmany | m3\n"; out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
}

// TestTailStopsOnCancel: without --n, the tail runs until its context ends.
func TestTailStopsOnCancel(t *testing.T) {
	c := tooltest.Start(t, 1, false)
	var out syncBuffer
	tl, err := New(&Options{Topics: []string{"live"}, MaxInFlight: 10, Source: toolflag.Source{NSQDTCPAddrs: []string{c.TCP(0)}}}, testutil.Logger(t), &out)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx) }()
	c.Publish(t, 0, "live", "hello")
	testutil.Eventually(t, tooltest.Timeout, func() bool { return out.String() == "hello\n" }, "output %q", out.String)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(tooltest.Timeout):
		t.Fatal("Run did not return after cancel")
	}
}

func TestTailUnreachable(t *testing.T) {
	tl, err := New(&Options{Topics: []string{"t"}, MaxInFlight: 1, Source: toolflag.Source{NSQDTCPAddrs: []string{"127.0.0.1:1"}}}, testutil.Logger(t), &syncBuffer{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tl.Run(testutil.Context(t)); err == nil || !strings.Contains(err.Error(), "connect to nsqd 127.0.0.1:1") {
		t.Fatalf("Run = %v", err)
	}
}

// TestTailNDurableLosesNothing: on a durable channel, with several topics and more messages
// than --n, every message not shown stays on its channel (none is redelivered at once, over
// and over until given up on and finished unseen), and only the shown ones are finished.
func TestTailNDurableLosesNothing(t *testing.T) {
	const perTopic, n = 300, 40
	tests := []struct {
		name string
		// gated holds the first line until every topic has n messages in flight, so that
		// each consumer holds messages beyond the n when the tail stops. Without it the
		// first topic reaches n while the others are still being connected.
		gated bool
	}{
		{"first topic reaches n while the others connect", false},
		{"every topic in flight at once", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tooltest.Start(t, 1, false)
			topics := []string{"d1", "d2", "d3"}
			for _, topic := range topics {
				c.Publish(t, 0, topic, bodies(topic, perTopic)...)
			}
			out := &gatedBuffer{gate: make(chan struct{})}
			if !tt.gated {
				close(out.gate)
			}
			tl, err := New(&Options{Topics: topics, Channel: "durable", N: n, MaxInFlight: 200, PrintTopic: true, Source: toolflag.Source{NSQDTCPAddrs: []string{c.TCP(0)}}}, testutil.Logger(t), out)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), tooltest.Timeout)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- tl.Run(ctx) }()
			if tt.gated {
				for _, topic := range topics {
					testutil.Eventually(t, tooltest.Timeout, func() bool {
						cs, _ := c.Nodes[0].ChannelStats(topic, "durable")
						return cs.InFlightCount == n
					}, "%s: %d in flight", topic, n)
				}
				close(out.gate)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-ctx.Done():
				t.Fatalf("tail did not stop by itself; output %q", out.String())
			}

			shown := map[string]int{}
			for line := range strings.Lines(out.String()) {
				topic, _, _ := strings.Cut(line, " | ")
				shown[topic]++
			}
			total := 0
			for _, topic := range topics {
				total += shown[topic]
				if _, ok := c.Nodes[0].ChannelStats(topic, "durable"); !ok && shown[topic] == 0 {
					continue // never subscribed: the topic keeps every message
				}
				ch := func() nsqd.ChannelStats { cs, _ := c.Nodes[0].ChannelStats(topic, "durable"); return cs }
				testutil.Eventually(t, tooltest.Timeout, func() bool {
					cs := ch()
					return cs.Depth == int64(perTopic-shown[topic]) && cs.InFlightCount == 0 && cs.DeferredCount == 0
				}, "%s: %d shown, channel %+v", topic, shown[topic], ch)
				if cs := ch(); cs.FinishCount != uint64(shown[topic]) {
					t.Errorf("%s: %d finished, %d shown", topic, cs.FinishCount, shown[topic])
				}
			}
			if total < n {
				t.Errorf("%d shown in all, want at least %d", total, n)
			}
		})
	}
}

// gatedBuffer is a syncBuffer whose writes wait until gate is closed.
type gatedBuffer struct {
	syncBuffer
	gate chan struct{}
}

func (g *gatedBuffer) Write(p []byte) (int, error) {
	<-g.gate
	return g.syncBuffer.Write(p)
}

func bodies(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}
