package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/nsqd"
)

// The scale of the benchmarks below, the largest cluster NSQ's users reported its admin
// failing on: 100 nodes, each with 200 topics of 5 channels with 10 clients each (a million
// client connections in all).
const (
	scaleNodes    = 100
	scaleTopics   = 200
	scaleChannels = 5
	scaleClients  = 10
)

// fakeCluster is a lookupd and scaleNodes nsqds, answering from precomputed JSON: the nodes
// are httptest servers in this process, and one node may be slow.
type fakeCluster struct {
	lookupd string
	nodes   []string
	stop    func()
}

// scaleStats builds one node's /stats answer.
func scaleStats(topicFilter, channelFilter string, clients bool) []byte {
	r := nsqd.StatsReport{Version: "1.3.0", Health: "OK", StartTime: time.Now().Unix()}
	for ti := range scaleTopics {
		name := fmt.Sprintf("topic-%03d", ti)
		if topicFilter != "" && name != topicFilter {
			continue
		}
		t := nsqd.TopicStats{Name: name, Depth: int64(ti), MessageCount: uint64(1000 * ti)}
		for ci := range scaleChannels {
			cname := fmt.Sprintf("channel-%d", ci)
			if channelFilter != "" && cname != channelFilter {
				continue
			}
			c := nsqd.ChannelStats{Name: cname, Depth: int64(ci), InFlightCount: ci, MessageCount: uint64(1000 * ti), ClientCount: scaleClients}
			if clients {
				for k := range scaleClients {
					c.Clients = append(c.Clients, nsqd.ClientStats{
						ClientID: "worker-" + strconv.Itoa(k), Hostname: "host-" + strconv.Itoa(k), Version: "V2",
						RemoteAddress: "10.1.0." + strconv.Itoa(k) + ":40000", ReadyCount: 10, InFlightCount: 2,
						MessageCount: 100, FinishCount: 98, ConnectTime: time.Now().Unix() - 3600, UserAgent: "go-nsq/1.1.0",
					})
				}
			}
			t.Channels = append(t.Channels, c)
		}
		r.Topics = append(r.Topics, t)
	}
	b, err := json.Marshal(r)
	if err != nil {
		panic(err)
	}
	return b
}

// startFakeCluster starts the fake lookupd and nodes. With slow set, the last node takes
// slowDelay to answer anything.
func startFakeCluster(tb testing.TB, slow bool, slowDelay time.Duration) *fakeCluster {
	tb.Helper()
	overview := scaleStats("", "", false)
	var servers []*httptest.Server
	fc := &fakeCluster{}
	release := make(chan struct{})
	for i := range scaleNodes {
		isSlow := slow && i == scaleNodes-1
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if isSlow {
				select {
				case <-time.After(slowDelay):
				case <-release:
					return
				case <-r.Context().Done():
					return
				}
			}
			q := r.URL.Query()
			w.Header().Set("Content-Type", "application/json")
			switch {
			case r.URL.Path != "/stats":
				http.NotFound(w, r)
			case q.Get("topic") == "" && q.Get("include_clients") == "false":
				_, _ = w.Write(overview)
			default:
				_, _ = w.Write(scaleStats(q.Get("topic"), q.Get("channel"), q.Get("include_clients") != "false"))
			}
		}))
		servers = append(servers, srv)
		fc.nodes = append(fc.nodes, srv.Listener.Addr().String())
	}
	var nodes strings.Builder
	nodes.WriteString(`{"producers":[`)
	topics := make([]string, scaleTopics)
	tombstones := make([]bool, scaleTopics)
	for i := range topics {
		topics[i] = fmt.Sprintf("topic-%03d", i)
	}
	tj, _ := json.Marshal(topics)
	tbj, _ := json.Marshal(tombstones)
	for i, addr := range fc.nodes {
		host, port, _ := net.SplitHostPort(addr)
		if i > 0 {
			nodes.WriteByte(',')
		}
		fmt.Fprintf(&nodes, `{"remote_address":"%s:1","hostname":"node-%03d","broadcast_address":"%s","tcp_port":%d,"http_port":%s,"version":"1.3.0","topics":%s,"tombstones":%s}`,
			host, i, host, 10000+i, port, tj, tbj)
	}
	nodes.WriteString(`]}`)
	lookupd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/nodes":
			_, _ = io.WriteString(w, nodes.String())
		case "/topics":
			_, _ = fmt.Fprintf(w, `{"topics":%s}`, tj)
		default:
			http.NotFound(w, r)
		}
	}))
	fc.lookupd = lookupd.Listener.Addr().String()
	fc.stop = func() {
		close(release)
		lookupd.Close()
		for _, s := range servers {
			s.Close()
		}
	}
	tb.Cleanup(fc.stop)
	return fc
}

