package nsqd

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ternmq/tern/internal/quantile"
	"github.com/ternmq/tern/internal/version"
)

// registerMetrics registers the daemon's collector and its connection limiter on reg. The
// Go and process collectors are the caller's (main, or New when it makes the registry).
//
// The limiter's metrics (internal/connlimit), listener one of tcp, http and https:
//
//	nsqd_connections_refused_total{listener,reason}  counter  connections refused, reason
//	                                                           max_connections or
//	                                                           max_connections_per_ip
//	nsqd_connections_open{listener}                  gauge    open connections counted against
//	                                                           --max-connections
//	nsqd_connections_max                             gauge    --max-connections (0: unlimited)
func (n *NSQD) registerMetrics(reg *prometheus.Registry) error {
	if err := reg.Register(newMetricsCollector(n)); err != nil {
		return fmt.Errorf("nsqd collector: %w", err)
	}
	if err := reg.Register(n.limiter); err != nil {
		reg.Unregister(newMetricsCollector(n))
		return fmt.Errorf("nsqd connection limiter: %w", err)
	}
	return nil
}

// metricsCollector exports the daemon's state to Prometheus. It holds no series of its own:
// every scrape reads one StatsReport snapshot and turns it into constant metrics, so a deleted
// topic or channel has no series from the next scrape on, and /metrics agrees with /stats.
//
// The metrics (all under namespace nsqd; labels topic and channel carry the names verbatim,
// "#ephemeral" suffix included; counters restart from zero when a topic is re-created):
//
//	nsqd_topic_depth{topic}                      gauge    messages not yet taken by every channel (NSQ depth)
//	nsqd_topic_backend_depth{topic}              gauge    the part of depth only on disk
//	nsqd_topic_messages_total{topic}             counter  messages published
//	nsqd_topic_message_bytes_total{topic}        counter  body bytes published
//	nsqd_topic_storage_bytes{topic}              gauge    size of the topic log (memory for ephemeral)
//	nsqd_topic_paused{topic}                     gauge    1 while paused
//	nsqd_topic_channels{topic}                   gauge    number of channels
//	nsqd_topic_e2e_processing_latency_seconds{topic,percentile}
//	                                             gauge    publish-to-FIN latency merged over channels
//	nsqd_channel_depth{topic,channel}            gauge    messages waiting for delivery
//	nsqd_channel_backend_depth{topic,channel}    gauge    the part of depth only on disk
//	nsqd_channel_in_flight_messages{...}         gauge    delivered, not yet finished
//	nsqd_channel_deferred_messages{...}          gauge    waiting for a deferral or requeue delay
//	nsqd_channel_messages_total{...}             counter  messages routed into the channel
//	nsqd_channel_requeues_total{...}             counter  REQs
//	nsqd_channel_timeouts_total{...}             counter  deliveries that timed out
//	nsqd_channel_finished_total{...}             counter  deliveries completed with FIN
//	nsqd_channel_clients{...}                    gauge    subscribed connections
//	nsqd_channel_paused{...}                     gauge    1 while paused
//	nsqd_channel_e2e_processing_latency_seconds{topic,channel,percentile}
//	                                             gauge    publish-to-FIN latency
//	nsqd_client_connections                      gauge    open TCP (V2) connections
//	nsqd_producer_connections                    gauge    of those, the ones that have published
//	nsqd_healthy                                 gauge    1 while storage works (GET /ping says OK)
//	nsqd_mem_queue_bytes                         gauge    bytes of messages the topics hold in memory
//	nsqd_mem_queue_limit_bytes                   gauge    the bound on that (--mem-queue-bytes)
//	nsqd_build_info{version,tern_version}        gauge    always 1
//	nsqd_timer_lateness_seconds                  histogram how late timer-released messages
//	                                                       (deferred, delayed requeues, timeouts)
//	                                                       were written to their client
//	nsqd_timer_lateness_max_seconds              gauge    the largest such lateness so far
//
// The e2e latency is a percentile over NSQ's rolling window (--e2e-processing-latency-
// window-time), one series per --e2e-processing-latency-percentile, NaN while the window is
// empty, and absent unless percentiles are configured. It is not a Prometheus summary: there is
// no cumulative count or sum to go with it, and promlint reserves the "quantile" label for
// summaries, hence "percentile" (valued as the flag is, "0.99").
type metricsCollector struct {
	n   *NSQD
	all []*prometheus.Desc

	topicDepth, topicBackendDepth, topicMessages, topicMessageBytes, topicStorageBytes,
	topicPaused, topicChannels, topicE2E *prometheus.Desc

	channelDepth, channelBackendDepth, channelInFlight, channelDeferred, channelMessages,
	channelRequeues, channelTimeouts, channelFinished, channelClients, channelPaused,
	channelE2E *prometheus.Desc

	// Tern's extensions (settings.go): counters always, settings only where set.
	topicDropped, topicRefused, topicCorrupt, topicTTL, topicMaxMessages, topicMaxBytes, topicRetain, topicRetainBytes *prometheus.Desc
	channelExpired, channelDead, channelTTL, channelMaxAttempts                                                        *prometheus.Desc

	clientConns, producerConns, healthy, memQueue, memQueueLimit, buildInfo, lateness, latenessMax *prometheus.Desc
}

