package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/protocol"
)

// How the slow part's consumer stalls.
const (
	// stallNoFin keeps reading (and answering heartbeats) but answers no message: a handler
	// stuck on a slow downstream. Its RDY fills up, and what times out is delivered again.
	stallNoFin = "nofin"
	// stallRDY0 sends RDY 0, as a client pausing itself does.
	stallRDY0 = "rdy0"
	// stallDisconnect closes the connection; resuming subscribes again.
	stallDisconnect = "disconnect"
)

var stallModes = []string{stallNoFin, stallRDY0, stallDisconnect}

const (
	slowTopic                = "slow"
	fastChannel, slowChannel = "fast", "slow"
	// sampleInterval is how often the RSS, rates and backlog are read.
	sampleInterval = time.Second
	// rssSeriesPoints is about how many RSS readings the table shows for the stall.
	rssSeriesPoints = 6
)

// tracker counts one channel's deliveries by sequence number. It is safe for concurrent use.
type tracker struct {
	mu         sync.Mutex
	seen       []uint64 // bitset of the sequence numbers received
	unique     int64
	deliveries int64
	lat        []time.Duration // publish-to-delivery latencies since the last takeLatencies
	maxLat     time.Duration   // the largest latency since the last takeMax
}

func (t *tracker) record(seq uint64, lat time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.deliveries++
	w := seq / 64
	for uint64(len(t.seen)) <= w {
		t.seen = append(t.seen, 0)
	}
	if t.seen[w]&(1<<(seq%64)) == 0 {
		t.seen[w] |= 1 << (seq % 64)
		t.unique++
		t.lat = append(t.lat, lat)
		t.maxLat = max(t.maxLat, lat)
	}
}

// takeMax returns the largest latency since the last call.
func (t *tracker) takeMax() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.maxLat
	t.maxLat = 0
	return m
}

// counts returns the messages received, once each, and the deliveries.
func (t *tracker) counts() (unique, deliveries int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.unique, t.deliveries
}

// takeLatencies returns the latencies recorded since the last call.
func (t *tracker) takeLatencies() []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	lat := t.lat
	t.lat = nil
	return lat
}

// missingBelow counts the sequence numbers in [0, n) not received.
func (t *tracker) missingBelow(n uint64) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var have uint64
	for w := uint64(0); w < n/64 && w < uint64(len(t.seen)); w++ {
		have += uint64(bits.OnesCount64(t.seen[w]))
	}
	if w := n / 64; n%64 != 0 && w < uint64(len(t.seen)) {
		have += uint64(bits.OnesCount64(t.seen[w] & (1<<(n%64) - 1)))
	}
	return n - have
}

// consumer is one channel's consumer: one connection at a time (a new one after a
// disconnect), with RDY rdy, answering every message with FIN unless stalled.
type consumer struct {
	addr, channel string
	rdy           int
	hb            time.Duration
	tr            tracker
	finFailed     atomic.Int64 // FINs refused, for messages that timed out while held
	loops         sync.WaitGroup

	mu       sync.Mutex
	conn     *consumerConn
	stalled  bool                 // nofin: messages are held, not finished
	held     []protocol.MessageID // the messages held while stalled
	firstErr error
}

// consumerConn is one connection of a consumer; quitting says the tool closes it on purpose.
type consumerConn struct {
	c        *client
	quitting atomic.Bool
}

func (k *consumer) fail(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.firstErr == nil {
		k.firstErr = fmt.Errorf("%s consumer: %w", k.channel, err)
	}
}

func (k *consumer) err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.firstErr
}

// connect subscribes a new connection and starts its read loop.
func (k *consumer) connect(ctx context.Context) error {
	c, err := dial(ctx, k.addr, nil, k.hb, "nsqscale "+k.channel)
	if err != nil {
		return err
	}
	if err := c.subscribe(slowTopic, k.channel, k.rdy); err != nil {
		_ = c.close()
		return err
	}
	cc := &consumerConn{c: c}
	k.mu.Lock()
	k.conn = cc
	k.mu.Unlock()
	k.loops.Add(1)
	go k.readLoop(cc)
	return nil
}

