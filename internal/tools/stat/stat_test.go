package stat

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/internal/tools/tooltest"
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
		{"nothing", Options{}, []string{
			"--topic and --channel are required", "--interval should be positive",
			"--http-client-connect-timeout should be positive", "--http-client-request-timeout should be positive",
			"--nsqd-http-address or --lookupd-http-address required",
		}},
		{"both and schemes", Options{Topic: "t", Channel: "c", Interval: time.Second, HTTPClientConnectTimeout: time.Second, HTTPClientRequestTimeout: time.Second, Count: -1,
			NSQDHTTPAddrs: []string{"http://a:1"}, LookupdHTTPAddrs: []string{"https://b:2"}}, []string{
			"use --nsqd-http-address or --lookupd-http-address not both", "--nsqd-http-address error - address should not contain scheme",
			"--lookupd-http-address error - address should not contain scheme", "--count should be positive",
		}},
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

const header = "------rate------+----------------depth----------------+--------------metadata---------------\n" +
	"ingress  egress |   total     mem    disk inflt   def |     req     t-o         msgs clients\n"

// runStat runs nsq_stat with o to completion and returns its output.
func runStat(t *testing.T, o *Options) (string, error) {
	t.Helper()
	var out strings.Builder
	s, err := New(o, testutil.Logger(t), &out)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), tooltest.Timeout)
	defer cancel()
	err = s.Run(ctx)
	return out.String(), err
}

func options(mutate func(o *Options)) *Options {
	o := NewOptions()
	o.Topic, o.Channel, o.Interval = "orders", "billing", 10*time.Millisecond
	mutate(o)
	return o
}

func TestStat(t *testing.T) {
	c := tooltest.Start(t, 2, true)
	for i, n := range []int{3, 4} {
		createChannel(t, c.HTTP(i), "orders", "billing")
		for range n {
			c.Publish(t, i, "orders", "m")
		}
		c.WaitRegistered(t, i, "orders")
	}
	// Both nodes: 7 messages in, 7 deep, nothing flowing.
	const row = "      0       0 |       7       7       0     0     0 |       0       0            7       0\n"
	tests := []struct {
		name string
		o    *Options
	}{
		{"nsqds", options(func(o *Options) { o.Count = 2; o.NSQDHTTPAddrs = []string{c.HTTP(0), c.HTTP(1)} })},
		{"lookupd", options(func(o *Options) { o.Count = 2; o.LookupdHTTPAddrs = []string{c.LookupdHTTP()} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runStat(t, tt.o)
			if err != nil {
				t.Fatal(err)
			}
			if want := header + row + row; out != want {
				t.Errorf("output\n%s\nwant\n%s", out, want)
			}
		})
	}

	t.Run("header every 25 samples", func(t *testing.T) {
		out, err := runStat(t, options(func(o *Options) { o.Count = 30; o.Interval = time.Millisecond; o.NSQDHTTPAddrs = []string{c.HTTP(0)} }))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		// Sample 0 prints the header only; 25 prints the header and its row.
		if len(lines) != 2+24+2+6 || !strings.HasPrefix(lines[26], "------rate") || strings.Count(out, "ingress") != 2 {
			t.Errorf("%d lines:\n%s", len(lines), out)
		}
	})
}

func TestStatErrors(t *testing.T) {
	c := tooltest.Start(t, 1, false)
	c.Publish(t, 0, "orders", "m")
	tests := []struct {
		name string
		o    *Options
		want string
	}{
		{"no such channel", options(func(o *Options) { o.NSQDHTTPAddrs = []string{c.HTTP(0)} }), "failed to find channel(billing) in stats metadata for topic(orders)"},
		{"node down", options(func(o *Options) { o.NSQDHTTPAddrs = []string{"127.0.0.1:1"} }), "failed to get nsqd stats"},
		{"lookupd down", options(func(o *Options) { o.LookupdHTTPAddrs = []string{"127.0.0.1:1"} }), "failed to get topic producers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := runStat(t, tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestStatRates: a consumer draining the channel shows as egress, publishing as ingress.
func TestStatRates(t *testing.T) {
	prev := &channelStats{Depth: 10, MessageCount: 100}
	cur := &channelStats{Depth: 4, BackendDepth: 1, MessageCount: 120, InFlightCount: 2, ClientCount: 1}
	var out strings.Builder
	if err := writeRow(&out, prev, cur, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	// 20 in over 2s; 26 out (20 in, depth down 6).
	if want := "     10      13 |       4       3       1     2     0 |       0       0          120       1\n"; out.String() != want {
		t.Errorf("row %q, want %q", out.String(), want)
	}
}

func createChannel(t *testing.T, node, topic, channel string) {
	t.Helper()
	for _, u := range []string{"/topic/create?topic=" + topic, "/channel/create?topic=" + topic + "&channel=" + channel} {
		resp, err := http.Post("http://"+node+u, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST %s: %s", u, resp.Status)
		}
	}
}

// TestStatRatesOverMeasuredTime: when /stats answers slower than --interval, the ticker
// drops ticks and samples come further apart than --interval; rates are over the time
// that really passed between them, not over --interval.
func TestStatRatesOverMeasuredTime(t *testing.T) {
	const perSample = 1000 // messages in between two answers
	const answerTime = 100 * time.Millisecond
	var (
		mu    sync.Mutex
		count int
		times []time.Time
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(answerTime) // a slow nsqd, not synchronisation
		mu.Lock()
		count += perSample
		times = append(times, time.Now())
		n := count
		mu.Unlock()
		fmt.Fprintf(w, `{"topics":[{"topic_name":"orders","channels":[{"channel_name":"billing","message_count":%d}]}]}`, n)
	}))
	t.Cleanup(srv.Close)
	const rows = 3
	out, err := runStat(t, options(func(o *Options) {
		o.Count, o.Interval = rows, answerTime/5
		o.NSQDHTTPAddrs = []string{strings.TrimPrefix(srv.URL, "http://")}
	}))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")[2:]
	mu.Lock()
	defer mu.Unlock()
	if len(lines) != rows || len(times) != rows+1 {
		t.Fatalf("%d answers, output:\n%s", len(times), out)
	}
	for i, line := range lines {
		var ingress float64
		if _, err := fmt.Sscan(line, &ingress); err != nil {
			t.Fatalf("row %q: %v", line, err)
		}
		want := perSample / times[i+1].Sub(times[i]).Seconds()
		if math.Abs(ingress-want) > 0.25*want {
			t.Errorf("row %d: ingress %v/s, want about %.0f/s (%d messages over %v)", i, ingress, want, perSample, times[i+1].Sub(times[i]))
		}
	}
}
