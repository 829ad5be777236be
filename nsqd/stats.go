package nsqd

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/ternmq/tern/internal/quantile"
	"github.com/ternmq/tern/internal/version"
)

// StatsReport is what GET /stats?format=json returns, field for field NSQ 1.3's shape, so
// NSQ's nsqadmin and exporters read it unchanged. /metrics is built from the same snapshot.
type StatsReport struct {
	Version   string        `json:"version"`
	Health    string        `json:"health"`
	StartTime int64         `json:"start_time"`
	Topics    []TopicStats  `json:"topics"`
	Memory    *MemStats     `json:"memory,omitempty"`
	Producers []ClientStats `json:"producers"`
}

// TopicStats is a snapshot of one topic.
type TopicStats struct {
	Name         string         `json:"topic_name"`
	Channels     []ChannelStats `json:"channels"`
	Depth        int64          `json:"depth"`
	BackendDepth int64          `json:"backend_depth"`
	MessageCount uint64         `json:"message_count"`
	MessageBytes uint64         `json:"message_bytes"`
	Paused       bool           `json:"paused"`
	// E2eProcessingLatency merges the channels' publish-to-FIN latency.
	E2eProcessingLatency *quantile.Result `json:"e2e_processing_latency"`

	// Tern's extensions, absent while unused, so that NSQ's readers see NSQ's shape.
	Settings     *TopicSettings `json:"settings,omitempty"`
	DroppedCount uint64         `json:"dropped_count,omitempty"` // dropped by a drop_oldest quota
	RefusedCount uint64         `json:"refused_count,omitempty"` // publishes refused by a quota
	// CorruptCount is how many stored records were found damaged (failed checksums, records
	// lost with an unreadable segment): they are skipped, never delivered.
	CorruptCount uint64 `json:"corrupt_count,omitempty"`

	// StorageBytes is the size of the topic's log on disk (memory for an ephemeral topic).
	// Not in NSQ's JSON; reported by /metrics.
	StorageBytes int64 `json:"-"`
	// Ephemeral is true for a #ephemeral topic (statsd may leave those out).
	Ephemeral bool `json:"-"`
}

// ChannelStats is a snapshot of one channel.
type ChannelStats struct {
	Name                 string           `json:"channel_name"`
	Depth                int64            `json:"depth"`
	BackendDepth         int64            `json:"backend_depth"`
	InFlightCount        int              `json:"in_flight_count"`
	DeferredCount        int              `json:"deferred_count"`
	MessageCount         uint64           `json:"message_count"`
	RequeueCount         uint64           `json:"requeue_count"`
	TimeoutCount         uint64           `json:"timeout_count"`
	ClientCount          int              `json:"client_count"`
	Clients              []ClientStats    `json:"clients"`
	Paused               bool             `json:"paused"`
	E2eProcessingLatency *quantile.Result `json:"e2e_processing_latency"`

	// Tern's extensions, absent while unused.
	Settings        *ChannelSettings `json:"settings,omitempty"`
	ExpiredCount    uint64           `json:"expired_count,omitempty"`
	DeadLetterCount uint64           `json:"dead_letter_count,omitempty"`

	// FinishCount counts messages finished on the channel. Not in NSQ's JSON; reported by
	// /metrics as deliveries completed.
	FinishCount uint64 `json:"-"`
	// Ephemeral is true for a #ephemeral channel.
	Ephemeral bool `json:"-"`
}

// ClientStats is a snapshot of one V2 connection, NSQ's ClientV2Stats.
type ClientStats struct {
	ClientID        string     `json:"client_id"`
	Hostname        string     `json:"hostname"`
	Version         string     `json:"version"`
	RemoteAddress   string     `json:"remote_address"`
	State           int32      `json:"state"`
	ReadyCount      int64      `json:"ready_count"`
	InFlightCount   int64      `json:"in_flight_count"`
	MessageCount    uint64     `json:"message_count"`
	FinishCount     uint64     `json:"finish_count"`
	RequeueCount    uint64     `json:"requeue_count"`
	ConnectTime     int64      `json:"connect_ts"`
	SampleRate      int32      `json:"sample_rate"`
	Deflate         bool       `json:"deflate"`
	Snappy          bool       `json:"snappy"`
	UserAgent       string     `json:"user_agent"`
	Authed          bool       `json:"authed,omitempty"`
	AuthIdentity    string     `json:"auth_identity,omitempty"`
	AuthIdentityURL string     `json:"auth_identity_url,omitempty"`
	PubCounts       []PubCount `json:"pub_counts,omitempty"`

	TLS                           bool   `json:"tls"`
	CipherSuite                   string `json:"tls_cipher_suite"`
	TLSVersion                    string `json:"tls_version"`
	TLSNegotiatedProtocol         string `json:"tls_negotiated_protocol"`
	TLSNegotiatedProtocolIsMutual bool   `json:"tls_negotiated_protocol_is_mutual"`

	TopologyZone   string `json:"topology_zone"`
	TopologyRegion string `json:"topology_region"`

	// TimeoutCount is not in NSQ's JSON.
	TimeoutCount uint64 `json:"-"`
}

