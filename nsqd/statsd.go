package nsqd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/ternmq/tern/internal/protocol"
)

const (
	statsdDialTimeout  = time.Second
	statsdWriteTimeout = time.Second
	// statsdErrorLogInterval is the least time between two logged push failures, so an
	// unreachable statsd does not flood the log when --statsd-interval is short.
	statsdErrorLogInterval = time.Minute
	// NSQ's defaults, used when the options carry a value the loop cannot work with.
	defaultStatsdInterval   = 60 * time.Second
	defaultStatsdPacketSize = 508
)

// statsdLoop pushes NSQ's statsd keys to --statsd-address every --statsd-interval until ctx
// ends. Run owns it: it starts the loop when --statsd-address is set and cancels ctx after the
// clients are gone. The options are read at every tick, so a changed address, prefix, packet
// size or interval takes effect at the next push. A failed push is logged (rate-limited) and
// the loop carries on.
func (n *NSQD) statsdLoop(ctx context.Context) {
	p := newStatsdPusher(n.logger.With("component", "statsd"))
	interval := statsdInterval(n.getOpts())
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			opts := n.getOpts()
			if opts.StatsdAddress == "" { // switched off at run time
				continue
			}
			cfg := statsdConfig{
				address:          opts.StatsdAddress,
				prefix:           n.statsdPrefix(opts),
				packetSize:       opts.StatsdUDPPacketSize,
				excludeEphemeral: opts.StatsdExcludeEphemeral,
			}
			if cfg.packetSize <= 0 {
				cfg.packetSize = defaultStatsdPacketSize
			}
			p.push(ctx, cfg, n.StatsReport(StatsFilter{IncludeMem: opts.StatsdMemStats}), now)
			if d := statsdInterval(opts); d != interval {
				interval = d
				tick.Reset(d)
			}
		}
	}
}

func statsdInterval(opts *Options) time.Duration {
	if opts.StatsdInterval <= 0 {
		return defaultStatsdInterval
	}
	return opts.StatsdInterval
}

// statsdPrefix expands --statsd-prefix for this daemon: the HTTP port is the broadcast one, or
// the port the HTTP API really listens on (0 if it is disabled).
func (n *NSQD) statsdPrefix(opts *Options) string {
	port := opts.BroadcastHTTPPort
	if port == 0 {
		port = max(protocol.ListenPort(n.HTTPAddr()), 0)
	}
	return statsdHostPrefix(opts.StatsdPrefix, opts.BroadcastAddress, port)
}

// statsdHostPrefix is NSQ's prefix rule: every "%s" becomes the host key (host and port
// joined as an address, with '.' and ':' turned into '_' so the key adds no levels to the
// statsd hierarchy) and a non-empty prefix ends with a dot.
func statsdHostPrefix(prefix, host string, port int) string {
	if prefix == "" {
		return ""
	}
	hostKey := strings.NewReplacer(".", "_", ":", "_").Replace(net.JoinHostPort(host, strconv.Itoa(port)))
	prefix = strings.ReplaceAll(prefix, "%s", hostKey)
	if !strings.HasSuffix(prefix, ".") {
		prefix += "."
	}
	return prefix
}

// statsdConfig is what one push needs from the options.
type statsdConfig struct {
	address          string
	prefix           string // expanded, ends with '.' unless empty
	packetSize       int
	excludeEphemeral bool
}

// statsdPusher turns stats snapshots into statsd lines and sends them. It remembers the
// counters' values at the last push that sent something, since statsd counters are deltas.
// It is used by one goroutine only.
type statsdPusher struct {
	logger *slog.Logger
	last   map[string]uint64 // counter values by key without prefix

	failing    bool
	lastErrLog time.Time
	suppressed int // failures not logged since lastErrLog
}

func newStatsdPusher(logger *slog.Logger) *statsdPusher {
	return &statsdPusher{logger: logger, last: map[string]uint64{}}
}

// push sends one snapshot. When nothing could be sent the counters' baseline is kept, so the
// next push carries the whole delta and statsd loses no counts to an outage.
func (p *statsdPusher) push(ctx context.Context, cfg statsdConfig, r StatsReport, now time.Time) {
	lines, counters := p.lines(cfg, r)
	packets, dropped := statsdPackets(lines, cfg.packetSize)
	sent, err := sendStatsd(ctx, cfg.address, packets)
	if sent > 0 {
		p.last = counters
	}
	if dropped > 0 {
		err = errors.Join(err, fmt.Errorf("%d lines longer than --statsd-udp-packet-size %d dropped", dropped, cfg.packetSize))
	}
	if err != nil {
		if ctx.Err() == nil { // a push cut short by shutdown is not a failure
			p.failed(now, cfg.address, err)
		}
		return
	}
	if p.failing {
		p.failing = false
		p.logger.Info("statsd push working again", "address", cfg.address)
	}
	p.logger.Debug("statsd pushed", "address", cfg.address, "lines", len(lines), "packets", len(packets))
}

// failed logs a push failure unless one was logged less than statsdErrorLogInterval ago; the
// next record says how many were left out.
func (p *statsdPusher) failed(now time.Time, address string, err error) {
	p.failing = true
	if !p.lastErrLog.IsZero() && now.Sub(p.lastErrLog) < statsdErrorLogInterval {
		p.suppressed++
		return
	}
	p.logger.Error("statsd push failed", "address", address, "error", err, "suppressed_failures", p.suppressed)
	p.lastErrLog, p.suppressed = now, 0
}

