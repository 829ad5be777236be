//go:build interop

package interop

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/internal/tools/publish"
	"github.com/ternmq/tern/internal/tools/stat"
	"github.com/ternmq/tern/internal/tools/tail"
	"github.com/ternmq/tern/internal/tools/tofile"
	"github.com/ternmq/tern/internal/tools/tohttp"
	"github.com/ternmq/tern/internal/tools/tonsq"
	"github.com/ternmq/tern/internal/tools/toolflag"
	"github.com/ternmq/tern/internal/tools/tooltest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// post POSTs to one of NSQ's HTTP APIs.
func post(t *testing.T, url, body string) {
	t.Helper()
	resp, err := http.Post(url, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: %s", url, resp.Status)
	}
}

// depth returns the depth plus in-flight of a channel on the real cluster's first nsqd, -1 if it is not there.
func depth(t *testing.T, r *testutil.RealNSQ, topic, channel string) int64 {
	t.Helper()
	var out strings.Builder
	s, err := stat.New(&stat.Options{Topic: topic, Channel: channel, Interval: time.Millisecond, Count: 1,
		HTTPClientConnectTimeout: time.Second, HTTPClientRequestTimeout: time.Second, NSQDHTTPAddrs: []string{r.NodesHTTP[0]}}, testutil.Logger(t), &out)
	if err != nil {
		t.Fatal(err)
	}
	if s.Run(context.Background()) != nil {
		return -1
	}
	f := strings.Fields(strings.Split(out.String(), "\n")[2])
	var d, inflt int64
	_, _ = fmt.Sscan(f[3], &d)
	_, _ = fmt.Sscan(f[6], &inflt)
	return d + inflt
}

// TestInteropPublishAndTail: to_nsq publishes to NSQ's nsqd, with snappy and deflate, and
// nsq_tail reads it back through NSQ's lookupd.
func TestInteropPublishAndTail(t *testing.T) {
	r := testutil.StartRealNSQ(t, 1)
	for _, opt := range []string{"snappy", "deflate"} {
		topic := "interop_" + opt
		p, err := publish.New(&publish.Options{Topic: topic, Delimiter: "\n", NSQDTCPAddrs: []string{r.NodesTCP[0]}, ProducerOpts: []string{opt}},
			testutil.Logger(t), strings.NewReader("one\ntwo\nthree\n"))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Run(testutil.Context(t)); err != nil {
			t.Fatal(err)
		}
		// NSQ's nsqd registers the topic with its lookupd after the publish is answered;
		// nsq_tail asks the lookupd once at start, then only every minute.
		testutil.Eventually(t, tooltest.Timeout, func() bool {
			resp, err := http.Get("http://" + r.LookupdHTTP + "/lookup?topic=" + topic)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			return resp.StatusCode == 200
		}, "NSQ's lookupd never listed topic %s", topic)
		var out syncBuffer
		tl, err := tail.New(&tail.Options{Topics: []string{topic}, MaxInFlight: 200, N: 3, PrintTopic: true, ConsumerOpts: []string{opt},
			Source: toolflag.Source{LookupdHTTPAddrs: []string{r.LookupdHTTP}}}, testutil.Logger(t), &out)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), tooltest.Timeout)
		if err := tl.Run(ctx); err != nil || ctx.Err() != nil {
			cancel()
			t.Fatalf("%s: tail %v %v, output %q", opt, err, ctx.Err(), out.String())
		}
		cancel()
		if want := fmt.Sprintf("%[1]s | one\n%[1]s | two\n%[1]s | three\n", topic); out.String() != want {
			t.Errorf("%s: output %q, want %q", opt, out.String(), want)
		}
	}
}

// TestInteropStat: nsq_stat reads NSQ's own /stats, through its lookupd.
func TestInteropStat(t *testing.T) {
	r := testutil.StartRealNSQ(t, 1)
	post(t, "http://"+r.NodesHTTP[0]+"/topic/create?topic=st", "")
	post(t, "http://"+r.NodesHTTP[0]+"/channel/create?topic=st&channel=c", "")
	post(t, "http://"+r.NodesHTTP[0]+"/mpub?topic=st", "a\nb\nc")
	var out strings.Builder
	var s *stat.Stat
	testutil.Eventually(t, tooltest.Timeout, func() bool {
		out.Reset()
		var err error
		s, err = stat.New(&stat.Options{Topic: "st", Channel: "c", Interval: 10 * time.Millisecond, Count: 1,
			HTTPClientConnectTimeout: time.Second, HTTPClientRequestTimeout: time.Second, LookupdHTTPAddrs: []string{r.LookupdHTTP}}, testutil.Logger(t), &out)
		return err == nil && s.Run(context.Background()) == nil
	}, "nsq_stat over NSQ's lookupd: %s", out.String)
	if row := strings.Split(out.String(), "\n")[2]; !strings.Contains(row, "|       3       3       0     0     0 |") {
		t.Errorf("row %q", row)
	}
}

