package nsqd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/internal/version"
)

// metricsDaemon runs an nsqd in-process on 127.0.0.1:0 with a fresh data path, registering its
// metrics on reg (nil: New makes its own). Run is cancelled and awaited at cleanup.
func metricsDaemon(t *testing.T, reg *prometheus.Registry, mutate func(*Options)) *NSQD {
	t.Helper()
	n, _ := startTestDaemon(t, t.TempDir(), withHTTP(true, mutate), withRegistry(reg))
	return n
}

// metricSeries is a flattened scrape: "name{k="v",...}" to value, histograms as their _bucket (finite
// bounds), _count and _sum series.
type metricSeries map[string]float64

func seriesKey(name string, labels ...string) string {
	var pairs []string
	for i := 0; i+1 < len(labels); i += 2 {
		pairs = append(pairs, labels[i]+"="+strconv.Quote(labels[i+1]))
	}
	sort.Strings(pairs)
	return name + "{" + strings.Join(pairs, ",") + "}"
}

func (s metricSeries) add(name string, v float64, labels ...string) {
	s[seriesKey(name, labels...)] = v
}

// scrapeText GETs url and parses the body with the Prometheus text parser.
func scrapeText(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s %q", url, resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET %s: Content-Type %q, want the text format", url, ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return mfs
}

// flattenFamilies keeps the families whose names start with prefix.
func flattenFamilies(t *testing.T, mfs map[string]*dto.MetricFamily, prefix string) metricSeries {
	t.Helper()
	out := metricSeries{}
	for name, mf := range mfs {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName(), l.GetValue())
			}
			switch mf.GetType() {
			case dto.MetricType_GAUGE:
				out.add(name, m.GetGauge().GetValue(), labels...)
			case dto.MetricType_COUNTER:
				out.add(name, m.GetCounter().GetValue(), labels...)
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				out.add(name+"_count", float64(h.GetSampleCount()), labels...)
				out.add(name+"_sum", h.GetSampleSum(), labels...)
				for _, b := range h.GetBucket() {
					if math.IsInf(b.GetUpperBound(), 1) {
						continue
					}
					le := strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)
					out.add(name+"_bucket", float64(b.GetCumulativeCount()), append(labels, "le", le)...)
				}
			default:
				t.Errorf("%s: unexpected type %v", name, mf.GetType())
			}
		}
	}
	return out
}