// lines renders r as statsd lines with NSQ's keys: counters as the delta since the last push
// (the whole value after a reset, when a topic was re-created), gauges as values. It returns
// the counter values for the next push's deltas.
func (p *statsdPusher) lines(cfg statsdConfig, r StatsReport) (lines []string, counters map[string]uint64) {
	counters = make(map[string]uint64, len(p.last))
	gauge := func(key string, v int64) {
		lines = append(lines, cfg.prefix+key+":"+strconv.FormatInt(v, 10)+"|g")
	}
	counter := func(key string, v uint64) {
		counters[key] = v
		delta := v
		if last := p.last[key]; last <= v {
			delta = v - last
		}
		lines = append(lines, cfg.prefix+key+":"+strconv.FormatUint(delta, 10)+"|c")
	}
	for _, t := range r.Topics {
		if cfg.excludeEphemeral && t.Ephemeral {
			continue
		}
		tk := "topic." + t.Name + "."
		counter(tk+"message_count", t.MessageCount)
		counter(tk+"message_bytes", t.MessageBytes)
		gauge(tk+"depth", t.Depth)
		gauge(tk+"backend_depth", t.BackendDepth)
		if t.E2eProcessingLatency != nil {
			for _, q := range t.E2eProcessingLatency.Percentiles {
				gauge(tk+statsdLatencyKey(q["quantile"]), int64(q["value"]))
			}
		}
		for _, cs := range t.Channels {
			if cfg.excludeEphemeral && cs.Ephemeral {
				continue
			}
			ck := tk + "channel." + cs.Name + "."
			counter(ck+"message_count", cs.MessageCount)
			gauge(ck+"depth", cs.Depth)
			gauge(ck+"backend_depth", cs.BackendDepth)
			gauge(ck+"in_flight_count", int64(cs.InFlightCount))
			gauge(ck+"deferred_count", int64(cs.DeferredCount))
			counter(ck+"requeue_count", cs.RequeueCount)
			counter(ck+"timeout_count", cs.TimeoutCount)
			gauge(ck+"clients", int64(cs.ClientCount))
			if cs.E2eProcessingLatency != nil {
				for _, q := range cs.E2eProcessingLatency.Percentiles {
					gauge(ck+statsdLatencyKey(q["quantile"]), int64(q["value"]))
				}
			}
		}
	}
	if m := r.Memory; m != nil {
		gauge("mem.heap_objects", int64(m.HeapObjects))
		gauge("mem.heap_idle_bytes", int64(m.HeapIdleBytes))
		gauge("mem.heap_in_use_bytes", int64(m.HeapInUseBytes))
		gauge("mem.heap_released_bytes", int64(m.HeapReleasedBytes))
		gauge("mem.gc_pause_usec_100", int64(m.GCPauseUsec100))
		gauge("mem.gc_pause_usec_99", int64(m.GCPauseUsec99))
		gauge("mem.gc_pause_usec_95", int64(m.GCPauseUsec95))
		gauge("mem.next_gc_bytes", int64(m.NextGCBytes))
		counter("mem.gc_runs", uint64(m.GCTotalRuns))
	}
	return lines, counters
}

// statsdLatencyKey names a latency percentile as NSQ does: 0.99 is "..._99" (and, as in NSQ,
// 0.999 rounds to "..._100"). Values are nanoseconds.
func statsdLatencyKey(q float64) string {
	return fmt.Sprintf("e2e_processing_latency_%.0f", q*100)
}

// statsdPackets packs lines, each ending in '\n', into packets of at most size bytes, split
// only between lines. A line too long for a packet on its own is dropped and counted: a larger
// datagram may be fragmented or lost on the way, and a cut line would be a wrong value.
func statsdPackets(lines []string, size int) (packets [][]byte, dropped int) {
	var cur []byte
	for _, l := range lines {
		n := len(l) + 1
		if n > size {
			dropped++
			continue
		}
		if len(cur)+n > size {
			packets = append(packets, cur)
			cur = nil
		}
		if cur == nil {
			cur = make([]byte, 0, size)
		}
		cur = append(append(cur, l...), '\n')
	}
	if len(cur) > 0 {
		packets = append(packets, cur)
	}
	return packets, dropped
}

// sendStatsd writes packets as datagrams on a fresh UDP socket, so a changed address or DNS
// record is picked up at the next push. It returns how many were written.
func sendStatsd(ctx context.Context, address string, packets [][]byte) (int, error) {
	if len(packets) == 0 {
		return 0, nil
	}
	d := net.Dialer{Timeout: statsdDialTimeout}
	conn, err := d.DialContext(ctx, "udp", address)
	if err != nil {
		return 0, fmt.Errorf("dial statsd: %w", err)
	}
	defer conn.Close()
	sent, failed := 0, 0
	var first error
	for _, pkt := range packets {
		_ = conn.SetWriteDeadline(time.Now().Add(statsdWriteTimeout))
		if _, err := conn.Write(pkt); err != nil {
			// A refused datagram (ICMP from a closed port) fails only this write: go on.
			if first == nil {
				first = err
			}
			failed++
			continue
		}
		sent++
	}
	if failed > 0 {
		return sent, fmt.Errorf("%d of %d statsd packets not sent: %w", failed, len(packets), first)
	}
	return sent, nil
}