// TestInteropToFile: nsq_to_file writes NSQ's messages, gzipped, and finishes them.
func TestInteropToFile(t *testing.T) {
	r := testutil.StartRealNSQ(t, 1)
	post(t, "http://"+r.NodesHTTP[0]+"/mpub?topic=tf", "a\nb\nc")
	dir := t.TempDir()
	o := tofile.NewOptions()
	o.Topics, o.OutputDir, o.GZIP, o.SyncInterval = []string{"tf"}, dir, true, 20*time.Millisecond
	o.Source.NSQDTCPAddrs = []string{r.NodesTCP[0]}
	tf, err := tofile.New(o, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tf.Run(ctx) }()
	testutil.Eventually(t, tooltest.Timeout, func() bool { return depth(t, r, "tf", "nsq_to_file") == 0 }, "every message finished")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "tf.*.log.gz"))
	if len(names) != 1 {
		t.Fatalf("files %q", names)
	}
	f, err := os.Open(names[0])
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(zr)
	if string(b) != "a\nb\nc\n" {
		t.Errorf("file holds %q", b)
	}
}

// TestInteropToHTTPAndToNSQ: nsq_to_nsq copies from NSQ's nsqd to Tern's and back, and
// nsq_to_http posts NSQ's messages.
func TestInteropToHTTPAndToNSQ(t *testing.T) {
	r := testutil.StartRealNSQ(t, 1)
	tern := tooltest.Start(t, 1, false)

	post(t, "http://"+r.NodesHTTP[0]+"/mpub?topic=fromreal", "x\ny")
	o := tonsq.NewOptions()
	o.Topics, o.Source.NSQDTCPAddrs, o.DestNSQDTCPAddrs = []string{"fromreal"}, []string{r.NodesTCP[0]}, []string{tern.TCP(0)}
	run(t, func() (toolflag.Tool, error) { return tonsq.New(o, testutil.Logger(t)) }, func() bool { return tern.MessageCount(0, "fromreal") == 2 })

	tern.Publish(t, 0, "fromtern", "z")
	o2 := tonsq.NewOptions()
	o2.Topics, o2.Source.NSQDTCPAddrs, o2.DestNSQDTCPAddrs, o2.DestinationTopic = []string{"fromtern"}, []string{tern.TCP(0)}, []string{r.NodesTCP[0]}, "copied"
	post(t, "http://"+r.NodesHTTP[0]+"/topic/create?topic=copied", "")
	post(t, "http://"+r.NodesHTTP[0]+"/channel/create?topic=copied&channel=check", "")
	run(t, func() (toolflag.Tool, error) { return tonsq.New(o2, testutil.Logger(t)) }, func() bool { return depth(t, r, "copied", "check") == 1 })

	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		mu.Lock()
		got = append(got, string(b))
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	o3 := tohttp.NewOptions()
	o3.Topic, o3.Post, o3.Source.NSQDTCPAddrs = "fromreal", []string{srv.URL}, []string{r.NodesTCP[0]}
	o3.Channel = "http"
	post(t, "http://"+r.NodesHTTP[0]+"/channel/create?topic=fromreal&channel=http", "")
	post(t, "http://"+r.NodesHTTP[0]+"/mpub?topic=fromreal", "p\nq")
	run(t, func() (toolflag.Tool, error) { return tohttp.New(o3, testutil.Logger(t)) }, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 2
	})
	slices.Sort(got)
	if !slices.Equal(got, []string{"p", "q"}) {
		t.Errorf("posted %q", got)
	}
}

// run runs a tool until until holds, then stops it and checks that it stopped cleanly.
func run(t *testing.T, build func() (toolflag.Tool, error), until func() bool) {
	t.Helper()
	tool, err := build()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tool.Run(ctx) }()
	testutil.Eventually(t, tooltest.Timeout, until, "the tool's work done")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(tooltest.Timeout):
		t.Fatal("the tool did not stop")
	}
}

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