// wantSeries is the specification of /metrics: what each field of a stats snapshot becomes.
func wantSeries(n *NSQD, r StatsReport, lat TimerLateness, clients, producers int, healthy bool) metricSeries {
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	want := metricSeries{}
	e2e := func(name string, count int, pcts []map[string]float64, labels ...string) {
		for _, p := range pcts {
			v := math.NaN()
			if count > 0 {
				v = p["value"] / 1e9
			}
			want.add(name, v, append(labels, "percentile", strconv.FormatFloat(p["quantile"], 'f', -1, 64))...)
		}
	}
	for _, t := range r.Topics {
		tl := []string{"topic", t.Name}
		want.add("nsqd_topic_depth", float64(t.Depth), tl...)
		want.add("nsqd_topic_backend_depth", float64(t.BackendDepth), tl...)
		want.add("nsqd_topic_messages_total", float64(t.MessageCount), tl...)
		want.add("nsqd_topic_message_bytes_total", float64(t.MessageBytes), tl...)
		want.add("nsqd_topic_storage_bytes", float64(t.StorageBytes), tl...)
		want.add("nsqd_topic_paused", b(t.Paused), tl...)
		want.add("nsqd_topic_channels", float64(len(t.Channels)), tl...)
		if l := t.E2eProcessingLatency; l != nil {
			e2e("nsqd_topic_e2e_processing_latency_seconds", l.Count, l.Percentiles, tl...)
		}
		want.add("nsqd_topic_quota_dropped_total", float64(t.DroppedCount), tl...)
		want.add("nsqd_topic_quota_refused_total", float64(t.RefusedCount), tl...)
		want.add("nsqd_topic_corrupt_records_total", float64(t.CorruptCount), tl...)
		if s := t.Settings; s != nil {
			want.add("nsqd_topic_message_ttl_seconds", float64(s.MessageTTLMs)/1e3, tl...)
			want.add("nsqd_topic_max_messages", float64(s.MaxMessages), tl...)
			want.add("nsqd_topic_max_bytes", float64(s.MaxBytes), tl...)
			want.add("nsqd_topic_retain_seconds", float64(s.RetainMs)/1e3, tl...)
			want.add("nsqd_topic_retain_bytes", float64(s.RetainBytes), tl...)
		}
		for _, c := range t.Channels {
			cl := []string{"topic", t.Name, "channel", c.Name}
			want.add("nsqd_channel_depth", float64(c.Depth), cl...)
			want.add("nsqd_channel_backend_depth", float64(c.BackendDepth), cl...)
			want.add("nsqd_channel_in_flight_messages", float64(c.InFlightCount), cl...)
			want.add("nsqd_channel_deferred_messages", float64(c.DeferredCount), cl...)
			want.add("nsqd_channel_messages_total", float64(c.MessageCount), cl...)
			want.add("nsqd_channel_requeues_total", float64(c.RequeueCount), cl...)
			want.add("nsqd_channel_timeouts_total", float64(c.TimeoutCount), cl...)
			want.add("nsqd_channel_finished_total", float64(c.FinishCount), cl...)
			want.add("nsqd_channel_clients", float64(c.ClientCount), cl...)
			want.add("nsqd_channel_paused", b(c.Paused), cl...)
			if l := c.E2eProcessingLatency; l != nil {
				e2e("nsqd_channel_e2e_processing_latency_seconds", l.Count, l.Percentiles, cl...)
			}
			want.add("nsqd_channel_expired_total", float64(c.ExpiredCount), cl...)
			want.add("nsqd_channel_dead_lettered_total", float64(c.DeadLetterCount), cl...)
			if s := c.Settings; s != nil && s.MessageTTLMs > 0 {
				want.add("nsqd_channel_message_ttl_seconds", float64(s.MessageTTLMs)/1e3, cl...)
			}
			if s := c.Settings; s != nil && s.MaxAttempts > 0 {
				want.add("nsqd_channel_max_attempts", float64(s.MaxAttempts), cl...)
			}
		}
	}
	want.add("nsqd_client_connections", float64(clients))
	want.add("nsqd_producer_connections", float64(producers))
	want.add("nsqd_healthy", b(healthy))
	want.add("nsqd_mem_queue_bytes", float64(n.memBudget.Used()))
	want.add("nsqd_mem_queue_limit_bytes", float64(n.getOpts().MemQueueBytes))
	want.add("nsqd_build_info", 1, "version", version.Binary, "tern_version", version.Tern)
	// The connection limiter's: nothing refused; every TCP connection is a client, and the
	// rest of the connections open are HTTP ones, the scrapes' own.
	want.add("nsqd_connections_max", float64(n.getOpts().MaxConnections))
	want.add("nsqd_connections_open", float64(clients), "listener", "tcp")
	want.add("nsqd_connections_open", float64(n.limiter.Open()-clients), "listener", "http")
	for _, listener := range []string{"tcp", "http"} {
		for _, reason := range []string{"max_connections", "max_connections_per_ip"} {
			want.add("nsqd_connections_refused_total", 0, "listener", listener, "reason", reason)
		}
	}
	var cum uint64
	for i, bound := range lat.Bounds {
		cum += lat.Buckets[i]
		le := strconv.FormatFloat(bound.Seconds(), 'g', -1, 64)
		want.add("nsqd_timer_lateness_seconds_bucket", float64(cum), "le", le)
	}
	want.add("nsqd_timer_lateness_seconds_count", float64(lat.Count))
	want.add("nsqd_timer_lateness_seconds_sum", lat.Sum.Seconds())
	want.add("nsqd_timer_lateness_max_seconds", lat.Max.Seconds())
	return want
}

