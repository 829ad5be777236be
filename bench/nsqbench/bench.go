package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/protocol"
)

// seqLen is the length of the sequence number at the start of every body.
const seqLen = 8

const (
	// drainTimeout bounds the wait for CLOSE_WAIT after CLS.
	drainTimeout = 10 * time.Second
	// consumerReadBuffer is large so that one read syscall brings in hundreds of messages;
	// with many consumers they share consumerReadBuffers instead, down to minReadBuffer.
	consumerReadBuffer  = 1 << 20
	consumerReadBuffers = 64 << 20
	minReadBuffer       = 64 << 10
	// consumerWriteBuffer holds the pending FINs between flushes.
	consumerWriteBuffer = 64 << 10
	// maxControlFrame bounds every frame that is not a message: IDENTIFY's JSON, errors.
	maxControlFrame = 64 << 10
)

// config is one benchmark run's settings; main fills it from the flags.
type config struct {
	// NSQDTCPAddress is a running nsqd to measure; empty starts NSQDBin.
	NSQDTCPAddress string
	// NSQDBin is the nsqd binary started when NSQDTCPAddress is empty.
	NSQDBin string
	// NSQDFlags are passed to the started nsqd after the tool's own flags.
	NSQDFlags []string
	// Topic and Channel are where the load goes. With Topics above 1 the load is spread over
	// that many topics, named Topic-0, Topic-1, ..., batch by batch in turn, and each topic
	// is drained by its own consumers.
	Topic, Channel string
	Topics         int
	// Channels above 1 fans the topic out: that many channels, named Channel-0, Channel-1,
	// ..., exist before the publish, each receives every message and is drained by its own
	// consumers.
	Channels int
	// Count is the number of messages, Size each body's length, Batch the messages per MPUB.
	Count, Size, Batch int
	// Publishers and Consumers are the numbers of connections of each phase.
	Publishers, Consumers int
	// RDY is each consumer's RDY count.
	RDY int
	// Timeout bounds the whole run.
	Timeout time.Duration
	// StallTimeout ends the consume phase when no new message arrived for that long.
	StallTimeout time.Duration
	// Heartbeat is the consumers' heartbeat interval. A heartbeat is what wakes a consumer
	// blocked on a quiet connection once the run is over, so it bounds how long the end of
	// the consume phase takes with several consumers or after a stall; it is not part of
	// the measured time. nsqd drops a consumer silent for two of them, and gives up a write
	// to it after one, so a heavy load on many connections needs a longer one.
	Heartbeat time.Duration
	// CPUProfile, when set, is where main writes the tool's own CPU profile.
	CPUProfile string
	// TopicSettings and ChannelSettings are Tern settings (JSON objects) applied to every
	// topic and its channel before the load, through the HTTP API at NSQDHTTPAddress (or
	// the started daemon's).
	TopicSettings, ChannelSettings string
	NSQDHTTPAddress                string
}

// defaultConfig returns the load of the issue: a million 100-byte messages in MPUBs of 200
// over four connections, drained by one connection with RDY 2500.
func defaultConfig() config {
	return config{
		NSQDBin:      "bin/nsqd",
		Topic:        "bench",
		Channel:      "ch",
		Topics:       1,
		Channels:     1,
		Count:        1_000_000,
		Size:         100,
		Batch:        200,
		Publishers:   4,
		RDY:          2500,
		Consumers:    1,
		Timeout:      5 * time.Minute,
		StallTimeout: 15 * time.Second,
		Heartbeat:    2 * time.Second,
	}
}

// topicName is the name of the i-th topic of the load.
func (c config) topicName(i int) string {
	if c.Topics <= 1 {
		return c.Topic
	}
	return fmt.Sprintf("%s-%d", c.Topic, i)
}

// channelName is the name of the i-th channel of the load.
func (c config) channelName(i int) string {
	if c.Channels <= 1 {
		return c.Channel
	}
	return fmt.Sprintf("%s-%d", c.Channel, i)
}

