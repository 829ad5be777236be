package admin

import (
	"cmp"
	"encoding/json"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The types below are the JSON shapes of NSQ 1.3's nsqadmin API (its clusterinfo package),
// field for field, so that scripts written against NSQ's /api/* read Tern's unchanged. They
// are also what nsqd's /stats decodes into: the field names are the same, and the admin fills
// in node, hostname and memory_depth, which nsqd does not send.

// Producer is one nsqd as the lookupds (or, without lookupds, its own /info) describe it.
type Producer struct {
	// RemoteAddresses lists, for each lookupd the node is registered with,
	// "<lookupd http address>/<the node's address as that lookupd sees it>". A node missing
	// from a lookupd has fewer entries than there are lookupds.
	RemoteAddresses  []string        `json:"remote_addresses"`
	RemoteAddress    string          `json:"remote_address"`
	Hostname         string          `json:"hostname"`
	BroadcastAddress string          `json:"broadcast_address"`
	TCPPort          int             `json:"tcp_port"`
	HTTPPort         int             `json:"http_port"`
	Version          string          `json:"version"`
	Topics           []ProducerTopic `json:"topics"`
	// OutOfDate is true when another node of the cluster runs a newer version.
	OutOfDate bool `json:"out_of_date"`
}

// ProducerTopic is one topic a node has registered, and whether a lookupd tombstoned it.
type ProducerTopic struct {
	Topic      string `json:"topic"`
	Tombstoned bool   `json:"tombstoned"`
}

// HTTPAddress is the node's identity in the admin: the address its HTTP API is reached at,
// and the :node of /nodes/:node.
func (p *Producer) HTTPAddress() string {
	return net.JoinHostPort(p.BroadcastAddress, strconv.Itoa(p.HTTPPort))
}

// TCPAddress is where clients reach the node over TCP.
func (p *Producer) TCPAddress() string {
	return net.JoinHostPort(p.BroadcastAddress, strconv.Itoa(p.TCPPort))
}

// Inconsistent reports that the node is not registered with every lookupd, or is registered
// more than once with one (two nodes sharing a broadcast address).
func (p *Producer) Inconsistent(lookupds int) bool {
	return lookupds > 0 && len(p.RemoteAddresses) != lookupds
}

// HasTopic reports whether the node has registered topic, tombstoned or not.
func (p *Producer) HasTopic(topic string) bool {
	for _, t := range p.Topics {
		if t.Topic == topic {
			return true
		}
	}
	return false
}

// Carries reports whether the node has registered topic and no lookupd has tombstoned it
// there: the nodes /lookup would return for the topic.
func (p *Producer) Carries(topic string) bool {
	for _, t := range p.Topics {
		if t.Topic == topic {
			return !t.Tombstoned
		}
	}
	return false
}

// TopicStats is a topic on one node, or (Node "*") summed over the cluster with the per-node
// entries in NodeStats.
type TopicStats struct {
	Node         string          `json:"node"`
	Hostname     string          `json:"hostname"`
	TopicName    string          `json:"topic_name"`
	Depth        int64           `json:"depth"`
	MemoryDepth  int64           `json:"memory_depth"`
	BackendDepth int64           `json:"backend_depth"`
	MessageCount int64           `json:"message_count"`
	NodeStats    []*TopicStats   `json:"nodes"`
	Channels     []*ChannelStats `json:"channels"`
	Paused       bool            `json:"paused"`

	E2eProcessingLatency *Latency `json:"e2e_processing_latency"`

	// Tern's extensions (settings.go), absent from NSQ's nsqd and from the JSON when unset.
	// A sum over nodes has no settings of its own: they are each node's.
	Settings     *TopicSettings `json:"settings,omitempty"`
	DroppedCount int64          `json:"dropped_count,omitempty"` // dropped by a drop_oldest quota
	RefusedCount int64          `json:"refused_count,omitempty"` // publishes refused by a quota

	// totals replace Channels in a snapshot's per-node entries (see compactTopics).
	totals *topicTotals
}

// topicTotals are the figures of a node's topic that need its channels, kept when a snapshot
// drops the channels.
type topicTotals struct {
	depth, memoryDepth int64
	clients, channels  int
}

// TotalDepth is the topic's own depth plus its channels': every message waiting anywhere in
// the topic.
func (t *TopicStats) TotalDepth() int64 {
	if t.totals != nil {
		return t.totals.depth
	}
	d := t.Depth
	for _, c := range t.Channels {
		d += c.Depth
	}
	return d
}

// TotalMemoryDepth is the part of TotalDepth held in memory.
func (t *TopicStats) TotalMemoryDepth() int64 {
	if t.totals != nil {
		return t.totals.memoryDepth
	}
	d := t.MemoryDepth
	for _, c := range t.Channels {
		d += c.MemoryDepth
	}
	return d
}

// TotalBackendDepth is the part of TotalDepth only on disk.
func (t *TopicStats) TotalBackendDepth() int64 { return t.TotalDepth() - t.TotalMemoryDepth() }

// ClientCount is the number of consumers on all the topic's channels.
func (t *TopicStats) ClientCount() int {
	if t.totals != nil {
		return t.totals.clients
	}
	n := 0
	for _, c := range t.Channels {
		n += c.ClientCount
	}
	return n
}

// ChannelCount is the number of the topic's channels.
func (t *TopicStats) ChannelCount() int {
	if t.totals != nil {
		return t.totals.channels
	}
	return len(t.Channels)
}

// Channel returns the channel by name, or nil.
func (t *TopicStats) Channel(name string) *ChannelStats {
	for _, c := range t.Channels {
		if c.ChannelName == name {
			return c
		}
	}
	return nil
}

// ChannelStats is a channel on one node, or (Node "*") summed over the cluster with the
// per-node entries in NodeStats and every node's clients in Clients.
type ChannelStats struct {
	Node          string          `json:"node"`
	Hostname      string          `json:"hostname"`
	TopicName     string          `json:"topic_name"`
	ChannelName   string          `json:"channel_name"`
	Depth         int64           `json:"depth"`
	MemoryDepth   int64           `json:"memory_depth"`
	BackendDepth  int64           `json:"backend_depth"`
	InFlightCount int64           `json:"in_flight_count"`
	DeferredCount int64           `json:"deferred_count"`
	RequeueCount  int64           `json:"requeue_count"`
	TimeoutCount  int64           `json:"timeout_count"`
	MessageCount  int64           `json:"message_count"`
	ClientCount   int             `json:"client_count"`
	NodeStats     []*ChannelStats `json:"nodes"`
	Clients       []*ClientStats  `json:"clients"`
	Paused        bool            `json:"paused"`

	E2eProcessingLatency *Latency `json:"e2e_processing_latency"`

	// Tern's extensions, as for TopicStats.
	Settings        *ChannelSettings `json:"settings,omitempty"`
	ExpiredCount    int64            `json:"expired_count,omitempty"`
	DeadLetterCount int64            `json:"dead_letter_count,omitempty"`

	// perNode replaces NodeStats in a snapshot's sums (see compactTopics).
	perNode []nodeCount
}

// nodeCount is one node's counters of a channel, as a snapshot keeps them.
type nodeCount struct {
	node                string
	messages, processed int64
}

// Processed is how many messages have left the channel for good: delivered and finished (or
// emptied). nsqd's /stats has no finish count for a channel, but every message the channel
// ever received is either still waiting, in flight, deferred, or done.
func (c *ChannelStats) Processed() int64 {
	return max(0, c.MessageCount-c.Depth-c.InFlightCount-c.DeferredCount)
}

// ClientStats is one consumer connection.
type ClientStats struct {
	Node              string        `json:"node"`
	RemoteAddress     string        `json:"remote_address"`
	Version           string        `json:"version"`
	ClientID          string        `json:"client_id"`
	Hostname          string        `json:"hostname"`
	UserAgent         string        `json:"user_agent"`
	ConnectTs         int64         `json:"connect_ts"`
	ConnectedDuration time.Duration `json:"connected"`
	InFlightCount     int           `json:"in_flight_count"`
	ReadyCount        int           `json:"ready_count"`
	FinishCount       int64         `json:"finish_count"`
	RequeueCount      int64         `json:"requeue_count"`
	MessageCount      int64         `json:"message_count"`
	SampleRate        int32         `json:"sample_rate"`
	Deflate           bool          `json:"deflate"`
	Snappy            bool          `json:"snappy"`
	Authed            bool          `json:"authed"`
	AuthIdentity      string        `json:"auth_identity"`
	AuthIdentityURL   string        `json:"auth_identity_url"`

	TLS                           bool   `json:"tls"`
	CipherSuite                   string `json:"tls_cipher_suite"`
	TLSVersion                    string `json:"tls_version"`
	TLSNegotiatedProtocol         string `json:"tls_negotiated_protocol"`
	TLSNegotiatedProtocolIsMutual bool   `json:"tls_negotiated_protocol_is_mutual"`
}

// Latency is NSQ's e2e_processing_latency in the admin's API: per node, each percentile's
// value repeated as min, max and average; summed over nodes, the range and the count-weighted
// average of the nodes' values for each percentile.
type Latency struct {
	Count       int          `json:"count"`
	Percentiles []Percentile `json:"percentiles"`
	Topic       string       `json:"topic"`
	Channel     string       `json:"channel"`
	Host        string       `json:"host"`
}

// Percentile is one quantile of a Latency, values in nanoseconds. Value is what nsqd
// reported (a single node); a sum over nodes has none.
type Percentile struct {
	Quantile float64
	Value    float64
	HasValue bool
	Min      float64
	Max      float64
	Average  float64
	Count    int
}

// MarshalJSON writes NSQ's map shape: {"quantile","value"?,"min","max","average","count"}.
func (p Percentile) MarshalJSON() ([]byte, error) {
	b := []byte(`{"quantile":`)
	b = strconv.AppendFloat(b, p.Quantile, 'g', -1, 64)
	if p.HasValue {
		b = append(b, `,"value":`...)
		b = strconv.AppendFloat(b, p.Value, 'g', -1, 64)
	}
	b = append(b, `,"min":`...)
	b = strconv.AppendFloat(b, p.Min, 'g', -1, 64)
	b = append(b, `,"max":`...)
	b = strconv.AppendFloat(b, p.Max, 'g', -1, 64)
	b = append(b, `,"average":`...)
	b = strconv.AppendFloat(b, p.Average, 'g', -1, 64)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, int64(p.Count), 10)
	return append(b, '}'), nil
}