// diffSeries lists every series missing, extra or with a different value (NaN equals NaN).
func diffSeries(got, want metricSeries) []string {
	var diffs []string
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("missing %s (want %v)", k, w))
		case g != w && !(math.IsNaN(g) && math.IsNaN(w)):
			diffs = append(diffs, fmt.Sprintf("%s = %v, want %v", k, g, w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("unexpected %s = %v", k, g))
		}
	}
	sort.Strings(diffs)
	return diffs
}

// metricsScenario drives a daemon into a state where most values are non-zero and differ from
// each other, so that a metric reading the wrong field shows, and leaves it quiet. It returns
// the number of TCP connections it holds open and the one subscribed to the ephemeral topic.
func metricsScenario(t *testing.T, n *NSQD) (conns int, ephemeralSub *rawConn) {
	t.Helper()
	addr := n.TCPAddr().String()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Topic A: c1 consumed with finishes, a delayed requeue and messages in flight; c2 paused
	// and untouched; c3 with a delivery that timed out and was finished on redelivery.
	_, err := n.CreateTopic("metrics_a")
	must(err)
	for _, c := range []string{"c1", "c2", "c3"} {
		_, err := n.CreateChannel("metrics_a", c)
		must(err)
	}
	must(n.PauseChannel("metrics_a", "c2", true))
	pub := dialRaw(t, addr)
	var bodies [][]byte
	for i := range 10 {
		bodies = append(bodies, []byte(strings.Repeat("x", i+1)))
	}
	mpub, err := protocol.MultiPublish("metrics_a", bodies)
	must(err)
	pub.send(mpub)
	pub.expectOK()

	c1 := dialRaw(t, addr)
	c1.send(protocol.Subscribe("metrics_a", "c1"))
	c1.expectOK()
	c1.send(protocol.Ready(3))
	m1, m2, m3 := c1.message(), c1.message(), c1.message()
	c1.send(protocol.Finish(m1.ID))
	c1.send(protocol.Finish(m2.ID))
	c1.send(protocol.Requeue(m3.ID, time.Hour))
	for range 3 {
		c1.message()
	}

	c3 := dialRawMsgTimeout(t, addr, time.Second)
	c3.send(protocol.Subscribe("metrics_a", "c3"))
	c3.expectOK()
	c3.send(protocol.Ready(1))
	first := c3.message()
	again := c3.message() // after the 1s msg_timeout
	if again.ID != first.ID || again.Attempts != 2 {
		t.Fatalf("c3: want %s redelivered with attempts 2, got %s attempts %d", first.ID, again.ID, again.Attempts)
	}
	c3.send(protocol.Ready(0))
	c3.send(protocol.Finish(again.ID))

	// Topic B: an ephemeral channel receiving a deferred message, which the timer releases.
	b := dialRaw(t, addr)
	b.send(protocol.Subscribe("metrics_b", "e#ephemeral"))
	b.expectOK()
	b.send(protocol.Ready(1))
	pub.send(protocol.DeferredPublish("metrics_b", 20*time.Millisecond, []byte("later")))
	pub.expectOK()
	b.send(protocol.Finish(b.message().ID))

	// An ephemeral topic with one undelivered message, and a paused topic with no channels.
	e := dialRaw(t, addr)
	e.send(protocol.Subscribe("metrics_c#ephemeral", "x#ephemeral"))
	e.expectOK()
	pub.send(protocol.Publish("metrics_c#ephemeral", []byte("kept")))
	pub.expectOK()
	_, err = n.CreateTopic("metrics_p")
	must(err)
	must(n.PauseTopic("metrics_p", true))

	// Topic X, with Tern's extensions: a message quota refuses a second publish, a channel
	// with a TTL of 1 ms expires the message, and one with max attempts 1 dead-letters it
	// when it is requeued.
	x, err := n.CreateTopic("metrics_x")
	must(err)
	_, err = x.UpdateSettings(TopicSettingsPatch{MaxMessages: ptr[int64](1), MaxBytes: ptr[int64](1 << 20),
		RetainMs: ptr[int64](60_000), RetainBytes: ptr[int64](1 << 20), MessageTTLMs: ptr[int64](3_600_000)})
	must(err)
	for _, c := range []string{"ttl", "dl"} {
		_, err := n.CreateChannel("metrics_x", c)
		must(err)
	}
	_, err = x.UpdateChannelSettings(x.Channel("ttl"), ChannelSettingsPatch{MessageTTLMs: ptr[int64](1)})
	must(err)
	_, err = x.UpdateChannelSettings(x.Channel("dl"), ChannelSettingsPatch{MaxAttempts: ptr(1)})
	must(err)
	pub.send(protocol.Publish("metrics_x", []byte("once")))
	pub.expectOK()
	pub.send(protocol.Publish("metrics_x", []byte("refused")))
	pub.expectError("E_PUB_FAILED")
	dl := dialRaw(t, addr)
	dl.send(protocol.Subscribe("metrics_x", "dl"))
	dl.expectOK()
	dl.send(protocol.Ready(1))
	dl.send(protocol.Requeue(dl.message().ID, 0))

	testutil.Eventually(t, 5*time.Second, func() bool {
		a, _ := n.ChannelStats("metrics_a", "c1")
		c, _ := n.ChannelStats("metrics_a", "c3")
		e, _ := n.ChannelStats("metrics_b", "e#ephemeral")
		xt, _ := n.ChannelStats("metrics_x", "ttl")
		xd, _ := n.ChannelStats("metrics_x", "dl")
		return a.FinishCount == 2 && a.DeferredCount == 1 && a.InFlightCount == 3 &&
			c.FinishCount == 1 && c.InFlightCount == 0 && e.FinishCount == 1 &&
			xt.ExpiredCount == 1 && xd.DeadLetterCount == 1
	}, "the scenario's FIN and REQ to take effect")
	return 6, e
}