// consumers is the number of consuming connections: at least one per topic and channel.
func (c config) consumers() int { return max(c.Consumers, c.Topics, c.Channels) }

// deliveries is how many deliveries the consume phase expects: every message on every channel.
func (c config) deliveries() int { return c.Count * max(c.Channels, 1) }

// validate reports every problem with the config at once.
func (c config) validate() error {
	var errs []error
	if !protocol.IsValidTopicName(c.topicName(max(c.Topics, 1) - 1)) {
		errs = append(errs, fmt.Errorf("invalid --topic %q (with --topics %d)", c.Topic, c.Topics))
	}
	if !protocol.IsValidChannelName(c.Channel) {
		errs = append(errs, fmt.Errorf("invalid --channel %q", c.Channel))
	}
	for _, v := range []struct {
		name     string
		val, min int
	}{
		{"count", c.Count, 1},
		{"topics", c.Topics, 1},
		{"channels", c.Channels, 1},
		{"size", c.Size, seqLen},
		{"batch", c.Batch, 1},
		{"publishers", c.Publishers, 1},
		{"consumers", c.Consumers, 1},
		{"rdy", c.RDY, 1},
	} {
		if v.val < v.min {
			errs = append(errs, fmt.Errorf("--%s %d must be at least %d", v.name, v.val, v.min))
		}
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout %v must be positive", c.Timeout))
	}
	errs = append(errs, c.validateSettings()...)
	if c.Heartbeat < time.Second || c.Heartbeat > time.Minute {
		errs = append(errs, fmt.Errorf("--heartbeat-interval %v must be within [1s, 1m]", c.Heartbeat))
	}
	if c.StallTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--stall-timeout %v must be positive", c.StallTimeout))
	}
	if c.Channels > 1 && c.Topics > 1 {
		errs = append(errs, errors.New("--channels and --topics cannot both be above 1"))
	}
	if c.Channels > 1 && !protocol.IsValidChannelName(c.channelName(c.Channels-1)) {
		errs = append(errs, fmt.Errorf("invalid --channel %q (with --channels %d)", c.Channel, c.Channels))
	}
	if c.NSQDTCPAddress != "" && len(c.NSQDFlags) > 0 {
		errs = append(errs, errors.New("--nsqd-flag applies only to an nsqd the tool starts (no --nsqd-tcp-address)"))
	}
	for _, f := range c.NSQDFlags {
		// The tool must know where the daemon listens and owns its data path.
		if name := nsqdFlagName(f); name == "tcp-address" || name == "data-path" {
			errs = append(errs, fmt.Errorf("--nsqd-flag %q: the tool sets --%s itself", f, name))
		}
	}
	return errors.Join(errs...)
}

// nsqdFlagName returns the name of a command-line flag such as "--http-address=x", or "" if
// arg is not a flag.
func nsqdFlagName(arg string) string {
	if !strings.HasPrefix(arg, "-") {
		return ""
	}
	name := strings.TrimLeft(arg, "-")
	name, _, _ = strings.Cut(name, "=")
	return name
}

// result is what a run measured. A phase that did not run or failed has a zero elapsed time.
type result struct {
	// Published is the number of messages acknowledged, PublishElapsed the time from the
	// first MPUB to the last OK.
	Published      int
	PublishElapsed time.Duration
	// ConsumeRan says the consume phase ran (to completion, a stall or the time limit), so
	// the counts below mean something.
	ConsumeRan bool
	// Consumed is the number of distinct messages received, ConsumeElapsed the time from
	// the first RDY to the last new message.
	Consumed       int
	ConsumeElapsed time.Duration
	// Deliveries counts every message frame received, duplicates included.
	Deliveries int
	// Lost is Count minus Consumed; Duplicated counts deliveries of an already seen message.
	Lost, Duplicated int
	// Invalid counts bodies of the wrong size or with a sequence number out of range.
	Invalid int
	// Redelivered counts deliveries with an attempt count above 1.
	Redelivered int
	// FinFailed counts E_FIN_FAILED errors.
	FinFailed int
	// Stalled says the consume phase ended because no new message came for StallTimeout.
	Stalled bool
	// PeakRSS is the started nsqd's VmHWM in bytes, or -1 for an external nsqd;
	// PublishPeakRSS is the same at the end of the publish phase.
	PeakRSS, PublishPeakRSS int64
	// DiskWritten is what the started nsqd wrote to storage from the publish to the end of
	// the consume (write_bytes of /proc/<pid>/io), or -1 for an external nsqd or where the
	// kernel does not count it. DiskSetup is what it wrote before: creating the topic's
	// channels and applying settings, each of which rewrites the daemon's metadata file.
	DiskWritten, DiskSetup int64
}