// UnmarshalJSON reads nsqd's {"quantile":q,"value":v}, and the admin's own shape back.
func (p *Percentile) UnmarshalJSON(b []byte) error {
	var m map[string]float64
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	p.Quantile = m["quantile"]
	p.Value, p.HasValue = m["value"]
	p.Min, p.Max, p.Average, p.Count = m["min"], m["max"], m["average"], int(m["count"])
	return nil
}

// Label names the percentile as operators say it: p50, p99, p99.9.
func (p Percentile) Label() string {
	return "p" + strconv.FormatFloat(p.Quantile*100, 'f', -1, 64)
}

// nodeLatency completes a node's latency as NSQ's admin does: every value is also that node's
// min, max and average.
func nodeLatency(l *Latency, topic, channel, host string) {
	if l == nil {
		return
	}
	l.Topic, l.Channel, l.Host = topic, channel, host
	for i := range l.Percentiles {
		p := &l.Percentiles[i]
		p.Min, p.Max, p.Average, p.Count = p.Value, p.Value, p.Value, l.Count
	}
}

// addLatency folds b (a node's latency, or a sum) into the sum *a.
func addLatency(a **Latency, b *Latency, topic, channel string) {
	if b == nil {
		return
	}
	if *a == nil {
		*a = &Latency{Topic: topic, Channel: channel, Host: "*"}
	}
	sum := *a
	sum.Count += b.Count
	for _, q := range b.Percentiles {
		i := slices.IndexFunc(sum.Percentiles, func(p Percentile) bool { return p.Quantile == q.Quantile })
		if i < 0 {
			sum.Percentiles = append(sum.Percentiles, Percentile{Quantile: q.Quantile, Min: q.Min, Max: q.Max})
			i = len(sum.Percentiles) - 1
		}
		p := &sum.Percentiles[i]
		p.Min, p.Max = min(p.Min, q.Min), max(p.Max, q.Max)
		if total := p.Count + q.Count; total > 0 {
			p.Average = (p.Average*float64(p.Count) + q.Average*float64(q.Count)) / float64(total)
			p.Count = total
		}
	}
	slices.SortFunc(sum.Percentiles, func(x, y Percentile) int { return cmp.Compare(y.Quantile, x.Quantile) })
}