// readLoop is the connection's only reader until it closes: it records each message and
// finishes it, or holds it while a nofin stall lasts.
func (k *consumer) readLoop(cc *consumerConn) {
	defer k.loops.Done()
	for {
		ft, data, err := cc.c.next()
		if err != nil {
			if !cc.quitting.Load() {
				k.fail(err)
			}
			return
		}
		switch ft {
		case protocol.FrameTypeMessage:
			_, _, id, body, err := protocol.DecodeMessage(data)
			if err != nil {
				k.fail(err)
				continue
			}
			seq, sent, ok := readStamp(body)
			if !ok {
				k.fail(fmt.Errorf("message body of %d bytes", len(body)))
				continue
			}
			k.tr.record(seq, time.Since(sent))
			k.mu.Lock()
			hold := k.stalled
			if hold {
				k.held = append(k.held, id)
			}
			k.mu.Unlock()
			if !hold {
				if err := cc.c.send(protocol.Finish(id)); err != nil && !cc.quitting.Load() {
					k.fail(err)
				}
			}
		case protocol.FrameTypeError:
			// A held message that timed out was given to the channel again: its FIN is
			// refused, and not fatal.
			if strings.HasPrefix(string(data), "E_FIN_FAILED") {
				k.finFailed.Add(1)
				continue
			}
			k.fail(fmt.Errorf("error frame %q", data))
		}
	}
}

// stall stops the consumer as mode says.
func (k *consumer) stall(mode string) error {
	k.mu.Lock()
	cc := k.conn
	switch mode {
	case stallNoFin:
		k.stalled = true
	case stallDisconnect:
		k.conn = nil
	}
	k.mu.Unlock()
	switch mode {
	case stallRDY0:
		return cc.c.send(protocol.Ready(0))
	case stallDisconnect:
		cc.quitting.Store(true)
		return cc.c.close()
	}
	return nil
}

// resume undoes stall: it finishes the held messages, sends RDY again or subscribes anew.
func (k *consumer) resume(ctx context.Context, mode string) error {
	switch mode {
	case stallNoFin:
		k.mu.Lock()
		k.stalled = false
		held := k.held
		k.held = nil
		cc := k.conn
		k.mu.Unlock()
		for len(held) > 0 {
			n := min(len(held), 500)
			cmds := make([]*protocol.Command, n)
			for i, id := range held[:n] {
				cmds[i] = protocol.Finish(id)
			}
			if err := cc.c.send(cmds...); err != nil {
				return err
			}
			held = held[n:]
		}
		return nil
	case stallRDY0:
		k.mu.Lock()
		cc := k.conn
		k.mu.Unlock()
		return cc.c.send(protocol.Ready(k.rdy))
	default:
		return k.connect(ctx)
	}
}

// close closes the connection and waits for its read loop.
func (k *consumer) close() {
	k.mu.Lock()
	cc := k.conn
	k.conn = nil
	k.mu.Unlock()
	if cc != nil {
		cc.quitting.Store(true)
		_ = cc.c.close()
	}
	k.loops.Wait()
}

// steadyPublisher publishes rate messages a second, pipelined, on one connection, until its
// context ends; each body carries its sequence number and send time.
type steadyPublisher struct {
	c     *client
	sent  atomic.Uint64
	acked atomic.Uint64
	// ackErr receives the reader's error, once.
	ackErr chan error
}

func startPublisher(ctx context.Context, addr string, hb time.Duration) (*steadyPublisher, error) {
	c, err := dial(ctx, addr, nil, hb, "nsqscale publisher")
	if err != nil {
		return nil, err
	}
	p := &steadyPublisher{c: c, ackErr: make(chan error, 1)}
	go func() { // the OKs, read as they come, until the connection closes
		for {
			ft, data, err := c.next()
			if err != nil {
				p.ackErr <- err
				return
			}
			if ft != protocol.FrameTypeResponse || string(data) != protocol.OK {
				p.ackErr <- fmt.Errorf("publisher: %s frame %q", ft, data)
				return
			}
			p.acked.Add(1)
		}
	}()
	return p, nil
}

// run paces the publishing every millisecond until ctx ends.
func (p *steadyPublisher) run(ctx context.Context, rate, size int) error {
	body := make([]byte, size)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var wire []byte
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		due := uint64(time.Since(start) * time.Duration(rate) / time.Second)
		wire = wire[:0]
		for seq := p.sent.Load(); seq < due; seq++ {
			stampBody(body, seq, time.Now())
			wire = protocol.Publish(slowTopic, body).AppendTo(wire)
		}
		if len(wire) == 0 {
			continue
		}
		if err := p.c.writeRaw(wire); err != nil {
			return fmt.Errorf("publisher: %w", err)
		}
		p.sent.Store(due)
	}
}

// slowSample is the state read once every sampleInterval.
type slowSample struct {
	at                  time.Time
	phase               string
	rss                 int64
	acked               uint64
	fast, slow          int64         // unique messages received
	fastMax             time.Duration // the fast channel's largest latency in the interval
	slowDepth, inFlight int64         // the slow channel's, per /stats
}