// ok reports whether every message was published and then consumed exactly once.
func (r result) ok() bool {
	return r.ConsumeRan && r.Lost == 0 && r.Duplicated == 0 && r.Invalid == 0
}

// run publishes cfg.Count messages, then drains them from one channel, against the nsqd at
// cfg.NSQDTCPAddress or one it starts. It returns what it measured even when it fails, so
// the caller can print the phases that completed.
func run(ctx context.Context, cfg config, logger *slog.Logger) (res result, err error) {
	res.PeakRSS, res.PublishPeakRSS, res.DiskWritten, res.DiskSetup = -1, -1, -1, -1
	if err := cfg.validate(); err != nil {
		return res, err
	}
	addr := cfg.NSQDTCPAddress
	var d *daemon
	if addr == "" {
		if d, err = startDaemon(ctx, cfg, logger); err != nil {
			return res, err
		}
		defer func() {
			if stopErr := d.stop(); stopErr != nil {
				err = errors.Join(err, stopErr)
			}
		}()
		addr = d.tcpAddr
	}
	if cfg.hasSettings() {
		httpAddr := cfg.NSQDHTTPAddress
		if d != nil {
			httpAddr = d.httpAddr
		}
		if err := applySettings(ctx, cfg, httpAddr); err != nil {
			return res, fmt.Errorf("apply settings: %w", err)
		}
	}

	if cfg.Channels > 1 {
		if err := createChannels(ctx, cfg, addr); err != nil {
			return res, err
		}
	}
	if d != nil {
		if n, err := d.diskWritten(); err == nil {
			res.DiskSetup = n
		}
	}
	logger.Info("publishing", "nsqd", addr, "count", cfg.Count, "size", cfg.Size,
		"batch", cfg.Batch, "publishers", cfg.Publishers, "topics", cfg.Topics)
	elapsed, err := publish(ctx, cfg, addr)
	if err != nil {
		return res, fmt.Errorf("publish: %w", err)
	}
	res.Published, res.PublishElapsed = cfg.Count, elapsed
	if d != nil {
		if rss, err := d.peakRSS(); err == nil {
			res.PublishPeakRSS = rss
		}
	}

	logger.Info("consuming", "topic", cfg.Topic, "channel", cfg.Channel, "rdy", cfg.RDY,
		"consumers", cfg.consumers())
	tr := newTracker(cfg.Count, cfg.Channels, cfg.Size)
	cs, err := consume(ctx, cfg, addr, tr, logger)
	res.ConsumeRan = cs.ran
	res.Consumed = int(tr.distinct.Load())
	res.Lost = cfg.deliveries() - res.Consumed
	res.Duplicated = int(tr.duplicated.Load())
	res.Invalid = int(tr.invalid.Load())
	res.Deliveries, res.Redelivered, res.FinFailed = cs.deliveries, cs.redelivered, cs.finFailed
	res.Stalled = cs.stalled
	if err == nil {
		res.ConsumeElapsed = cs.elapsed
	}

	// The high-water mark is read before the daemon is stopped: shutdown must not count.
	if d != nil {
		rss, rssErr := d.peakRSS()
		if rssErr != nil {
			logger.Warn("cannot read the peak RSS of nsqd", "error", rssErr)
		} else {
			res.PeakRSS = rss
		}
		if n, err := d.diskWritten(); err == nil && res.DiskSetup >= 0 {
			res.DiskWritten = n - res.DiskSetup
		}
	}
	if err != nil {
		return res, fmt.Errorf("consume: %w", err)
	}
	if cs.stalled {
		logger.Warn("consume phase stalled", "stall_timeout", cfg.StallTimeout,
			"consumed", res.Consumed, "count", cfg.Count)
	}
	return res, nil
}

