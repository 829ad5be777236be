package admin

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const metricsNamespace = "nsqadmin"

// adminMetrics are the admin's own metrics, served on its /metrics with the Go and process
// collectors. The cluster's metrics are the daemons' own: each nsqd and lookupd serves them.
//
//	nsqadmin_cluster_fetch_duration_seconds      histogram  time to read the whole cluster once
//	nsqadmin_cluster_fetch_errors_total{daemon}  counter    daemons that failed a fetch, by kind
//	nsqadmin_cluster_nodes                       gauge      nsqd nodes found by the last fetch
//	nsqadmin_cluster_nodes_unanswered            gauge      of those, nodes whose /stats failed
type adminMetrics struct {
	duration   prometheus.Histogram
	errs       *prometheus.CounterVec
	nodes      prometheus.Gauge
	unanswered prometheus.Gauge
}

func newAdminMetrics() *adminMetrics {
	return &adminMetrics{
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "cluster_fetch_duration_seconds",
			Help:    "Time to read the whole cluster once: every lookupd's nodes and every nsqd's stats.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "cluster_fetch_errors_total",
			Help: "Daemons that failed to answer a fetch of the whole cluster, by kind (nsqd or nsqlookupd).",
		}, []string{"daemon"}),
		nodes: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "cluster_nodes",
			Help: "nsqd nodes found by the last fetch of the cluster.",
		}),
		unanswered: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "cluster_nodes_unanswered",
			Help: "nsqd nodes whose /stats failed in the last fetch of the cluster.",
		}),
	}
}

func (m *adminMetrics) observeFetch(d time.Duration, s *snapshot) {
	m.duration.Observe(d.Seconds())
	m.nodes.Set(float64(len(s.producers)))
	m.unanswered.Set(float64(len(s.nodeErrs)))
	for _, err := range s.errs {
		if errors.Is(err, errDeparted) {
			continue // a node that left is not a failed fetch
		}
		var de *daemonError
		if errors.As(err, &de) {
			m.errs.WithLabelValues(de.kind).Inc()
		}
	}
}

// Describe implements prometheus.Collector.
func (m *adminMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.duration.Describe(ch)
	m.errs.Describe(ch)
	m.nodes.Describe(ch)
	m.unanswered.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *adminMetrics) Collect(ch chan<- prometheus.Metric) {
	m.duration.Collect(ch)
	m.errs.Collect(ch)
	m.nodes.Collect(ch)
	m.unanswered.Collect(ch)
}
