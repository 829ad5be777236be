// Package faultcheck drives publish and consume load at an nsqd that faults are done to
// (killed, its disk filled, its lookupd cut off) and keeps the books: every publish the
// daemon acknowledged and every delivery, so that a test can say what was lost (nothing may
// be) and what was delivered twice (bounded by what was in flight), with the latency and
// throughput over time.
//
// Publishers and consumers speak the V2 protocol on connections of their own and reconnect
// whenever theirs breaks, to whatever address Load.Addr gives at that moment, so the daemon
// may restart on another port.
package faultcheck

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/wiretest"
)

// Load is the load a checker puts on one topic and channel.
type Load struct {
	Addr       func() string // the daemon's TCP address now
	Topic      string
	Channel    string
	Publishers int // connections publishing
	Consumers  int // connections consuming the channel
	Rate       int // messages a second, all publishers together
	Batch      int // messages an MPUB carries; 1 publishes with PUB
	Size       int // body bytes, at least what the bookkeeping needs (about 40)
	RDY        int // each consumer's RDY
}

// Checker runs a Load and records what happened.
type Checker struct {
	load  Load
	start time.Time

	mu        sync.Mutex
	acked     map[uint64]bool // acknowledged publishes, by sequence number
	delivered map[uint64]int  // deliveries, by sequence number
	missing   int             // acknowledged and not yet delivered
	windows   []Window        // one a second since start
	pubErrs   map[string]int  // publish failures, by kind
	nextSeq   uint64

	stop   context.CancelFunc
	pubCtx context.Context // cancelled by StopPublishing
	pubEnd context.CancelFunc
	wg     sync.WaitGroup
}

// Window is one second of the run.
type Window struct {
	Acked     int       // publishes acknowledged
	Delivered int       // deliveries, duplicates included
	Latencies []float64 // publish-to-delivery, ms, of first deliveries
	RSS       int64     // the daemon's resident memory, bytes; 0 if not sampled
}

// Start begins the load; ctx bounds it.
func Start(ctx context.Context, load Load) *Checker {
	load.Batch = max(load.Batch, 1)
	load.RDY = max(load.RDY, 1)
	ctx, stop := context.WithCancel(ctx)
	pubCtx, pubEnd := context.WithCancel(ctx)
	c := &Checker{
		load: load, start: time.Now(),
		acked: map[uint64]bool{}, delivered: map[uint64]int{}, pubErrs: map[string]int{},
		stop: stop, pubCtx: pubCtx, pubEnd: pubEnd,
	}
	for range load.Publishers {
		c.wg.Go(func() { c.publish(pubCtx) })
	}
	for range load.Consumers {
		c.wg.Go(func() { c.consume(ctx) })
	}
	return c
}

// StopPublishing stops the publishers; the consumers go on.
func (c *Checker) StopPublishing() { c.pubEnd() }

// Close stops everything and waits for it.
func (c *Checker) Close() {
	c.stop()
	c.wg.Wait()
}

// window returns the window of now, adding windows as time passes. c.mu is held.
func (c *Checker) window(now time.Time) *Window {
	i := int(now.Sub(c.start) / time.Second)
	for len(c.windows) <= i {
		c.windows = append(c.windows, Window{})
	}
	return &c.windows[i]
}

// RecordRSS notes the daemon's resident memory now.
func (c *Checker) RecordRSS(rss int64) {
	c.mu.Lock()
	c.window(time.Now()).RSS = rss
	c.mu.Unlock()
}

func (c *Checker) publish(ctx context.Context) {
	interval := time.Duration(float64(time.Second) * float64(c.load.Batch*c.load.Publishers) / float64(max(c.load.Rate, 1)))
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var conn *wiretest.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if conn == nil {
			var err error
			if conn, err = wiretest.Dial(c.load.Addr()); err != nil {
				conn = nil
				c.pubError("dial")
				continue
			}
		}
		seqs, cmd := c.nextBatch()
		err := conn.Send(cmd)
		if err == nil {
			err = conn.ExpectResponse(protocol.OK)
		}
		if err != nil {
			kind := "connection"
			var text string
			if _, data, ok := strings.Cut(err.Error(), "E_"); ok {
				text = "E_" + data
				kind, _, _ = strings.Cut(text, " ")
			}
			c.pubError(kind)
			conn.Close()
			conn = nil
			continue
		}
		c.mu.Lock()
		for _, s := range seqs {
			c.acked[s] = true
			if c.delivered[s] == 0 {
				c.missing++
			}
		}
		c.window(time.Now()).Acked += len(seqs)
		c.mu.Unlock()
	}
}

func (c *Checker) pubError(kind string) {
	c.mu.Lock()
	c.pubErrs[kind]++
	c.mu.Unlock()
}