// tracker is the exactly-once check: one bit per sequence number and channel, shared by the
// consumers.
type tracker struct {
	count      int // deliveries expected: messages times channels
	perChannel int // messages
	size       int
	words      []atomic.Uint64
	distinct   atomic.Int64
	duplicated atomic.Int64
	invalid    atomic.Int64
	// complete is closed by the record call that sees the last missing message, after
	// setting completedAt; the close publishes completedAt to whoever receives from it.
	complete    chan struct{}
	completedAt time.Time
}

func newTracker(messages, channels, size int) *tracker {
	count := messages * max(channels, 1)
	return &tracker{
		count:      count,
		perChannel: messages,
		size:       size,
		words:      make([]atomic.Uint64, (count+63)/64),
		complete:   make(chan struct{}),
	}
}

// record notes the delivery of one body on the channel-th channel. It is safe for
// concurrent use.
func (t *tracker) record(body []byte, channel int) {
	if len(body) != t.size {
		t.invalid.Add(1)
		return
	}
	seq := binary.BigEndian.Uint64(body)
	if seq >= uint64(t.perChannel) {
		t.invalid.Add(1)
		return
	}
	seq += uint64(channel) * uint64(t.perChannel)
	mask := uint64(1) << (seq & 63)
	if t.words[seq>>6].Or(mask)&mask != 0 {
		t.duplicated.Add(1)
		return
	}
	if t.distinct.Add(1) == int64(t.count) {
		t.completedAt = time.Now()
		close(t.complete)
	}
}

// completed reports whether every message has been seen.
func (t *tracker) completed() bool { return t.distinct.Load() == int64(t.count) }