// nodeStats is one node's answer to /stats?format=json, with the node's identity.
type nodeStats struct {
	producer *Producer
	Topics   []*TopicStats `json:"topics"`
}

// prepare fills in what nsqd does not send: which node each entry is from, and the part of
// each depth held in memory.
func (ns *nodeStats) prepare() {
	node, host := ns.producer.HTTPAddress(), ns.producer.Hostname
	for _, t := range ns.Topics {
		t.Node, t.Hostname = node, host
		t.MemoryDepth = t.Depth - t.BackendDepth
		nodeLatency(t.E2eProcessingLatency, t.TopicName, "", node)
		for _, c := range t.Channels {
			c.Node, c.Hostname, c.TopicName = node, host, t.TopicName
			c.MemoryDepth = c.Depth - c.BackendDepth
			nodeLatency(c.E2eProcessingLatency, t.TopicName, c.ChannelName, node)
			for _, cl := range c.Clients {
				cl.Node = node
			}
		}
	}
}

// aggregateTopics sums every node's topics into one TopicStats per topic (Node "*"), sorted
// by name, each with its per-node entries and its channels summed by name. The nodes'
// entries are not changed: they stay as each node reported them.
func aggregateTopics(nodes []*nodeStats) []*TopicStats {
	byName := make(map[string]*TopicStats)
	var out []*TopicStats
	for _, ns := range nodes {
		for _, t := range ns.Topics {
			sum := byName[t.TopicName]
			if sum == nil {
				sum = &TopicStats{Node: "*", TopicName: t.TopicName}
				byName[t.TopicName] = sum
				out = append(out, sum)
			}
			addTopic(sum, t)
		}
	}
	slices.SortFunc(out, func(a, b *TopicStats) int { return strings.Compare(a.TopicName, b.TopicName) })
	for _, t := range out {
		slices.SortStableFunc(t.NodeStats, func(a, b *TopicStats) int { return strings.Compare(a.Hostname, b.Hostname) })
		slices.SortFunc(t.Channels, func(a, b *ChannelStats) int { return strings.Compare(a.ChannelName, b.ChannelName) })
		for _, c := range t.Channels {
			slices.SortStableFunc(c.NodeStats, func(a, b *ChannelStats) int { return strings.Compare(a.Hostname, b.Hostname) })
		}
	}
	return out
}

