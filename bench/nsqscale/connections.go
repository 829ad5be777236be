package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/protocol"
)

const (
	// connectWorkers is how many clients connect at once.
	connectWorkers = 64
	// sampleEvery paces the /ping and PUB latency samples.
	sampleEvery = 10 * time.Millisecond
	// connBodySize is the size of the messages of the connections part.
	connBodySize = 100
	// connChannel is the channel every consumer of a topic shares.
	connChannel = "ch"
)

// connLoad is the state the clients of the connections part share.
type connLoad struct {
	closing   atomic.Bool  // set before the tool closes the clients: reads failing then are expected
	published atomic.Int64 // OKs the publishing clients received
	delivered atomic.Int64 // messages the consuming clients received
	dropped   atomic.Int64 // clients whose connection failed while the tool still used it
	errFrames atomic.Int64

	mu       sync.Mutex
	e2e      []time.Duration // publish-to-delivery latencies, under mu
	firstErr error           // the first failure of a read loop, under mu
	loops    sync.WaitGroup  // the read loops
}

func (l *connLoad) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.firstErr == nil {
		l.firstErr = err
	}
}

func (l *connLoad) err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.firstErr
}

// readLoop is a client's only reader once it is connected: it answers heartbeats (in
// next), counts a publisher's OKs and answers a consumer's messages with FIN. It returns
// when the connection closes.
func (l *connLoad) readLoop(c *client) {
	defer l.loops.Done()
	for {
		ft, data, err := c.next()
		if err != nil {
			if !l.closing.Load() {
				l.dropped.Add(1)
				l.fail(fmt.Errorf("connection lost: %w", err))
			}
			return
		}
		switch ft {
		case protocol.FrameTypeMessage:
			_, _, id, body, err := protocol.DecodeMessage(data)
			if err != nil {
				l.fail(err)
				continue
			}
			if _, sent, ok := readStamp(body); ok {
				lat := time.Since(sent)
				l.mu.Lock()
				l.e2e = append(l.e2e, lat)
				l.mu.Unlock()
			}
			l.delivered.Add(1)
			if err := c.send(protocol.Finish(id)); err != nil && !l.closing.Load() {
				l.fail(fmt.Errorf("FIN: %w", err))
			}
		case protocol.FrameTypeResponse:
			if string(data) == protocol.OK {
				l.published.Add(1)
			}
		case protocol.FrameTypeError:
			l.errFrames.Add(1)
			l.fail(fmt.Errorf("error frame %q", data))
		}
	}
}