// nextBatch numbers the next batch and encodes it: each body is "<seq> <publish ns>", padded.
func (c *Checker) nextBatch() ([]uint64, *protocol.Command) {
	c.mu.Lock()
	first := c.nextSeq
	c.nextSeq += uint64(c.load.Batch)
	c.mu.Unlock()
	now := time.Now().UnixNano()
	seqs := make([]uint64, c.load.Batch)
	bodies := make([][]byte, c.load.Batch)
	for i := range bodies {
		seqs[i] = first + uint64(i)
		b := fmt.Appendf(nil, "%d %d ", seqs[i], now)
		for len(b) < c.load.Size {
			b = append(b, 'x')
		}
		bodies[i] = b
	}
	if c.load.Batch == 1 {
		return seqs, protocol.Publish(c.load.Topic, bodies[0])
	}
	cmd, err := protocol.MultiPublish(c.load.Topic, bodies)
	if err != nil {
		panic(err) // bodies are never empty
	}
	return seqs, cmd
}

func (c *Checker) consume(ctx context.Context) {
	for ctx.Err() == nil {
		conn, err := wiretest.Dial(c.load.Addr())
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond): // the daemon is down: poll for it
			}
			continue
		}
		c.consumeConn(ctx, conn)
		conn.Close()
	}
}

// consumeConn consumes on one connection until it breaks or ctx ends.
func (c *Checker) consumeConn(ctx context.Context, conn *wiretest.Conn) {
	// Heartbeats every second keep a live connection's reads short; ctx ending closes it.
	conn.AnswerHeartbeats = true
	conn.Timeout = 5 * time.Second
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if _, err := conn.Identify(`"heartbeat_interval":1000`); err != nil {
		return
	}
	if err := conn.Subscribe(c.load.Topic, c.load.Channel, c.load.RDY); err != nil {
		return
	}
	for {
		ft, data, err := conn.Next()
		if err != nil {
			return
		}
		if ft != protocol.FrameTypeMessage {
			continue
		}
		_, _, id, body, err := protocol.DecodeMessage(data)
		if err != nil {
			return
		}
		seq, sent, ok := parseBody(body)
		now := time.Now()
		c.mu.Lock()
		w := c.window(now)
		w.Delivered++
		if ok {
			c.delivered[seq]++
			if c.delivered[seq] == 1 {
				w.Latencies = append(w.Latencies, float64(now.UnixNano()-sent)/1e6)
				if c.acked[seq] {
					c.missing--
				}
			}
		}
		c.mu.Unlock()
		if err := conn.Send(protocol.Finish(id)); err != nil {
			return
		}
	}
}

func parseBody(b []byte) (seq uint64, sent int64, ok bool) {
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, 0, false
	}
	seq, err1 := strconv.ParseUint(f[0], 10, 64)
	sent, err2 := strconv.ParseInt(f[1], 10, 64)
	return seq, sent, err1 == nil && err2 == nil
}

// Report is the books at one moment.
type Report struct {
	Acked      int      // publishes acknowledged
	Delivered  int      // distinct messages delivered
	Lost       []uint64 // acknowledged and never delivered, the first few
	LostCount  int
	Duplicates int            // deliveries beyond each message's first
	Unacked    int            // delivered but never acknowledged (the publish's answer was cut off)
	PubErrors  map[string]int // publish failures by kind: "dial", "connection", "E_PUB_FAILED"...
	Windows    []Window
}

// Acked returns how many publishes have been acknowledged. Unlike Report, which goes
// through every message under the books' lock, it is cheap enough to poll.
func (c *Checker) Acked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.acked)
}

// Report returns the books now. It holds up the load while it goes through every message:
// call it at the end, and poll with Acked.
func (c *Checker) Report() Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := Report{Acked: len(c.acked), Delivered: len(c.delivered), PubErrors: map[string]int{}}
	for s := range c.acked {
		if c.delivered[s] == 0 {
			r.LostCount++
			if len(r.Lost) < 10 {
				r.Lost = append(r.Lost, s)
			}
		}
	}
	slices.Sort(r.Lost)
	for s, n := range c.delivered {
		r.Duplicates += n - 1
		if !c.acked[s] {
			r.Unacked++
		}
	}
	for k, v := range c.pubErrs {
		r.PubErrors[k] = v
	}
	r.Windows = slices.Clone(c.windows)
	return r
}

// WaitDelivered polls until every acknowledged publish has been delivered, or ctx ends, and
// returns the books then.
func (c *Checker) WaitDelivered(ctx context.Context) Report {
	for {
		c.mu.Lock()
		missing := c.missing
		c.mu.Unlock()
		if missing == 0 {
			return c.Report()
		}
		select {
		case <-ctx.Done():
			return c.Report()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Quantile returns the q-quantile of sorted values, 0 for none.
func Quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}