// scrapeQuiet scrapes url between two identical snapshots of the daemon, so the scrape saw
// exactly that state, and returns both.
func scrapeQuiet(t *testing.T, n *NSQD, url string) (metricSeries, StatsReport, TimerLateness) {
	t.Helper()
	for range 5 {
		r, lat := n.StatsReport(StatsFilter{IncludeClients: true}), n.TimerLateness()
		got := flattenFamilies(t, scrapeText(t, url), "nsqd_")
		r2, lat2 := n.StatsReport(StatsFilter{IncludeClients: true}), n.TimerLateness()
		if reflect.DeepEqual(r, r2) && reflect.DeepEqual(lat, lat2) {
			return got, r, lat
		}
	}
	t.Fatal("the daemon did not hold still for a scrape")
	return nil, StatsReport{}, TimerLateness{}
}

func TestMetricsMatchStats(t *testing.T) {
	reg := prometheus.NewPedanticRegistry() // also checks Collect against Describe
	n := metricsDaemon(t, reg, func(o *Options) {
		o.E2EProcessingLatencyPercentiles = []float64{0.5, 0.99}
	})
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	t.Cleanup(srv.Close)

	conns, ephemeralSub := metricsScenario(t, n)
	got, r, lat := scrapeQuiet(t, n, srv.URL)
	want := wantSeries(n, r, lat, conns, len(r.Producers), n.Health() == nil)
	for _, d := range diffSeries(got, want) {
		t.Error(d)
	}

	// The values the scenario made must be there: a test comparing zeros with zeros proves
	// little.
	for _, k := range []string{
		seriesKey("nsqd_channel_in_flight_messages", "topic", "metrics_a", "channel", "c1"),
		seriesKey("nsqd_channel_deferred_messages", "topic", "metrics_a", "channel", "c1"),
		seriesKey("nsqd_channel_requeues_total", "topic", "metrics_a", "channel", "c1"),
		seriesKey("nsqd_channel_finished_total", "topic", "metrics_a", "channel", "c1"),
		seriesKey("nsqd_channel_timeouts_total", "topic", "metrics_a", "channel", "c3"),
		seriesKey("nsqd_channel_paused", "topic", "metrics_a", "channel", "c2"),
		seriesKey("nsqd_channel_depth", "topic", "metrics_a", "channel", "c2"),
		seriesKey("nsqd_channel_clients", "topic", "metrics_b", "channel", "e#ephemeral"),
		seriesKey("nsqd_channel_depth", "topic", "metrics_c#ephemeral", "channel", "x#ephemeral"),
		seriesKey("nsqd_topic_paused", "topic", "metrics_p"),
		seriesKey("nsqd_topic_quota_refused_total", "topic", "metrics_x"),
		seriesKey("nsqd_channel_expired_total", "topic", "metrics_x", "channel", "ttl"),
		seriesKey("nsqd_channel_dead_lettered_total", "topic", "metrics_x", "channel", "dl"),
		seriesKey("nsqd_channel_max_attempts", "topic", "metrics_x", "channel", "dl"),
		seriesKey("nsqd_topic_retain_bytes", "topic", "metrics_x"),
		seriesKey("nsqd_topic_messages_total", "topic", "metrics_a"),
		seriesKey("nsqd_topic_message_bytes_total", "topic", "metrics_a"),
		seriesKey("nsqd_topic_storage_bytes", "topic", "metrics_a"),
		seriesKey("nsqd_channel_e2e_processing_latency_seconds", "topic", "metrics_a", "channel", "c1", "percentile", "0.99"),
		seriesKey("nsqd_topic_e2e_processing_latency_seconds", "topic", "metrics_a", "percentile", "0.5"),
		"nsqd_timer_lateness_seconds_count{}",
		"nsqd_timer_lateness_max_seconds{}",
		"nsqd_producer_connections{}",
		"nsqd_client_connections{}",
		"nsqd_healthy{}",
	} {
		if v := got[k]; !(v > 0) {
			t.Errorf("%s = %v, want > 0", k, v)
		}
	}
	if v, ok := got[seriesKey("nsqd_channel_e2e_processing_latency_seconds", "topic", "metrics_a", "channel", "c2", "percentile", "0.5")]; !ok || !math.IsNaN(v) {
		t.Errorf("latency of a channel with nothing finished = %v (present %v), want NaN", v, ok)
	}

	t.Run("promlint", func(t *testing.T) { testutil.Promlint(t, reg, newMetricsCollector(n)) })

	t.Run("deleted topic leaves no series", func(t *testing.T) {
		if err := n.DeleteTopic("metrics_a"); err != nil {
			t.Fatal(err)
		}
		got := flattenFamilies(t, scrapeText(t, srv.URL), "nsqd_")
		for k := range got {
			if strings.Contains(k, `topic="metrics_a"`) {
				t.Errorf("series of the deleted topic: %s", k)
			}
		}
		if _, ok := got[seriesKey("nsqd_topic_depth", "topic", "metrics_b")]; !ok {
			t.Error("series of the other topics went too")
		}
	})

	t.Run("ephemeral topic goes with its last client", func(t *testing.T) {
		key := seriesKey("nsqd_topic_depth", "topic", "metrics_c#ephemeral")
		if _, ok := flattenFamilies(t, scrapeText(t, srv.URL), "nsqd_")[key]; !ok {
			t.Fatalf("%s missing before the client left", key)
		}
		ephemeralSub.Close()
		testutil.Eventually(t, 5*time.Second, func() bool {
			for k := range flattenFamilies(t, scrapeText(t, srv.URL), "nsqd_") {
				if strings.Contains(k, "metrics_c#ephemeral") {
					return false
				}
			}
			return true
		}, "series of the ephemeral topic to go")
	})
}