// benchPage times GET path on an admin over the fake cluster. With cold set, every request
// reads the whole cluster again instead of using the snapshot of the second before.
func benchPage(b *testing.B, path string, cold, slow bool) {
	fc := startFakeCluster(b, slow, 10*time.Second)
	a := startAdmin(b, func(o *Options) {
		o.NSQLookupdHTTPAddresses = []string{fc.lookupd}
		o.LogLevel = "warn"
	})
	u := adminURL(a, path)
	get := func() {
		resp, err := http.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		b.SetBytes(n)
	}
	get()
	b.ResetTimer()
	for b.Loop() {
		if cold {
			a.cache.invalidate()
		}
		get()
	}
	b.StopTimer()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
	if rss := peakRSS(); rss > 0 {
		b.ReportMetric(rss, "peak-RSS-MiB")
	}
}

// peakRSS is the process's peak resident set (VmHWM) in MiB, fakes included, or 0.
func peakRSS() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkScaleOverviewCold reads the whole 100-node cluster and renders the overview.
func BenchmarkScaleOverviewCold(b *testing.B) { benchPage(b, "/", true, false) }

// BenchmarkScaleOverviewCached renders the overview from the snapshot of the second before.
func BenchmarkScaleOverviewCached(b *testing.B) { benchPage(b, "/", false, false) }

// BenchmarkScaleTopicCold reads the cluster and renders a topic's page.
func BenchmarkScaleTopicCold(b *testing.B) { benchPage(b, "/topics/topic-100", true, false) }

// BenchmarkScaleChannelCold reads the cluster and a channel's 1,000 clients.
func BenchmarkScaleChannelCold(b *testing.B) {
	benchPage(b, "/topics/topic-100/channel-1", true, false)
}

// BenchmarkScaleOverviewSlowNode: one node takes 10s; every page waits for it only as long
// as the request timeout (5s by default), and shows it as not answering.
func BenchmarkScaleOverviewSlowNode(b *testing.B) { benchPage(b, "/", true, true) }

// BenchmarkScaleAdminProcessRSS runs the nsqadmin binary as its own process over the fake
// cluster and reports its peak resident memory (VmHWM) after the overview, a topic and a
// channel have been loaded b.N times each, every load reading the whole cluster anew (the
// sampler adds its own reads every 10s).
func BenchmarkScaleAdminProcessRSS(b *testing.B) {
	fc := startFakeCluster(b, false, 0)
	bin := filepath.Join(b.TempDir(), "nsqadmin")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/ternmq/tern/apps/nsqadmin").CombinedOutput(); err != nil {
		b.Fatalf("build nsqadmin: %v\n%s", err, out)
	}
	addr := testutil.FreeAddress(b)
	cmd := exec.Command(bin, "--http-address="+addr, "--lookupd-http-address="+fc.lookupd, "--log-level=warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}()
	get := func(path string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if resp, err := http.Get("http://" + addr + "/ping"); err == nil {
			_ = resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("nsqadmin did not start")
		}
		time.Sleep(20 * time.Millisecond) // waiting for a process to listen, bounded
	}
	for b.Loop() {
		for _, p := range []string{"/", "/topics/topic-100", "/topics/topic-100/channel-1"} {
			get(p)
			time.Sleep(1100 * time.Millisecond) // let the one-second snapshot expire: every load is cold
		}
	}
	b.StopTimer()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			b.ReportMetric(kb/1024, "admin-peak-RSS-MiB")
		}
	}
}

// BenchmarkScaleSamplerHour fills the sampler with an hour of samples of the 100-node cluster
// and reports the heap the admin then keeps: the rings of every topic and channel, the
// per-node counters and one snapshot. The admin's resident memory is about twice its live
// heap (Go's GC target) plus the runtime's own.
func BenchmarkScaleSamplerHour(b *testing.B) {
	fc := startFakeCluster(b, false, 0)
	o := NewOptions()
	o.NSQLookupdHTTPAddresses = []string{fc.lookupd}
	client, err := newHTTPClient(o)
	if err != nil {
		b.Fatal(err)
	}
	defer client.close()
	c := &cluster{client: client, options: func() *Options { return o }}
	var before, after runtime.MemStats
	for b.Loop() {
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := c.fetchSnapshot(b.Context())
		if len(s.errs) > 0 || len(s.producers) != scaleNodes {
			b.Fatalf("fetch: %d nodes, errors %v", len(s.producers), s.errs)
		}
		sm := newSampler(10 * time.Second)
		start := time.Now()
		for i := range chartPoints + 1 {
			shifted := *s
			shifted.taken = start.Add(time.Duration(i) * 10 * time.Second)
			sm.record(&shifted)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/(1<<20), "live-heap-MiB")
		runtime.KeepAlive(s)
		runtime.KeepAlive(sm)
	}
}