// PubCount is how many messages a connection published to one topic.
type PubCount struct {
	Topic string `json:"topic"`
	Count uint64 `json:"count"`
}

// MemStats is NSQ's "memory" object of /stats.
type MemStats struct {
	HeapObjects       uint64 `json:"heap_objects"`
	HeapIdleBytes     uint64 `json:"heap_idle_bytes"`
	HeapInUseBytes    uint64 `json:"heap_in_use_bytes"`
	HeapReleasedBytes uint64 `json:"heap_released_bytes"`
	GCPauseUsec100    uint64 `json:"gc_pause_usec_100"`
	GCPauseUsec99     uint64 `json:"gc_pause_usec_99"`
	GCPauseUsec95     uint64 `json:"gc_pause_usec_95"`
	NextGCBytes       uint64 `json:"next_gc_bytes"`
	GCTotalRuns       uint32 `json:"gc_total_runs"`
}

// StatsFilter narrows a StatsReport as /stats's query parameters do.
type StatsFilter struct {
	Topic          string // only this topic, if set
	Channel        string // only this channel of Topic, if set
	IncludeClients bool
	IncludeMem     bool
}

// StatsReport takes one snapshot of the daemon's state. An unknown topic gives a report with
// no topics (null, as in NSQ).
func (n *NSQD) StatsReport(f StatsFilter) StatsReport {
	r := StatsReport{
		Version:   version.Binary,
		Health:    n.healthString(),
		StartTime: n.startTime.Unix(),
	}
	var topics []*Topic
	if f.Topic != "" {
		if t := n.Topic(f.Topic); t != nil {
			topics = []*Topic{t}
		}
	} else {
		topics = n.Topics()
	}
	for _, t := range topics {
		r.Topics = append(r.Topics, t.stats(f.Channel, f.IncludeClients))
	}
	if f.IncludeClients {
		r.Producers = n.producerStats()
	}
	if f.IncludeMem {
		r.Memory = memStats()
	}
	return r
}

// Stats returns a snapshot of every topic and channel, with clients.
func (n *NSQD) Stats() []TopicStats {
	return n.StatsReport(StatsFilter{IncludeClients: true}).Topics
}

// TopicStats returns a snapshot of one topic with its channels and their clients, and false
// if there is no such topic.
func (n *NSQD) TopicStats(topic string) (TopicStats, bool) {
	t := n.Topic(topic)
	if t == nil {
		return TopicStats{}, false
	}
	return t.Stats(), true
}

// ChannelStats returns a snapshot of one channel with its clients, and false if there is no
// such channel.
func (n *NSQD) ChannelStats(topic, channel string) (ChannelStats, bool) {
	_, ch, err := n.channel(topic, channel)
	if err != nil {
		return ChannelStats{}, false
	}
	return ch.Stats(), true
}

func (t *Topic) stats(channel string, includeClients bool) TopicStats {
	s := TopicStats{
		Name:         t.name,
		Depth:        t.Depth(),
		MessageCount: t.messageCount.Load(),
		MessageBytes: t.messageBytes.Load(),
		Paused:       t.Paused(),
		StorageBytes: t.log.Size(),
		Ephemeral:    t.ephemeral,
		DroppedCount: t.droppedCount.Load(),
		RefusedCount: t.refusedCount.Load(),
		CorruptCount: t.log.Stats().CorruptRecords,
	}
	if ts := t.Settings(); ts != (TopicSettings{}) {
		s.Settings = &ts
	}
	s.BackendDepth = t.backendDepth(s.Depth)
	var latencies []*quantile.Result
	for _, ch := range t.Channels() {
		if channel != "" && ch.name != channel {
			continue
		}
		cs := ch.stats(includeClients)
		latencies = append(latencies, cs.E2eProcessingLatency)
		s.Channels = append(s.Channels, cs)
	}
	s.E2eProcessingLatency = quantile.Merge(latencies...)
	return s
}

// backendDepth is the part of a depth that is only on disk, outside the memory hot tail,
// which is what NSQ's backend_depth means.
func (t *Topic) backendDepth(depth int64) int64 {
	if t.ephemeral {
		return 0
	}
	return max(0, depth-t.opts().MemQueueSize)
}