// runSlow is the slow part: a channel whose consumer stalls while the topic's other channel
// keeps up with a steady publisher.
func runSlow(ctx context.Context, cfg config, logger *slog.Logger, rep *section) (err error) {
	d, err := startDaemon(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, d.close()) }()
	if err := createTopic(ctx, d, slowTopic, fastChannel, slowChannel); err != nil {
		return err
	}
	rep.add("load", "1 publisher at %d msgs/s of %d B; channels %s and %s, one consumer each, RDY %d; the %s consumer stalls for %v (%s)",
		cfg.Rate, cfg.Size, fastChannel, slowChannel, cfg.RDY, slowChannel, cfg.Stall, cfg.StallMode)
	start, err := d.quietRSS(ctx, cfg.Settle)
	if err != nil {
		return err
	}
	rep.add("RSS at the start", "%s", mib(start))

	fast := &consumer{addr: d.tcpAddr, channel: fastChannel, rdy: cfg.RDY, hb: cfg.Heartbeat}
	slow := &consumer{addr: d.tcpAddr, channel: slowChannel, rdy: cfg.RDY, hb: cfg.Heartbeat}
	for _, k := range []*consumer{fast, slow} {
		if err := k.connect(ctx); err != nil {
			return err
		}
		defer k.close()
	}
	pub, err := startPublisher(ctx, d.tcpAddr, cfg.Heartbeat)
	if err != nil {
		return err
	}
	defer func() { _ = pub.c.close() }()
	pubCtx, stopPub := context.WithCancel(ctx)
	defer stopPub()
	pubDone := make(chan error, 1)
	go func() { pubDone <- pub.run(pubCtx, cfg.Rate, cfg.Size) }()

	// The sampler reads the state once a second; phase says which part of the run it is in.
	var (
		phaseMu sync.Mutex
		phase   = "before"
		samples []slowSample
	)
	setPhase := func(p string) {
		phaseMu.Lock()
		phase = p
		phaseMu.Unlock()
	}
	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(sampleInterval)
		defer tick.Stop()
		for {
			select {
			case <-sampleCtx.Done():
				return
			case <-tick.C:
			}
			s := slowSample{at: time.Now(), acked: pub.acked.Load()}
			s.rss, _ = d.rss()
			s.fast, _ = fast.tr.counts()
			s.fastMax = fast.tr.takeMax()
			s.slow, _ = slow.tr.counts()
			if st, err := d.stats(sampleCtx, slowTopic); err == nil {
				for _, t := range st.Topics {
					for _, c := range t.Channels {
						if c.Name == slowChannel {
							s.slowDepth, s.inFlight = c.Depth, c.InFlightCount
						}
					}
				}
			}
			phaseMu.Lock()
			s.phase = phase
			var prev slowSample
			if len(samples) > 0 {
				prev = samples[len(samples)-1]
			}
			samples = append(samples, s)
			phaseMu.Unlock()
			if prev.at.IsZero() {
				continue
			}
			secs := s.at.Sub(prev.at).Seconds()
			logger.Info("sample", "phase", s.phase, "rss_mib", s.rss>>20,
				"published_per_s", int(float64(s.acked-prev.acked)/secs),
				"fast_per_s", int(float64(s.fast-prev.fast)/secs), "fast_max_latency", s.fastMax.Round(time.Microsecond), "slow_per_s", int(float64(s.slow-prev.slow)/secs),
				"slow_depth", s.slowDepth, "slow_in_flight", s.inFlight)
		}
	}()
	defer func() {
		stopSampling()
		<-sampled
	}()

	// failed checks the publisher and the consumers between the phases.
	failed := func() error {
		select {
		case err := <-pubDone:
			return fmt.Errorf("publisher stopped: %v", err)
		case err := <-pub.ackErr:
			return fmt.Errorf("publisher: %w", err)
		default:
		}
		return errors.Join(fast.err(), slow.err())
	}
	// window runs one phase of d, dropping the latencies of the first second, and returns
	// the fast channel's rate and latencies, and the slow channel's rate, over the rest.
	type windowResult struct {
		fastRate, slowRate float64
		fastLat            []time.Duration
	}
	window := func(d time.Duration) (windowResult, error) {
		if err := sleep(ctx, time.Second); err != nil {
			return windowResult{}, err
		}
		fast.tr.takeLatencies()
		f0, _ := fast.tr.counts()
		s0, _ := slow.tr.counts()
		t0 := time.Now()
		if err := sleep(ctx, d-time.Second); err != nil {
			return windowResult{}, err
		}
		f1, _ := fast.tr.counts()
		s1, _ := slow.tr.counts()
		secs := time.Since(t0).Seconds()
		return windowResult{
			fastRate: float64(f1-f0) / secs, slowRate: float64(s1-s0) / secs,
			fastLat: fast.tr.takeLatencies(),
		}, failed()
	}

	logger.Info("both consumers draining", "for", cfg.Before)
	before, err := window(cfg.Before)
	if err != nil {
		return err
	}
	rssBefore, _ := d.rss()

	logger.Info("stalling", "consumer", slowChannel, "mode", cfg.StallMode, "for", cfg.Stall)
	setPhase("stall")
	stallStart := time.Now()
	if err := slow.stall(cfg.StallMode); err != nil {
		return err
	}
	during, err := window(cfg.Stall)
	if err != nil {
		return err
	}
	endSample := slowSample{}
	if st, err := d.stats(ctx, slowTopic); err == nil {
		for _, t := range st.Topics {
			for _, c := range t.Channels {
				if c.Name == slowChannel {
					endSample.slowDepth, endSample.inFlight = c.Depth, c.InFlightCount
				}
			}
		}
	}
	endSample.rss, _ = d.rss()
	slowGot, _ := slow.tr.counts()
	backlog := int64(pub.acked.Load()) - slowGot
	disk, _ := d.diskUsage()
	d.profile(ctx, cfg.ProfileDir, "slow-stalled.heap", "heap")

	setPhase("catch-up")
	resumeAt := pub.sent.Load()
	resumed := time.Now()
	logger.Info("resuming", "consumer", slowChannel, "behind", backlog)
	if err := slow.resume(ctx, cfg.StallMode); err != nil {
		return err
	}
	var caughtUp time.Duration
	for deadline := resumed.Add(cfg.CatchUp); ; {
		if slow.tr.missingBelow(resumeAt) == 0 {
			caughtUp = time.Since(resumed)
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the %s consumer did not catch up within %v: %d of the %d messages published before it resumed are missing",
				slowChannel, cfg.CatchUp, slow.tr.missingBelow(resumeAt), resumeAt)
		}
		if err := failed(); err != nil {
			return err
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	rssCaughtUp, _ := d.rss()
	logger.Info("caught up", "after", caughtUp)

	// The end: publishing stops, and both channels must have received everything once.
	stopPub()
	if err := <-pubDone; err != nil {
		return err
	}
	total := pub.sent.Load()
	for deadline := time.Now().Add(time.Minute); ; {
		fu, _ := fast.tr.counts()
		su, _ := slow.tr.counts()
		if pub.acked.Load() == total && fu == int64(total) && su == int64(total) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("a minute after publishing stopped: %d of %d acknowledged, %s received %d, %s received %d",
				pub.acked.Load(), total, fastChannel, fu, slowChannel, su)
		}
		if err := failed(); err != nil {
			return err
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	stopSampling()
	<-sampled

	rep.add(fastChannel+" channel before the stall", "%.0f msgs/s, latency %s", before.fastRate, latencies(before.fastLat))
	rep.add(fastChannel+" channel during the stall", "%.0f msgs/s, latency %s", during.fastRate, latencies(during.fastLat))
	rep.add(slowChannel+" channel before / during the stall", "%.0f / %.0f msgs/s", before.slowRate, during.slowRate)
	rep.add("RSS before the stall", "%s", mib(rssBefore))
	var series []string
	var lo, hi int64 = -1, 0
	every := max((cfg.Stall / rssSeriesPoints).Truncate(time.Second), time.Second)
	next := stallStart.Add(every)
	for _, s := range samples {
		if s.phase != "stall" {
			continue
		}
		if lo < 0 || s.rss < lo {
			lo = s.rss
		}
		hi = max(hi, s.rss)
		if !s.at.Before(next) {
			series = append(series, fmt.Sprintf("%d", (s.rss+1<<19)>>20))
			next = next.Add(every)
		}
	}
	rep.add("RSS during the stall", "%s to %s; every %v: %s MiB", mib(lo), mib(hi), every, strings.Join(series, ", "))
	rep.add("at the end of the stall", "%d messages behind (/stats depth %d, in flight %d); RSS %s; data path %s",
		backlog, endSample.slowDepth, endSample.inFlight, mib(endSample.rss), mib(disk))
	behind := int64(resumeAt) - slowGot
	rep.add("catch-up", "%.1f s for the %d messages behind (%.0f msgs/s), publishing on",
		caughtUp.Seconds(), behind, float64(behind)/caughtUp.Seconds())
	rep.add("RSS once caught up", "%s", mib(rssCaughtUp))
	_, fd := fast.tr.counts()
	_, sd := slow.tr.counts()
	rep.add("delivered", "%d published; %s: all %d, %d deliveries; %s: all %d, %d deliveries, %d FINs refused",
		total, fastChannel, total, fd, slowChannel, total, sd, slow.finFailed.Load())
	return nil
}