func addTopic(sum, t *TopicStats) {
	sum.Depth += t.Depth
	sum.MemoryDepth += t.MemoryDepth
	sum.BackendDepth += t.BackendDepth
	sum.MessageCount += t.MessageCount
	sum.DroppedCount += t.DroppedCount
	sum.RefusedCount += t.RefusedCount
	sum.Paused = sum.Paused || t.Paused
	sum.NodeStats = append(sum.NodeStats, t)
	addLatency(&sum.E2eProcessingLatency, t.E2eProcessingLatency, t.TopicName, "")
	for _, c := range t.Channels {
		csum := sum.Channel(c.ChannelName)
		if csum == nil {
			csum = &ChannelStats{Node: "*", TopicName: t.TopicName, ChannelName: c.ChannelName}
			sum.Channels = append(sum.Channels, csum)
		}
		addChannel(csum, c)
	}
}

func addChannel(sum, c *ChannelStats) {
	sum.Depth += c.Depth
	sum.MemoryDepth += c.MemoryDepth
	sum.BackendDepth += c.BackendDepth
	sum.InFlightCount += c.InFlightCount
	sum.DeferredCount += c.DeferredCount
	sum.RequeueCount += c.RequeueCount
	sum.TimeoutCount += c.TimeoutCount
	sum.MessageCount += c.MessageCount
	sum.ClientCount += c.ClientCount
	sum.ExpiredCount += c.ExpiredCount
	sum.DeadLetterCount += c.DeadLetterCount
	sum.Paused = sum.Paused || c.Paused
	sum.NodeStats = append(sum.NodeStats, c)
	sum.Clients = append(sum.Clients, c.Clients...)
	addLatency(&sum.E2eProcessingLatency, c.E2eProcessingLatency, c.TopicName, c.ChannelName)
}

// compactTopics drops what a snapshot's readers do not need from summed topics: the per-node
// entries of each channel (a hundred thousand of them in a large cluster, most of the
// admin's memory) become their counters, and each node's topic entry keeps its totals instead
// of its channels. Pages and API calls that show per-node channels or clients fetch them
// fresh for the one topic or channel asked about.
func compactTopics(topics []*TopicStats) {
	for _, t := range topics {
		for _, c := range t.Channels {
			c.perNode = make([]nodeCount, len(c.NodeStats))
			for i, nc := range c.NodeStats {
				c.perNode[i] = nodeCount{node: nc.Node, messages: nc.MessageCount, processed: nc.Processed()}
			}
			c.NodeStats, c.Clients = nil, nil
		}
		for _, nt := range t.NodeStats {
			nt.totals = &topicTotals{depth: nt.TotalDepth(), memoryDepth: nt.TotalMemoryDepth(),
				clients: nt.ClientCount(), channels: len(nt.Channels)}
			nt.Channels = nil
		}
	}
}

// versionLess compares NSQ version strings such as "1.3.0" or "1.2.1-alpha" by their numeric
// parts; an unparseable version counts as 0.0.0, as in NSQ's admin.
func versionLess(a, b string) bool {
	return slices.Compare(versionParts(a), versionParts(b)) < 0
}

func versionParts(v string) []int {
	v, _, _ = strings.Cut(v, "-")
	v, _, _ = strings.Cut(v, "+")
	fields := strings.Split(v, ".")
	if len(fields) != 3 {
		return []int{0, 0, 0}
	}
	out := make([]int, 3)
	for i, f := range fields {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return []int{0, 0, 0}
		}
		out[i] = n
	}
	return out
}