// TestMetricsServedByDaemon scrapes the daemon's own GET /metrics, which must carry the Go and
// process collectors New registers on a registry it makes, and agree with GET /stats.
func TestMetricsServedByDaemon(t *testing.T) {
	n := metricsDaemon(t, nil, nil)
	base := "http://" + n.HTTPAddr().String()
	pub := dialRaw(t, n.TCPAddr().String())
	pub.send(protocol.Publish("served", []byte("hello")))
	pub.expectOK()
	if _, err := n.CreateChannel("served", "ch"); err != nil {
		t.Fatal(err)
	}

	mfs := scrapeText(t, base+"/metrics")
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "nsqd_topic_depth"} {
		if mfs[name] == nil {
			t.Errorf("%s missing from GET /metrics", name)
		}
	}
	got, r, lat := scrapeQuiet(t, n, base+"/metrics")
	for _, d := range diffSeries(got, wantSeries(n, r, lat, 1, len(r.Producers), true)) {
		t.Error(d)
	}

	// What GET /stats says, for the metrics it carries.
	resp, err := http.Get(base + "/stats?format=json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var fromHTTP StatsReport
	if err := json.NewDecoder(resp.Body).Decode(&fromHTTP); err != nil {
		t.Fatalf("decode /stats: %v", err)
	}
	if len(fromHTTP.Topics) != 1 || len(fromHTTP.Topics[0].Channels) != 1 {
		t.Fatalf("/stats has %+v, want topic served with channel ch", fromHTTP.Topics)
	}
	inJSON := regexp.MustCompile(`^nsqd_(topic_(depth|backend_depth|messages_total|message_bytes_total|paused|channels)|` +
		`channel_(depth|backend_depth|in_flight_messages|deferred_messages|messages_total|requeues_total|timeouts_total|clients|paused)){`)
	checked := 0
	for k, w := range wantSeries(n, fromHTTP, lat, 1, 1, true) {
		if !inJSON.MatchString(k) {
			continue
		}
		checked++
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("/metrics %s = %v (present %v), /stats says %v", k, g, ok, w)
		}
	}
	if checked != 15 {
		t.Errorf("compared %d series with /stats, want 15", checked)
	}
}