func newMetricsCollector(n *NSQD) *metricsCollector {
	c := &metricsCollector{n: n}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		d := prometheus.NewDesc(prometheus.BuildFQName("nsqd", "", name), help, labels, nil)
		c.all = append(c.all, d)
		return d
	}
	topic := []string{"topic"}
	topicPct := []string{"topic", "percentile"}
	channel := []string{"topic", "channel"}
	channelPct := []string{"topic", "channel", "percentile"}

	c.topicDepth = desc("topic_depth",
		"Messages of the topic not yet taken by all of its channels (NSQ's depth).", topic...)
	c.topicBackendDepth = desc("topic_backend_depth",
		"The part of the topic's depth held only on disk, beyond --mem-queue-size.", topic...)
	c.topicMessages = desc("topic_messages_total", "Messages published to the topic.", topic...)
	c.topicMessageBytes = desc("topic_message_bytes_total",
		"Body bytes of the messages published to the topic.", topic...)
	c.topicStorageBytes = desc("topic_storage_bytes",
		"Size of the topic's log on disk, or in memory for an ephemeral topic.", topic...)
	c.topicPaused = desc("topic_paused", "1 while the topic is paused, else 0.", topic...)
	c.topicChannels = desc("topic_channels", "Channels of the topic.", topic...)
	c.topicE2E = desc("topic_e2e_processing_latency_seconds",
		"Publish-to-FIN latency percentile over the e2e window, merged over the topic's channels; NaN while the window is empty.",
		topicPct...)

	c.channelDepth = desc("channel_depth", "Messages of the channel waiting for delivery.", channel...)
	c.channelBackendDepth = desc("channel_backend_depth",
		"The part of the channel's depth held only on disk, beyond --mem-queue-size.", channel...)
	c.channelInFlight = desc("channel_in_flight_messages",
		"Messages delivered on the channel and not yet finished, requeued or timed out.", channel...)
	c.channelDeferred = desc("channel_deferred_messages",
		"Messages of the channel waiting for a deferral or a requeue delay to pass.", channel...)
	c.channelMessages = desc("channel_messages_total",
		"Messages routed into the channel by its topic, delivered or not (NSQ's message_count).", channel...)
	c.channelRequeues = desc("channel_requeues_total", "Messages requeued on the channel (REQ).", channel...)
	c.channelTimeouts = desc("channel_timeouts_total",
		"Deliveries on the channel that timed out before FIN, REQ or TOUCH.", channel...)
	c.channelFinished = desc("channel_finished_total",
		"Deliveries on the channel completed with FIN.", channel...)
	c.channelClients = desc("channel_clients", "Connections subscribed to the channel.", channel...)
	c.channelPaused = desc("channel_paused", "1 while the channel is paused, else 0.", channel...)
	c.channelE2E = desc("channel_e2e_processing_latency_seconds",
		"Publish-to-FIN latency percentile of the channel over the e2e window; NaN while the window is empty.",
		channelPct...)

	c.topicDropped = desc("topic_quota_dropped_total",
		"Messages of the topic dropped by its drop_oldest quota.", topic...)
	c.topicRefused = desc("topic_quota_refused_total", "Messages whose publish the topic's quota refused.", topic...)
	c.topicCorrupt = desc("topic_corrupt_records_total",
		"Stored records of the topic found damaged (a failed checksum, an unreadable segment's rest): skipped, never delivered. Above 0 means the disk damaged data.",
		topic...)
	c.topicTTL = desc("topic_message_ttl_seconds", "The topic's message TTL, where set.", topic...)
	c.topicMaxMessages = desc("topic_max_messages", "The topic's message quota, where set.", topic...)
	c.topicMaxBytes = desc("topic_max_bytes", "The topic's byte quota, where set.", topic...)
	c.topicRetain = desc("topic_retain_seconds", "How long the topic retains consumed messages, where set.", topic...)
	c.topicRetainBytes = desc("topic_retain_bytes", "How many bytes of consumed messages the topic retains, where set.", topic...)
	c.channelExpired = desc("channel_expired_total", "Messages of the channel that outlived their TTL.", channel...)
	c.channelDead = desc("channel_dead_lettered_total",
		"Messages of the channel moved to its dead-letter topic.", channel...)
	c.channelTTL = desc("channel_message_ttl_seconds", "The channel's own message TTL, where set.", channel...)
	c.channelMaxAttempts = desc("channel_max_attempts", "The channel's max attempts, where set.", channel...)

	c.clientConns = desc("client_connections", "Open TCP (V2 protocol) connections.")
	c.producerConns = desc("producer_connections",
		"Open TCP connections that have published (NSQ's producers).")
	c.healthy = desc("healthy", "1 while the daemon's storage works (GET /ping answers OK), else 0.")
	c.memQueue = desc("mem_queue_bytes",
		"Bytes of messages the topics hold in memory (their hot tails and ephemeral topics), counted against --mem-queue-bytes.")
	c.memQueueLimit = desc("mem_queue_limit_bytes", "The bound on what the topics hold in memory, --mem-queue-bytes.")
	c.buildInfo = desc("build_info",
		"Always 1; version is the NSQ release Tern is compatible with, tern_version Tern's own.",
		"version", "tern_version")
	c.lateness = desc("timer_lateness_seconds",
		"How late messages released by a timer (deferred, delayed requeues, timeouts) were written to their client.")
	c.latenessMax = desc("timer_lateness_max_seconds",
		"The largest lateness of a timer-released message since the daemon started.")
	return c
}