// publish runs the publish phase: cfg.Publishers connections share the batches of
// cfg.Count messages, each sending one MPUB at a time and waiting for its OK. The time is
// measured from when every connection is ready to the last OK.
func publish(ctx context.Context, cfg config, addr string) (time.Duration, error) {
	full, err := newMPUB(cfg.Topic, cfg.Batch, cfg.Size)
	if err != nil {
		return 0, err
	}
	// Only the last batch can be short, and only one publisher sends it.
	var tail *mpub
	if rest := cfg.Count % cfg.Batch; rest != 0 {
		if tail, err = newMPUB(cfg.Topic, rest, cfg.Size); err != nil {
			return 0, err
		}
	}
	// The command line of each topic; the payload after it is the same for all.
	lines := make([][]byte, cfg.Topics)
	for i := range lines {
		lines[i] = fmt.Appendf(nil, "MPUB %s\n", cfg.topicName(i))
	}

	pubs := make([]*publisher, 0, cfg.Publishers)
	defer func() {
		for _, p := range pubs {
			_ = p.conn.Close()
		}
	}()
	for range cfg.Publishers {
		conn, r, err := handshake(ctx, addr, protocol.IdentifyRequest{})
		if err != nil {
			return 0, err
		}
		pubs = append(pubs, &publisher{conn: conn, r: r, full: full.clone(), tail: tail, lines: lines})
	}
	// Closing the connections is what interrupts publishers blocked on the network.
	stop := context.AfterFunc(ctx, func() {
		for _, p := range pubs {
			_ = p.conn.Close()
		}
	})
	defer stop()

	var (
		next    atomic.Int64
		batches = int64((cfg.Count + cfg.Batch - 1) / cfg.Batch)
		errs    = make([]error, len(pubs))
		wg      sync.WaitGroup
	)
	start := time.Now()
	for i, p := range pubs {
		wg.Go(func() {
			errs[i] = p.run(&next, batches, cfg.Batch)
			if errs[i] != nil {
				// One failed publisher ends the phase: the count could not be reached.
				_ = p.conn.Close()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return elapsed, nil
}

// mpub is an MPUB command in wire form whose message bodies are rewritten in place, so a
// publisher sends batch after batch without building or allocating anything. wire is the
// command line followed by the payload, which starts at payload.
type mpub struct {
	wire    []byte
	payload int
	// first is the offset of the first body in wire; each next body is stride further on.
	first, stride, n int
}

// newMPUB builds the wire form of an MPUB of n bodies of size bytes, with protocol's
// encoder so the layout is the one the server expects.
func newMPUB(topic string, n, size int) (*mpub, error) {
	backing := bytes.Repeat([]byte{'a'}, n*size)
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = backing[i*size : (i+1)*size]
	}
	cmd, err := protocol.MultiPublish(topic, bodies)
	if err != nil {
		return nil, fmt.Errorf("build MPUB: %w", err)
	}
	wire := cmd.AppendTo(nil)
	// The command ends with [4-byte body size][4-byte count]([4-byte size][body])*n, the
	// last part being cmd.Body.
	payload := len(wire) - len(cmd.Body) - 4
	m := &mpub{wire: wire, payload: payload, first: payload + 4 + 4 + 4, stride: 4 + size, n: n}
	if got := binary.BigEndian.Uint32(wire[m.first-4:]); int(got) != size {
		return nil, fmt.Errorf("unexpected MPUB layout: first message size %d, want %d", got, size)
	}
	return m, nil
}

// clone returns a copy with its own buffer, for another publisher.
func (m *mpub) clone() *mpub {
	c := *m
	c.wire = bytes.Clone(m.wire)
	return &c
}

// number writes the sequence numbers first, first+1, ... into the bodies.
func (m *mpub) number(first uint64) {
	for i := range m.n {
		binary.BigEndian.PutUint64(m.wire[m.first+i*m.stride:], first+uint64(i))
	}
}

// publisher is one publishing connection; its run loop is its only user.
type publisher struct {
	conn net.Conn
	r    *bufio.Reader
	full *mpub
	// tail is shared but used by the one publisher that takes the last batch.
	tail *mpub
	// lines are the MPUB command lines of the topics, used in turn.
	lines [][]byte
}

// run takes batch numbers from next until there are none left, sending each as one MPUB
// and waiting for its OK.
func (p *publisher) run(next *atomic.Int64, batches int64, batchSize int) error {
	for {
		b := next.Add(1) - 1
		if b >= batches {
			return nil
		}
		m := p.full
		if b == batches-1 && p.tail != nil {
			m = p.tail
		}
		m.number(uint64(b) * uint64(batchSize))
		wire := net.Buffers{p.lines[b%int64(len(p.lines))], m.wire[m.payload:]}
		if _, err := wire.WriteTo(p.conn); err != nil {
			return fmt.Errorf("send MPUB: %w", err)
		}
		if err := expectOK(p.conn, p.r); err != nil {
			return fmt.Errorf("MPUB: %w", err)
		}
	}
}

// wire forms of the commands without parameters.
var (
	nopWire = protocol.Nop().AppendTo(nil)
	clsWire = protocol.StartClose().AppendTo(nil)
)

// readResponse reads frames until a response that is not a heartbeat, answering heartbeats
// with NOP, and returns its data. An error frame is returned as a *protocol.Error.
func readResponse(w net.Conn, r *bufio.Reader) ([]byte, error) {
	for {
		ft, data, err := protocol.ReadFrame(r, maxControlFrame)
		if err != nil {
			return nil, err
		}
		switch ft {
		case protocol.FrameTypeResponse:
			if string(data) == protocol.Heartbeat {
				if _, err := w.Write(nopWire); err != nil {
					return nil, fmt.Errorf("answer heartbeat: %w", err)
				}
				continue
			}
			return data, nil
		case protocol.FrameTypeError:
			return nil, protocol.ParseError(data)
		default:
			return nil, fmt.Errorf("unexpected %s frame", ft)
		}
	}
}

// expectOK reads the answer to a command and fails unless it is OK.
func expectOK(w net.Conn, r *bufio.Reader) error {
	data, err := readResponse(w, r)
	if err != nil {
		return err
	}
	if string(data) != protocol.OK {
		return fmt.Errorf("unexpected response %q", data)
	}
	return nil
}

// handshake connects to addr, sends the magic and an IDENTIFY with feature negotiation
// built from req, and returns the connection with a reader positioned after the answer.
func handshake(ctx context.Context, addr string, req protocol.IdentifyRequest) (net.Conn, *bufio.Reader, error) {
	conn, r, _, err := handshakeSized(ctx, addr, req, 4096)
	return conn, r, err
}

// handshakeSized is handshake with a chosen read buffer size; it also returns the server's
// IDENTIFY answer.
func handshakeSized(ctx context.Context, addr string, req protocol.IdentifyRequest, readBuf int) (net.Conn, *bufio.Reader, protocol.IdentifyResponse, error) {
	var resp protocol.IdentifyResponse
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, protocol.Network(addr), addr)
	if err != nil {
		return nil, nil, resp, fmt.Errorf("connect to nsqd: %w", err)
	}
	if err := identify(conn, req, &resp); err != nil {
		_ = conn.Close()
		return nil, nil, resp, fmt.Errorf("handshake with %s: %w", addr, err)
	}
	return conn, bufio.NewReaderSize(conn, readBuf), resp, nil
}

// identify sends the magic and IDENTIFY and decodes the answer into resp. It reads the
// answer unbuffered, byte-exact, so no later frame is consumed before the caller's reader
// exists.
func identify(conn net.Conn, req protocol.IdentifyRequest, resp *protocol.IdentifyResponse) error {
	host, _ := os.Hostname()
	req.ClientID = "nsqbench"
	req.Hostname = host
	req.UserAgent = "nsqbench"
	req.FeatureNegotiation = true
	cmd, err := protocol.Identify(req)
	if err != nil {
		return err
	}
	if _, err := conn.Write(cmd.AppendTo([]byte(protocol.MagicV2))); err != nil {
		return fmt.Errorf("send IDENTIFY: %w", err)
	}
	// Nothing but the answer can arrive before it, not even a heartbeat.
	ft, data, err := protocol.ReadFrame(conn, maxControlFrame)
	if err != nil {
		return fmt.Errorf("read IDENTIFY answer: %w", err)
	}
	switch {
	case ft == protocol.FrameTypeError:
		return protocol.ParseError(data)
	case ft != protocol.FrameTypeResponse:
		return fmt.Errorf("unexpected %s frame answering IDENTIFY", ft)
	case string(data) == protocol.OK:
		return nil // a server without feature negotiation; the defaults apply
	}
	if err := json.Unmarshal(data, resp); err != nil {
		return fmt.Errorf("decode IDENTIFY answer: %w", err)
	}
	if resp.TLSv1 || resp.Snappy || resp.Deflate {
		return errors.New("the server enabled TLS or compression, which were not asked for")
	}
	return nil
}

// consumeStats is what the consumers counted, besides the tracker.
type consumeStats struct {
	ran                                bool
	stalled                            bool
	elapsed                            time.Duration
	deliveries, redelivered, finFailed int
}

// createChannels makes the fan-out's channels before the publish, so that each receives
// every message: a subscription creates a channel, which stays when its consumer leaves.
func createChannels(ctx context.Context, cfg config, addr string) error {
	for i := range cfg.Channels {
		conn, r, err := handshake(ctx, addr, protocol.IdentifyRequest{})
		if err != nil {
			return err
		}
		_, err = protocol.Subscribe(cfg.Topic, cfg.channelName(i)).WriteTo(conn)
		if err == nil {
			err = expectOK(conn, r)
		}
		_ = conn.Close()
		if err != nil {
			return fmt.Errorf("create channel %s: %w", cfg.channelName(i), err)
		}
	}
	return nil
}

// consume runs the consume phase: cfg.Consumers connections subscribe to the channel, which
// receives the whole backlog, and FIN everything until the tracker has seen every message,
// nothing new arrives for cfg.StallTimeout, or ctx ends. The time is measured from the first
// RDY to the last new message.
func consume(ctx context.Context, cfg config, addr string, tr *tracker, logger *slog.Logger) (consumeStats, error) {
	var cs consumeStats
	cons := make([]*consumer, 0, cfg.consumers())
	defer func() {
		for _, c := range cons {
			_ = c.conn.Close()
		}
	}()
	rdy := cfg.RDY
	for i := range cfg.consumers() {
		c, maxRdy, err := dialConsumer(ctx, cfg, cfg.topicName(i%cfg.Topics), i%max(cfg.Channels, 1), addr, tr)
		if err != nil {
			return cs, err
		}
		cons = append(cons, c)
		if maxRdy > 0 && int64(rdy) > maxRdy {
			logger.Warn("lowering RDY to the server's maximum", "rdy", rdy, "max_rdy_count", maxRdy)
			rdy = int(maxRdy)
		}
	}
	stop := context.AfterFunc(ctx, func() {
		for _, c := range cons {
			_ = c.conn.Close()
		}
	})
	defer stop()

	var (
		stopping atomic.Bool
		wg       sync.WaitGroup
		errs     = make([]error, len(cons))
		failed   = make(chan struct{}, len(cons))
	)
	rdyWire := protocol.Ready(rdy).AppendTo(nil)
	cs.ran = true
	start := time.Now()
	for i, c := range cons {
		c.flushAt = max(rdy/4, 1)
		wg.Go(func() {
			if errs[i] = c.run(rdyWire, &stopping); errs[i] != nil {
				failed <- struct{}{}
			}
		})
	}

	// Watch for the end: every message seen, a consumer failing, a stall, or the time limit.
	// The tick only paces the stall check; completion is signalled, not polled.
	tick := time.NewTicker(min(cfg.StallTimeout/4, 250*time.Millisecond))
	defer tick.Stop()
	last, lastChange := int64(0), start
	end := start
watch:
	for {
		select {
		case <-tr.complete:
			end = tr.completedAt
			break watch
		case <-failed:
			break watch
		case <-ctx.Done():
			break watch
		case now := <-tick.C:
			if n := tr.distinct.Load(); n != last {
				last, lastChange = n, now
			} else if now.Sub(lastChange) >= cfg.StallTimeout {
				cs.stalled = true
				end = lastChange
				break watch
			}
		}
	}
	stopping.Store(true)
	wg.Wait()
	cs.elapsed = end.Sub(start)
	for _, c := range cons {
		cs.deliveries += c.deliveries
		cs.redelivered += c.redelivered
		cs.finFailed += c.finFailed
	}
	if ctx.Err() != nil {
		return cs, ctx.Err()
	}
	return cs, errors.Join(errs...)
}

// dialConsumer connects, identifies and subscribes; it returns the server's max_rdy_count,
// 0 if unknown.
func dialConsumer(ctx context.Context, cfg config, topic string, channel int, addr string, tr *tracker) (*consumer, int64, error) {
	readBuf := max(minReadBuffer, min(consumerReadBuffer, consumerReadBuffers/cfg.consumers()))
	heartbeat := protocol.IdentifyRequest{HeartbeatInterval: int(cfg.Heartbeat.Milliseconds())}
	conn, r, resp, err := handshakeSized(ctx, addr, heartbeat, readBuf)
	if err != nil {
		return nil, 0, err
	}
	if _, err := protocol.Subscribe(topic, cfg.channelName(channel)).WriteTo(conn); err != nil {
		_ = conn.Close()
		return nil, 0, fmt.Errorf("send SUB: %w", err)
	}
	if err := expectOK(conn, r); err != nil {
		_ = conn.Close()
		return nil, 0, fmt.Errorf("SUB: %w", err)
	}
	var id protocol.MessageID
	fin := protocol.Finish(id).AppendTo(nil)
	c := &consumer{
		conn:     conn,
		r:        r,
		w:        bufio.NewWriterSize(conn, consumerWriteBuffer),
		tr:       tr,
		channel:  channel,
		fin:      fin,
		finID:    len(fin) - 1 - protocol.MsgIDLength, // "FIN <id>\n"
		maxFrame: 4 + protocol.MessageHeaderLength + max(cfg.Size, maxControlFrame),
	}
	return c, resp.MaxRdyCount, nil
}

// consumer is one subscribed connection. Its run loop is the only user of every field.
type consumer struct {
	conn net.Conn
	r    *bufio.Reader
	// w batches FINs: one write per flushAt of them, or whenever r has nothing buffered, so
	// FINs are neither held back while the consumer waits nor sent one syscall each.
	w       *bufio.Writer
	tr      *tracker
	channel int // the index of the channel it consumes, for the tracker
	pending int
	flushAt int
	// fin is a FIN command in wire form whose ID, at finID, is rewritten per message.
	fin      []byte
	finID    int
	maxFrame int

	deliveries, redelivered, finFailed int
}

// run sends RDY, then FINs every message until stopping is set, then closes the
// subscription cleanly with CLS; the messages that arrive before CLOSE_WAIT are still
// recorded, so a late duplicate is caught. A consumer blocked on a quiet connection notices
// stopping at its next heartbeat.
func (c *consumer) run(rdyWire []byte, stopping *atomic.Bool) error {
	if _, err := c.w.Write(rdyWire); err != nil {
		return fmt.Errorf("send RDY: %w", err)
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("send RDY: %w", err)
	}
	// The consumer that receives the last missing message sees it at once; the others learn
	// it from stopping.
	for !stopping.Load() && !c.tr.completed() {
		if _, err := c.step(); err != nil {
			return err
		}
	}
	if _, err := c.w.Write(clsWire); err != nil {
		return fmt.Errorf("send CLS: %w", err)
	}
	if err := c.flush(); err != nil {
		return err
	}
	if err := c.conn.SetReadDeadline(time.Now().Add(drainTimeout)); err != nil {
		return fmt.Errorf("set read deadline: %w", err)
	}
	for {
		closed, err := c.step()
		if err != nil {
			return fmt.Errorf("wait for CLOSE_WAIT: %w", err)
		}
		if closed {
			return c.flush()
		}
	}
}

// step reads and handles one frame, flushing pending writes when due. It reports whether
// the frame was CLOSE_WAIT.
func (c *consumer) step() (closeWait bool, err error) {
	ft, data, err := protocol.ReadFrame(c.r, c.maxFrame)
	if err != nil {
		return false, err
	}
	switch ft {
	case protocol.FrameTypeMessage:
		_, attempts, id, body, err := protocol.DecodeMessage(data)
		if err != nil {
			return false, err
		}
		c.deliveries++
		if attempts > 1 {
			c.redelivered++
		}
		c.tr.record(body, c.channel)
		copy(c.fin[c.finID:], id[:])
		_, _ = c.w.Write(c.fin) // a write error is kept by w and returned by the flush
		c.pending++
	case protocol.FrameTypeResponse:
		switch string(data) {
		case protocol.Heartbeat:
			_, _ = c.w.Write(nopWire)
			c.pending++
		case protocol.CloseWait:
			closeWait = true
		}
	case protocol.FrameTypeError:
		e := protocol.ParseError(data)
		if e.Code != protocol.ErrFinFailed {
			return false, e
		}
		c.finFailed++
	default:
		return false, fmt.Errorf("unexpected %s frame", ft)
	}
	if c.pending >= c.flushAt || c.r.Buffered() == 0 {
		return closeWait, c.flush()
	}
	return closeWait, nil
}

// flush sends the pending FINs and NOPs.
func (c *consumer) flush() error {
	c.pending = 0
	if c.w.Buffered() == 0 {
		return nil
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("send FIN: %w", err)
	}
	return nil
}
