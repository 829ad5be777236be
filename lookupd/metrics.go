package lookupd

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ternmq/tern/internal/version"
)

const metricsNamespace = "nsqlookupd"

// counters are the events the TCP side counts as they happen. The registry's state is read
// at scrape time by metricsCollector instead.
//
//	nsqlookupd_tcp_connections_total            counter  TCP connections accepted
//	nsqlookupd_tcp_commands_total{command}      counter  PING, IDENTIFY, REGISTER, UNREGISTER received
//	nsqlookupd_tcp_errors_total{code}           counter  errors sent, by NSQ code (each closed its connection)
//	nsqlookupd_tcp_idle_disconnects_total       counter  connections dropped for saying nothing
type counters struct {
	connections prometheus.Counter
	commands    *prometheus.CounterVec
	errors      *prometheus.CounterVec
	timeouts    prometheus.Counter
}

func newCounters() *counters {
	return &counters{
		connections: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "tcp_connections_total",
			Help: "TCP connections accepted.",
		}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "tcp_commands_total",
			Help: "V1 commands received, by command; unknown commands count as errors instead.",
		}, []string{"command"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "tcp_errors_total",
			Help: "Errors sent to TCP peers, by NSQ error code; each closed its connection.",
		}, []string{"code"}),
		timeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "tcp_idle_disconnects_total",
			Help: "TCP connections closed because the peer sent nothing for too long.",
		}),
	}
}

// command counts one command. The name is one of the four the protocol has, so the label's
// values are bounded.
func (c *counters) command(name string) { c.commands.WithLabelValues(name).Inc() }

// protocolError counts one error sent. Codes come from the fixed set the protocol sends.
func (c *counters) protocolError(code string) { c.errors.WithLabelValues(code).Inc() }

// registerMetrics registers the counters, the collector and the connection limiter on reg.
// The Go and process collectors are the caller's (main, or New when it makes the registry).
//
// The limiter's metrics (internal/connlimit), listener tcp or http:
//
//	nsqlookupd_connections_refused_total{listener,reason}  counter  connections refused, reason
//	                                                                 max_connections or
//	                                                                 max_connections_per_ip
//	nsqlookupd_connections_open{listener}                  gauge    open connections counted
//	                                                                 against --max-connections
//	nsqlookupd_connections_max                             gauge    --max-connections (0: unlimited)
func (l *Lookupd) registerMetrics(reg *prometheus.Registry) error {
	for _, c := range []prometheus.Collector{
		l.counters.connections, l.counters.commands, l.counters.errors, l.counters.timeouts,
		newMetricsCollector(l), l.limiter,
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("nsqlookupd metrics: %w", err)
		}
	}
	return nil
}

// metricsCollector exports the registry's state. It holds no series of its own: every scrape
// reads the registry once, so a deleted topic has no series from the next scrape on.
//
//	nsqlookupd_producers                 gauge  identified nsqd connections
//	nsqlookupd_active_producers          gauge  of those, the ones within --inactive-producer-timeout
//	nsqlookupd_topics                    gauge  topic registrations
//	nsqlookupd_channels                  gauge  channel registrations
//	nsqlookupd_tombstones                gauge  topic producers tombstoned within --tombstone-lifetime
//	nsqlookupd_topic_producers{topic}    gauge  producers GET /lookup returns for the topic
//	nsqlookupd_tcp_connections           gauge  open TCP connections, identified or not
//	nsqlookupd_build_info{version,tern_version}  gauge  always 1
type metricsCollector struct {
	l   *Lookupd
	all []*prometheus.Desc

	producers, activeProducers, topics, channels, tombstones, topicProducers,
	conns, buildInfo *prometheus.Desc
}

func newMetricsCollector(l *Lookupd) *metricsCollector {
	c := &metricsCollector{l: l}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		d := prometheus.NewDesc(prometheus.BuildFQName(metricsNamespace, "", name), help, labels, nil)
		c.all = append(c.all, d)
		return d
	}
	c.producers = desc("producers", "nsqd connections that have identified.")
	c.activeProducers = desc("active_producers",
		"Identified nsqd connections whose last IDENTIFY or PING is within --inactive-producer-timeout.")
	c.topics = desc("topics", "Topic registrations, with or without producers.")
	c.channels = desc("channels", "Channel registrations, with or without producers.")
	c.tombstones = desc("tombstones", "Topic producers tombstoned within --tombstone-lifetime.")
	c.topicProducers = desc("topic_producers",
		"Producers of the topic that GET /lookup returns: active and not tombstoned.", "topic")
	c.conns = desc("tcp_connections", "Open TCP connections, identified or not.")
	c.buildInfo = desc("build_info", "Always 1; the labels carry the versions.", "version", "tern_version")
	return c
}

// Describe implements prometheus.Collector.
func (c *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.all {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	opts := &c.l.opts
	st := c.l.db.stats(time.Now(), opts.InactiveProducerTimeout, opts.TombstoneLifetime)
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	gauge(c.producers, st.peers)
	gauge(c.activeProducers, st.activePeers)
	gauge(c.topics, st.topics)
	gauge(c.channels, st.channels)
	gauge(c.tombstones, st.tombstones)
	for topic, n := range st.topicProducers {
		gauge(c.topicProducers, n, topic)
	}
	gauge(c.conns, c.l.connCount())
	gauge(c.buildInfo, 1, version.Binary, version.Tern)
}