// Describe sends every descriptor the collector uses.
func (c *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.all {
		ch <- d
	}
}

// Collect takes one stats snapshot and sends it as constant metrics.
func (c *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.n.StatsReport(StatsFilter{})
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	type channelRow struct {
		topic string
		cs    *ChannelStats
	}
	rows := make([]channelRow, 0, len(r.Topics))
	for _, t := range r.Topics {
		gauge(c.topicDepth, float64(t.Depth), t.Name)
		gauge(c.topicBackendDepth, float64(t.BackendDepth), t.Name)
		counter(c.topicMessages, t.MessageCount, t.Name)
		counter(c.topicMessageBytes, t.MessageBytes, t.Name)
		gauge(c.topicStorageBytes, float64(t.StorageBytes), t.Name)
		gauge(c.topicPaused, boolFloat(t.Paused), t.Name)
		gauge(c.topicChannels, float64(len(t.Channels)), t.Name)
		sendLatency(ch, c.topicE2E, t.E2eProcessingLatency, t.Name)
		counter(c.topicDropped, t.DroppedCount, t.Name)
		counter(c.topicRefused, t.RefusedCount, t.Name)
		counter(c.topicCorrupt, t.CorruptCount, t.Name)
		if s := t.Settings; s != nil {
			for _, v := range []struct {
				d *prometheus.Desc
				v float64
			}{
				{c.topicTTL, float64(s.MessageTTLMs) / 1e3}, {c.topicMaxMessages, float64(s.MaxMessages)},
				{c.topicMaxBytes, float64(s.MaxBytes)}, {c.topicRetain, float64(s.RetainMs) / 1e3},
				{c.topicRetainBytes, float64(s.RetainBytes)},
			} {
				if v.v > 0 {
					gauge(v.d, v.v, t.Name)
				}
			}
		}
		for i := range t.Channels {
			rows = append(rows, channelRow{t.Name, &t.Channels[i]})
		}
	}
	// The registry sorts each family's series by their label values, taken in the order of
	// the label names: channel, then topic. Sent in that order (the topics come sorted, and
	// a stable sort by channel keeps them so), the sort finds them sorted; in topic order, it
	// was a third of a scrape at 10,000 topics.
	slices.SortStableFunc(rows, func(a, b channelRow) int { return cmp.Compare(a.cs.Name, b.cs.Name) })
	for _, row := range rows {
		topic, cs := row.topic, row.cs
		gauge(c.channelDepth, float64(cs.Depth), topic, cs.Name)
		gauge(c.channelBackendDepth, float64(cs.BackendDepth), topic, cs.Name)
		gauge(c.channelInFlight, float64(cs.InFlightCount), topic, cs.Name)
		gauge(c.channelDeferred, float64(cs.DeferredCount), topic, cs.Name)
		counter(c.channelMessages, cs.MessageCount, topic, cs.Name)
		counter(c.channelRequeues, cs.RequeueCount, topic, cs.Name)
		counter(c.channelTimeouts, cs.TimeoutCount, topic, cs.Name)
		counter(c.channelFinished, cs.FinishCount, topic, cs.Name)
		gauge(c.channelClients, float64(cs.ClientCount), topic, cs.Name)
		gauge(c.channelPaused, boolFloat(cs.Paused), topic, cs.Name)
		sendLatency(ch, c.channelE2E, cs.E2eProcessingLatency, topic, cs.Name)
		counter(c.channelExpired, cs.ExpiredCount, topic, cs.Name)
		counter(c.channelDead, cs.DeadLetterCount, topic, cs.Name)
		if s := cs.Settings; s != nil {
			if s.MessageTTLMs > 0 {
				gauge(c.channelTTL, float64(s.MessageTTLMs)/1e3, topic, cs.Name)
			}
			if s.MaxAttempts > 0 {
				gauge(c.channelMaxAttempts, float64(s.MaxAttempts), topic, cs.Name)
			}
		}
	}

	clients, producers := c.n.connectionCounts()
	gauge(c.clientConns, float64(clients))
	gauge(c.producerConns, float64(producers))
	gauge(c.healthy, boolFloat(c.n.Health() == nil))
	gauge(c.memQueue, float64(c.n.memBudget.Used()))
	gauge(c.memQueueLimit, float64(c.n.memBudget.Limit()))
	gauge(c.buildInfo, 1, version.Binary, version.Tern)

	lat := c.n.TimerLateness()
	buckets := make(map[float64]uint64, len(lat.Bounds))
	var cum uint64
	for i, b := range lat.Bounds {
		cum += lat.Buckets[i]
		buckets[b.Seconds()] = cum
	}
	ch <- prometheus.MustNewConstHistogram(c.lateness, lat.Count, lat.Sum.Seconds(), buckets)
	gauge(c.latenessMax, lat.Max.Seconds())
}

// sendLatency sends one series per configured percentile; r is nil when none are configured.
// Values in r are nanoseconds.
func sendLatency(ch chan<- prometheus.Metric, d *prometheus.Desc, r *quantile.Result, labels ...string) {
	if r == nil {
		return
	}
	for _, p := range r.Percentiles {
		v := math.NaN()
		if r.Count > 0 {
			v = p["value"] / 1e9
		}
		pct := strconv.FormatFloat(p["quantile"], 'f', -1, 64)
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append(labels, pct)...)
	}
}

// connectionCounts returns how many V2 connections are open and how many of them have
// published. It counts under clientsMu without building per-client stats, so a scrape costs
// nothing per connection but the loop.
func (n *NSQD) connectionCounts() (clients, producers int) {
	n.clientsMu.Lock()
	defer n.clientsMu.Unlock()
	for _, c := range n.clients {
		if c.published.Load() {
			producers++
		}
	}
	return len(n.clients), producers
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
