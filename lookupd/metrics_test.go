package lookupd

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ternmq/tern/internal/connlimit"
	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/testutil"
)

// scrape GETs /metrics, parses it with the Prometheus text parser and returns every
// nsqlookupd_ series as "name{label=value,...}" -> value, plus the families.
func scrape(t *testing.T, l *Lookupd) (map[string]float64, map[string]*dto.MetricFamily) {
	t.Helper()
	resp, err := http.Get("http://" + l.HTTPAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("/metrics Content-Type %q, want the text format", ct)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, mf := range mfs {
		if !strings.HasPrefix(name, metricsNamespace+"_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName()+"="+lp.GetValue())
			}
			key := name + "{" + strings.Join(labels, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			}
		}
	}
	return out, mfs
}

func TestMetrics(t *testing.T) {
	l := startLookupd(t, nil)
	a := registerPeer(t, l, 4150, 4151, "orders/archive", "orders/billing", "events")
	registerPeer(t, l, 4250, 4251, "orders")
	a.expectOK(protocol.Ping())
	httpDo(t, l, "POST", "/topic/create?topic=empty")
	httpDo(t, l, "POST", "/topic/tombstone?topic=orders&node=127.0.0.1:4151")
	bad := connect(t, l)
	bad.write([]byte("NOPE\n"))
	bad.mustRead()
	bad.expectClosed()
	// lookupd reads what a peer sends after an error until it closes (lingerClose); once it
	// has, the connection is gone.
	_ = bad.conn.Close()
	var got map[string]float64
	testutil.Eventually(t, ioTimeout, func() bool {
		got, _ = scrape(t, l)
		return got["nsqlookupd_tcp_connections{}"] == 2 && got["nsqlookupd_connections_open{listener=tcp}"] == 2
	}, "the closed connection is still counted")
	// The HTTP connections open are the test's keep-alive connections, however many the
	// client pool holds.
	delete(got, "nsqlookupd_connections_open{listener=http}")
	want := map[string]float64{
		"nsqlookupd_producers{}":                                  2,
		"nsqlookupd_active_producers{}":                           2,
		"nsqlookupd_topics{}":                                     3,
		"nsqlookupd_channels{}":                                   2,
		"nsqlookupd_tombstones{}":                                 1,
		"nsqlookupd_topic_producers{topic=orders}":                1,
		"nsqlookupd_topic_producers{topic=events}":                1,
		"nsqlookupd_topic_producers{topic=empty}":                 0,
		"nsqlookupd_tcp_connections{}":                            2,
		"nsqlookupd_tcp_connections_total{}":                      3,
		"nsqlookupd_tcp_commands_total{command=IDENTIFY}":         2,
		"nsqlookupd_tcp_commands_total{command=REGISTER}":         4,
		"nsqlookupd_tcp_commands_total{command=PING}":             1,
		"nsqlookupd_tcp_errors_total{code=E_INVALID}":             1,
		"nsqlookupd_tcp_idle_disconnects_total{}":                 0,
		"nsqlookupd_build_info{tern_version=0.1.0,version=1.3.0}": 1,

		"nsqlookupd_connections_open{listener=tcp}":                                         2,
		"nsqlookupd_connections_max{}":                                                      float64(connlimit.DefaultMax()),
		"nsqlookupd_connections_refused_total{listener=tcp,reason=max_connections}":         0,
		"nsqlookupd_connections_refused_total{listener=tcp,reason=max_connections_per_ip}":  0,
		"nsqlookupd_connections_refused_total{listener=http,reason=max_connections}":        0,
		"nsqlookupd_connections_refused_total{listener=http,reason=max_connections_per_ip}": 0,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected series %s", k)
		}
	}

	// A deleted topic leaves no series behind.
	httpDo(t, l, "POST", "/topic/delete?topic=events")
	got, _ = scrape(t, l)
	if _, ok := got["nsqlookupd_topic_producers{topic=events}"]; ok {
		t.Error("the deleted topic still has a series")
	}

	t.Run("promlint", func(t *testing.T) { testutil.Promlint(t, l.registry, newMetricsCollector(l)) })

}

func TestMetricsOwnRegistry(t *testing.T) {
	l := startLookupd(t, nil)
	_, mfs := scrape(t, l)
	// With no registry passed, lookupd makes its own with the Go and process collectors.
	if _, ok := mfs["go_goroutines"]; !ok {
		t.Error("no go_goroutines in /metrics")
	}
}

func TestMetricsSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := NewOptions()
	opts.TCPAddress, opts.HTTPAddress = "127.0.0.1:0", "127.0.0.1:0"
	l, err := New(opts, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	_ = l.tcpListener.Close()
	_ = l.httpListener.Close()
	// A second daemon on the same registry collides, and New says so rather than panicking.
	if _, err := New(opts, nil, reg); err == nil || !strings.Contains(err.Error(), "register metrics") {
		t.Fatalf("second New on the same registry: %v", err)
	}
}