func (ch *Channel) stats(includeClients bool) ChannelStats {
	ch.mu.Lock()
	s := ChannelStats{
		Name:            ch.name,
		Depth:           ch.depthLocked(),
		InFlightCount:   ch.inFlight,
		DeferredCount:   ch.deferred,
		MessageCount:    ch.messageCountLocked(),
		RequeueCount:    ch.requeueCount.Load(),
		TimeoutCount:    ch.timeoutCount.Load(),
		FinishCount:     ch.finishCount.Load(),
		ClientCount:     len(ch.subs),
		Paused:          ch.paused,
		Ephemeral:       ch.ephemeral,
		ExpiredCount:    ch.expiredCount.Load(),
		DeadLetterCount: ch.deadLetterCount.Load(),
	}
	if ch.cfg != (ChannelSettings{}) {
		cs := ch.cfg
		s.Settings = &cs
	}
	var subs []subscriber
	if includeClients {
		subs = make([]subscriber, 0, len(ch.subs))
		for _, sub := range ch.subs {
			subs = append(subs, sub.sub)
		}
	}
	ch.mu.Unlock()
	s.BackendDepth = ch.topic.backendDepth(s.Depth)
	s.E2eProcessingLatency = ch.e2e.Result()
	// Subscribers are listed in the order they subscribed, as NSQ lists clients by ID.
	for _, sub := range subs {
		s.Clients = append(s.Clients, sub.stats())
	}
	return s
}

func (c *client) stats() ClientStats {
	id := c.ident.Load()
	s := ClientStats{
		ClientID:      id.clientID,
		Hostname:      id.hostname,
		Version:       "V2",
		RemoteAddress: c.remote,
		State:         c.state.Load(),
		ReadyCount:    c.rdy.Load(),
		MessageCount:  c.messageCount.Load(),
		FinishCount:   c.finishCount.Load(),
		RequeueCount:  c.requeueCount.Load(),
		ConnectTime:   c.connTime.Unix(),
		SampleRate:    id.sampleRate,
		Deflate:       id.deflate,
		Snappy:        id.snappy,
		UserAgent:     id.userAgent,
	}
	if a := c.auth.Load(); a != nil {
		s.Authed = true
		s.AuthIdentity, s.AuthIdentityURL = a.identity, a.identityURL
	}
	if ts := c.tlsState.Load(); ts != nil {
		s.TLS = true
		s.CipherSuite = tls.CipherSuiteName(ts.CipherSuite)
		s.TLSVersion = tlsVersionName(ts.Version)
		s.TLSNegotiatedProtocol = ts.NegotiatedProtocol
		s.TLSNegotiatedProtocolIsMutual = true // always, since Go 1.3; NSQ reports the field
	}
	if sub := c.sub.Load(); sub != nil {
		s.InFlightCount = sub.inFlight.Load()
		s.TimeoutCount = sub.timeouts.Load()
	}
	c.pubMu.Lock()
	for topic, n := range c.pubCounts {
		s.PubCounts = append(s.PubCounts, PubCount{Topic: topic, Count: n})
	}
	c.pubMu.Unlock()
	slices.SortFunc(s.PubCounts, func(a, b PubCount) int { return cmp.Compare(a.Topic, b.Topic) })
	return s
}

// tlsVersionName names a TLS version as NSQ's /stats does: "TLS1.2".
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLS1.0"
	case tls.VersionTLS11:
		return "TLS1.1"
	case tls.VersionTLS12:
		return "TLS1.2"
	case tls.VersionTLS13:
		return "TLS1.3"
	}
	return fmt.Sprintf("Unknown %d", v)
}

// producerStats lists the TCP connections that have published, as NSQ's "producers".
func (n *NSQD) producerStats() []ClientStats {
	n.clientsMu.Lock()
	var clients []*client
	for _, c := range n.clients {
		if c.published.Load() {
			clients = append(clients, c)
		}
	}
	n.clientsMu.Unlock()
	slices.SortFunc(clients, func(a, b *client) int { return int(a.id - b.id) })
	var out []ClientStats
	for _, c := range clients {
		out = append(out, c.stats())
	}
	return out
}

func memStats() *MemStats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	n := min(int(ms.NumGC), len(ms.PauseNs))
	pauses := slices.Clone(ms.PauseNs[:n])
	slices.Sort(pauses)
	pct := func(p float64) uint64 {
		if len(pauses) == 0 {
			return 0
		}
		i := min(int(float64(len(pauses))*p), len(pauses)-1)
		return pauses[i] / uint64(time.Microsecond)
	}
	return &MemStats{
		HeapObjects:       ms.HeapObjects,
		HeapIdleBytes:     ms.HeapIdle,
		HeapInUseBytes:    ms.HeapInuse,
		HeapReleasedBytes: ms.HeapReleased,
		GCPauseUsec100:    pct(1),
		GCPauseUsec99:     pct(0.99),
		GCPauseUsec95:     pct(0.95),
		NextGCBytes:       ms.NextGC,
		GCTotalRuns:       ms.NumGC,
	}
}