// runConnections is the connections part: RSS with --conns clients idle and busy, and the
// daemon's latency while they are busy.
func runConnections(ctx context.Context, cfg config, logger *slog.Logger, rep *section) (err error) {
	d, err := startDaemon(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, d.close()) }()

	topics := make([]string, cfg.ConnTopics)
	for i := range topics {
		topics[i] = fmt.Sprintf("conns_%04d", i)
		if err := createTopic(ctx, d, topics[i], connChannel); err != nil {
			return err
		}
	}
	pubs, subs := cfg.Conns/2, cfg.Conns-cfg.Conns/2
	rep.add("clients", "%d: %d publishing (1 PUB every %v each: %.0f msgs/s), %d consuming (RDY 1, FIN each); %d topics; heartbeat %v",
		cfg.Conns, pubs, cfg.PubInterval, float64(pubs)/cfg.PubInterval.Seconds(), subs, cfg.ConnTopics, cfg.Heartbeat)
	before, err := d.quietRSS(ctx, cfg.Settle)
	if err != nil {
		return err
	}
	rep.add("RSS before (topics, no clients)", "%s", mib(before))

	// Even clients publish, odd ones consume: both kinds spread over the source addresses.
	l := &connLoad{}
	clients := make([]*client, cfg.Conns)
	defer func() {
		l.closing.Store(true)
		for _, c := range clients {
			if c != nil {
				_ = c.close()
			}
		}
		l.loops.Wait()
	}()
	start := time.Now()
	if err := connectAll(ctx, cfg, d.tcpAddr, topics, clients, l); err != nil {
		return err
	}
	elapsed := time.Since(start)
	rep.add("connect, IDENTIFY, SUB", "%.1f s (%.0f clients/s)", elapsed.Seconds(), float64(cfg.Conns)/elapsed.Seconds())
	logger.Info("clients connected", "clients", cfg.Conns, "elapsed", elapsed)

	idle, err := d.quietRSS(ctx, cfg.Settle)
	if err != nil {
		return err
	}
	rep.add(fmt.Sprintf("RSS, %d clients idle", cfg.Conns), "%s", mib(idle))
	rep.add("memory per idle client", "%.1f KiB", float64(idle-before)/float64(cfg.Conns)/1024)
	d.profile(ctx, cfg.ProfileDir, "connections-idle.heap", "heap")

	// Busy: every publisher publishes, paced; after one interval every one of them has, and
	// the latencies are sampled.
	pubClients := make([]*client, 0, pubs)
	for i := 0; i < cfg.Conns; i += 2 {
		pubClients = append(pubClients, clients[i])
	}
	pacerCtx, stopPacer := context.WithCancel(ctx)
	pacerDone := make(chan error, 1)
	go func() { pacerDone <- pace(pacerCtx, pubClients, topics, cfg.PubInterval) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stopPacer()
		return <-pacerDone
	}
	defer func() { err = errors.Join(err, stop()) }()
	logger.Info("publishing", "warm_up", cfg.PubInterval)
	if err := sleep(ctx, cfg.PubInterval); err != nil {
		return err
	}
	l.mu.Lock()
	l.e2e = l.e2e[:0] // the warm-up's deliveries are not measured
	l.mu.Unlock()

	var (
		samplers            sync.WaitGroup
		pings, pubRTT       []time.Duration
		pingErr, pubRTTErr  error
		busyRSS, busyRSSMax int64
	)
	waitProfile := d.cpuProfile(ctx, cfg.ProfileDir, "connections-busy.cpu", time.Duration(cfg.Samples)*sampleEvery)
	busyStart := time.Now()
	busyCPU0, err := d.cpuTime()
	if err != nil {
		return err
	}
	samplers.Go(func() { pings, pingErr = samplePing(ctx, d, cfg.Samples) })
	samplers.Go(func() { pubRTT, pubRTTErr = samplePub(ctx, d.tcpAddr, topics, cfg) })
	sampled := make(chan struct{})
	rssDone := make(chan struct{})
	go func() { // the RSS, once a second, while the samples are taken
		defer close(rssDone)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			if v, err := d.rss(); err == nil {
				busyRSS, busyRSSMax = v, max(busyRSSMax, v)
			}
			select {
			case <-sampled:
				return
			case <-tick.C:
			}
		}
	}()
	samplers.Wait()
	busyCPU1, cpuErr := d.cpuTime()
	busyElapsed := time.Since(busyStart)
	close(sampled)
	<-rssDone
	waitProfile()
	if err := errors.Join(pingErr, pubRTTErr, cpuErr); err != nil {
		return err
	}
	if err := stop(); err != nil {
		return err
	}
	rep.add(fmt.Sprintf("RSS, %d clients busy", cfg.Conns), "%s (max %s)", mib(busyRSS), mib(busyRSSMax))
	rep.add("daemon CPU while busy", "%.2f core", float64(busyCPU1-busyCPU0)/float64(busyElapsed))
	rep.add("GET /ping while busy", "%s", latencies(pings))
	rep.add("PUB round trip while busy", "%s", latencies(pubRTT))
	l.mu.Lock()
	rep.add("publish to delivery while busy", "%s", latencies(l.e2e))
	l.mu.Unlock()

	// Every message published reaches a consumer; the consumers are all still subscribed.
	want := func() int64 { return l.published.Load() + int64(len(pubRTT)) }
	for deadline := time.Now().Add(30 * time.Second); l.delivered.Load() < want() && time.Now().Before(deadline); {
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	s, err := d.stats(ctx, "")
	if err != nil {
		return err
	}
	subscribed := 0
	for _, t := range s.Topics {
		for _, c := range t.Channels {
			subscribed += c.ClientCount
		}
	}
	rep.add("messages", "%d published, %d delivered; %d consumers subscribed per /stats; %d clients dropped, %d error frames",
		want(), l.delivered.Load(), subscribed, l.dropped.Load(), l.errFrames.Load())
	if err := l.err(); err != nil {
		return err
	}
	if l.delivered.Load() != want() || subscribed != subs {
		return fmt.Errorf("%d of %d messages delivered, %d of %d consumers subscribed", l.delivered.Load(), want(), subscribed, subs)
	}

	l.closing.Store(true)
	for i, c := range clients {
		_ = c.close()
		clients[i] = nil
	}
	l.loops.Wait()
	after, err := d.quietRSS(ctx, cfg.Settle)
	if err != nil {
		return err
	}
	rep.add("RSS after the clients left", "%s", mib(after))
	return nil
}

