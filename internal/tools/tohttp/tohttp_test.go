package tohttp

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/internal/tools/toolflag"
	"github.com/ternmq/tern/internal/tools/tooltest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(o *Options)
		want   []string
	}{
		{"nothing", func(o *Options) { o.Channel = "" }, []string{
			"--nsqd-tcp-address or --lookupd-http-address required", "--topic and --channel are required", "--get or --post required",
		}},
		{"both kinds", func(o *Options) { o.Get, o.Post = []string{"http://a/?q=%s"}, []string{"http://b/"} }, []string{"use --get or --post not both"}},
		{"get without %s", func(o *Options) { o.Get = []string{"http://a/"} }, []string{"must be a printf string"}},
		{"not a URL", func(o *Options) { o.Post = []string{"a:80"} }, []string{`endpoint "a:80": want an http:// or https:// URL`}},
		{"content type with get", func(o *Options) { o.Get, o.ContentType = []string{"http://a/%s"}, "text/plain" }, []string{"--content-type only used with --post"}},
		{"empty content type", func(o *Options) { o.Post, o.ContentType = []string{"http://a/"}, "" }, []string{"--content-type requires a value when used"}},
		{"numbers", func(o *Options) {
			o.Post, o.Sample, o.NumPublishers, o.MaxInFlight, o.StatusEvery = []string{"http://a/"}, 1.5, 0, 0, -1
			o.HTTPClientConnectTimeout, o.HTTPClientRequestTimeout = 0, -1
		}, []string{
			"--sample must be between 0.0 and 1.0", "--n 0", "--max-in-flight 0", "--status-every should not be negative",
			"--http-client-connect-timeout should be positive", "--http-client-request-timeout should be positive",
		}},
		{"mode", func(o *Options) { o.Post, o.Mode = []string{"http://a/"}, "random" }, []string{`--mode "random"`}},
		{"headers", func(o *Options) { o.Post, o.Headers = []string{"http://a/"}, []string{"X-A:", ": v", "nocolon"} }, []string{
			`--header "X-A:"`, `--header ": v"`, `--header "nocolon"`,
		}},
		{"headers Go's client would not send", func(o *Options) {
			o.Post, o.Headers = []string{"http://a/"}, []string{"Content-Length: 5", "transfer-encoding: chunked", "Trailer: X-Sum"}
		}, []string{
			`--header "Content-Length: 5": Content-Length is not supported`, `--header "transfer-encoding: chunked": Transfer-Encoding is not supported`,
			`--header "Trailer: X-Sum": Trailer is not supported`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := NewOptions()
			tt.mutate(o)
			err := o.Validate()
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

// endpoint is a test HTTP server recording what it is sent.
type endpoint struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies []string
	reqs   []*http.Request
	status atomic.Int64 // answered; 0 means 200
}

func newEndpoint(t *testing.T) *endpoint {
	e := &endpoint{}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := e.status.Load(); s != 0 {
			w.WriteHeader(int(s))
			return
		}
		b, _ := io.ReadAll(r.Body)
		if r.Method == http.MethodGet {
			b = []byte(r.URL.Query().Get("q"))
		}
		e.mu.Lock()
		e.bodies = append(e.bodies, string(b))
		e.reqs = append(e.reqs, r)
		e.mu.Unlock()
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *endpoint) got() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := slices.Clone(e.bodies)
	slices.Sort(out)
	return out
}

func (e *endpoint) count() int { return len(e.got()) }

// start runs nsq_to_http until the returned stop is called (or the test ends).
func start(t *testing.T, o *Options) func() {
	t.Helper()
	th, err := New(o, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- th.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(tooltest.Timeout):
				t.Errorf("Run did not return")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func options(c *tooltest.Cluster, topic string, mutate func(o *Options)) *Options {
	o := NewOptions()
	o.Topic = topic
	o.Source = toolflag.Source{NSQDTCPAddrs: []string{c.TCP(0)}}
	// Fast retries after a failed request.
	o.ConsumerOpts = []string{"default_requeue_delay,10ms", "backoff_multiplier,10ms"}
	mutate(o)
	return o
}

var five = []string{"a b", "c&d", "e", "f/g", "h?i"}

func TestDeliver(t *testing.T) {
	c := tooltest.Start(t, 1, false)
	t.Run("post", func(t *testing.T) {
		e := newEndpoint(t)
		c.Publish(t, 0, "post", five...)
		start(t, options(c, "post", func(o *Options) {
			o.Post, o.ContentType, o.Headers = []string{e.srv.URL + "/in"}, "text/plain", []string{"X-Token: s3cret", "Accept: */*", "host: hooks.example"}
		}))
		testutil.Eventually(t, tooltest.Timeout, func() bool { return e.count() == 5 }, "5 posts, got %v", e.got)
		e.mu.Lock()
		r := e.reqs[0]
		e.mu.Unlock()
		if r.Method != "POST" || r.URL.Path != "/in" || r.Header.Get("Content-Type") != "text/plain" ||
			r.Header.Get("X-Token") != "s3cret" || !strings.HasPrefix(r.Header.Get("User-Agent"), "nsq_to_http v") ||
			r.Host != "hooks.example" {
			t.Errorf("request %s %s Host %q %v", r.Method, r.URL, r.Host, r.Header)
		}
		if got := e.got(); !slices.Equal(got, five) {
			t.Errorf("bodies %q", got)
		}
	})
	t.Run("get", func(t *testing.T) {
		e := newEndpoint(t)
		c.Publish(t, 0, "get", five...)
		start(t, options(c, "get", func(o *Options) { o.Get = []string{e.srv.URL + "/?q=%s"} }))
		testutil.Eventually(t, tooltest.Timeout, func() bool { return e.count() == 5 }, "5 gets, got %v", e.got)
		if got := e.got(); !slices.Equal(got, five) {
			t.Errorf("bodies %q", got)
		}
	})
	t.Run("round-robin", func(t *testing.T) {
		e1, e2 := newEndpoint(t), newEndpoint(t)
		c.Publish(t, 0, "rr", "1", "2", "3", "4")
		start(t, options(c, "rr", func(o *Options) { o.Post, o.Mode, o.NumPublishers = []string{e1.srv.URL, e2.srv.URL}, "round-robin", 1 }))
		testutil.Eventually(t, tooltest.Timeout, func() bool { return e1.count()+e2.count() == 4 }, "4 posts")
		if e1.count() != 2 || e2.count() != 2 {
			t.Errorf("split %v / %v", e1.got(), e2.got())
		}
	})
	t.Run("multicast", func(t *testing.T) {
		e1, e2 := newEndpoint(t), newEndpoint(t)
		c.Publish(t, 0, "mc", "1", "2", "3")
		start(t, options(c, "mc", func(o *Options) { o.Post, o.Mode = []string{e1.srv.URL, e2.srv.URL}, "multicast" }))
		testutil.Eventually(t, tooltest.Timeout, func() bool { return e1.count() == 3 && e2.count() == 3 }, "3 posts each")
	})
	t.Run("hostpool avoids a failing endpoint", func(t *testing.T) {
		good, bad := newEndpoint(t), newEndpoint(t)
		bad.status.Store(http.StatusInternalServerError)
		c.Publish(t, 0, "hp", five...)
		start(t, options(c, "hp", func(o *Options) { o.Post = []string{bad.srv.URL, good.srv.URL} }))
		testutil.Eventually(t, tooltest.Timeout, func() bool { return good.count() == 5 }, "5 posts to the good endpoint: %v", good.got)
	})
	t.Run("failed requests are retried", func(t *testing.T) {
		e := newEndpoint(t)
		e.status.Store(http.StatusServiceUnavailable)
		c.Publish(t, 0, "retry", "x")
		start(t, options(c, "retry", func(o *Options) { o.Post = []string{e.srv.URL} }))
		testutil.Eventually(t, tooltest.Timeout, func() bool {
			ts, _ := c.Nodes[0].TopicStats("retry")
			return len(ts.Channels) == 1 && ts.Channels[0].RequeueCount > 0
		}, "a requeue")
		e.status.Store(0)
		testutil.Eventually(t, tooltest.Timeout, func() bool { return e.count() == 1 }, "delivered after the endpoint recovers")
	})
	t.Run("sample 0 sends nothing", func(t *testing.T) {
		e := newEndpoint(t)
		c.Publish(t, 0, "sample", five...)
		start(t, options(c, "sample", func(o *Options) { o.Post, o.Sample = []string{e.srv.URL}, 0 }))
		testutil.Eventually(t, tooltest.Timeout, func() bool {
			ts, _ := c.Nodes[0].TopicStats("sample")
			return len(ts.Channels) == 1 && ts.Channels[0].Depth == 0 && ts.Channels[0].InFlightCount == 0
		}, "every message finished")
		if e.count() != 0 {
			t.Errorf("sent %v", e.got())
		}
	})
}

// TestShutdownDelivers: a stop while requests are in progress lets them complete, and only
// delivered messages are finished.
func TestShutdownDelivers(t *testing.T) {
	c := tooltest.Start(t, 1, false)
	release := make(chan struct{})
	var arrived, delivered atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		<-release
		delivered.Add(1)
	}))
	t.Cleanup(srv.Close)
	const n = 20
	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = "m"
	}
	c.Publish(t, 0, "drain", bodies...)
	stop := start(t, options(c, "drain", func(o *Options) { o.Post, o.NumPublishers, o.MaxInFlight = []string{srv.URL}, 5, 5 }))
	testutil.Eventually(t, tooltest.Timeout, func() bool { return arrived.Load() == 5 }, "5 requests in progress")
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	close(release)
	<-stopped
	ts, _ := c.Nodes[0].TopicStats("drain")
	left := ts.Channels[0].Depth + int64(ts.Channels[0].InFlightCount)
	if delivered.Load()+left != n || delivered.Load() < 5 {
		t.Errorf("%d delivered + %d left = %d, want %d", delivered.Load(), left, delivered.Load()+left, n)
	}
}