// TestMetricsScrapeUnderTraffic scrapes while topics are published to, consumed, created and
// deleted, for the race detector and for scrapes that must never fail.
func TestMetricsScrapeUnderTraffic(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	n := metricsDaemon(t, reg, func(o *Options) { o.E2EProcessingLatencyPercentiles = []float64{0.9} })
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	var rounds atomic.Int64
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			topic := fmt.Sprintf("busy_%d", i%4)
			if err := n.Publish(topic, [][]byte{[]byte("x")}, 0); err != nil {
				t.Errorf("publish: %v", err)
				return
			}
			if _, err := n.CreateChannel(topic, "ch"); err != nil {
				t.Errorf("create channel: %v", err)
				return
			}
			if i%7 == 0 {
				_ = n.DeleteTopic(topic)
			}
			rounds.Add(1)
		}
	})
	// Scrape until the writer has gone round often enough for the two to overlap.
	for scrapes := 0; scrapes < 50 || rounds.Load() < 200; scrapes++ {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatalf("gather: %v", err)
		}
		if !slices.ContainsFunc(mfs, func(mf *dto.MetricFamily) bool { return mf.GetName() == "nsqd_healthy" }) {
			t.Fatal("nsqd_healthy missing")
		}
		if scrapes > 100000 {
			t.Fatalf("the writer made only %d rounds", rounds.Load())
		}
	}
}

// BenchmarkMetricsCollect measures one scrape of 100 topics with 10 channels each.
func BenchmarkMetricsCollect(b *testing.B) {
	reg := prometheus.NewRegistry()
	opts := NewOptions()
	opts.TCPAddress = "127.0.0.1:0"
	opts.HTTPAddress = ""
	opts.DataPath = b.TempDir()
	opts.NodeID = 1
	opts.E2EProcessingLatencyPercentiles = []float64{0.5, 0.99}
	n, err := New(opts, testutil.Logger(b), reg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		n.closeListeners()
		_ = n.closeTopics()
		n.unlock()
	})
	for i := range 100 {
		topic := fmt.Sprintf("t%03d", i)
		if err := n.Publish(topic, [][]byte{[]byte("x")}, 0); err != nil {
			b.Fatal(err)
		}
		for j := range 10 {
			if _, err := n.CreateChannel(topic, fmt.Sprintf("c%d", j)); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