// createTopic creates topic and its channels over HTTP.
func createTopic(ctx context.Context, d *daemon, topic string, channels ...string) error {
	if err := d.post(ctx, "/topic/create", url.Values{"topic": {topic}}); err != nil {
		return err
	}
	for _, ch := range channels {
		if err := d.post(ctx, "/channel/create", url.Values{"topic": {topic}, "channel": {ch}}); err != nil {
			return err
		}
	}
	return nil
}

// connectAll connects every client, connectWorkers at a time, and starts its read loop: the
// even ones identify only (publishers), the odd ones subscribe to a topic's channel with
// RDY 1.
func connectAll(ctx context.Context, cfg config, addr string, topics []string, clients []*client, l *connLoad) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range connectWorkers {
		wg.Go(func() {
			for i := range jobs {
				var local net.Addr
				if cfg.SourceIPs > 1 {
					local = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%cfg.SourceIPs))}
				}
				c, err := dial(ctx, addr, local, cfg.Heartbeat, "nsqscale")
				if err == nil && i%2 == 1 {
					if err = c.subscribe(topics[(i/2)%len(topics)], connChannel, 1); err != nil {
						_ = c.close()
					}
				}
				if err != nil {
					cancel(fmt.Errorf("client %d: %w", i, err))
					continue
				}
				clients[i] = c
				l.loops.Add(1)
				go l.readLoop(c)
			}
		})
	}
feed:
	for i := range clients {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// pace publishes from pubs in turn, len(pubs) messages every interval in all, until ctx
// ends; publisher i publishes to topic i%len(topics). Their read loops count the OKs.
func pace(ctx context.Context, pubs []*client, topics []string, interval time.Duration) error {
	body := make([]byte, connBodySize)
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	start := time.Now()
	for sent := 0; ; {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		due := int(time.Since(start) * time.Duration(len(pubs)) / interval)
		for ; sent < due; sent++ {
			i := sent % len(pubs)
			stampBody(body, uint64(sent), time.Now())
			if err := pubs[i].send(protocol.Publish(topics[i%len(topics)], body)); err != nil {
				return fmt.Errorf("publisher %d: %w", i, err)
			}
		}
	}
}

// samplePing times n GET /ping, one every sampleEvery.
func samplePing(ctx context.Context, d *daemon, n int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	for range n {
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-tick.C:
		}
		_, status, elapsed, err := d.get(ctx, "/ping")
		if err != nil {
			return out, err
		}
		if status != http.StatusOK {
			return out, fmt.Errorf("GET /ping: %d", status)
		}
		out = append(out, elapsed)
	}
	return out, nil
}

// samplePub times n PUB round trips (the command sent to its OK read) on a connection of its
// own, one every sampleEvery.
func samplePub(ctx context.Context, addr string, topics []string, cfg config) ([]time.Duration, error) {
	c, err := dial(ctx, addr, nil, cfg.Heartbeat, "nsqscale probe")
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.close() }()
	body := make([]byte, connBodySize)
	out := make([]time.Duration, 0, cfg.Samples)
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	for i := range cfg.Samples {
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-tick.C:
		}
		start := time.Now()
		stampBody(body, uint64(i), start)
		if err := c.send(protocol.Publish(topics[i%len(topics)], body)); err != nil {
			return out, err
		}
		ft, data, err := c.readHandshake()
		if err != nil {
			return out, fmt.Errorf("PUB: %w", err)
		}
		if ft != protocol.FrameTypeResponse || string(data) != protocol.OK {
			return out, fmt.Errorf("PUB: %s frame %q", ft, data)
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}
