package nsq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/backoff"
	"github.com/ternmq/tern/internal/protocol"
)

// Consumer receives the messages of one channel of one topic from any number of nsqds and
// passes them to a [Handler].
//
// It connects to nsqds given directly ([Consumer.ConnectToNSQD]) or found through
// nsqlookupds ([Consumer.ConnectToNSQLookupd]), which it polls, all of them, every
// Config.LookupdPollInterval (less a random jitter): it connects to nsqds that appear and
// drains and drops those that disappear. A lost connection is redialled with exponential
// backoff for as long as its nsqd is wanted.
//
// Config.MaxInFlight is shared among the connections by need (see rdy.go): connections
// that received nothing lately keep RDY 1, the others share the rest; with fewer
// MaxInFlight than connections, RDY 1 rotates so that none starves. Consecutive handler
// failures put the Consumer into exponential backoff (RDY 0 everywhere for a while, then
// RDY 1 on one connection to test the waters) and successes bring it back.
//
// Speed comes from batching. A connection's read loop hands the messages of each read to
// the handler goroutines at once, rather than one channel send per message, and FINs are
// buffered and sent with one write per batch of handled messages rather than one system
// call each.
//
// A Consumer must be stopped with [Consumer.Stop], which drains it without losing or
// duplicating a message.
type Consumer struct {
	topic, channel string
	cfg            *Config
	h              Handler
	giveUp         GiveUpHandler // nil unless h is one
	logger         *slog.Logger

	// hardCtx ends when Stop gives up waiting: connections are then closed at once. Every
	// node's context derives from it.
	hardCtx    context.Context
	hardCancel context.CancelFunc
	stopCh     chan struct{} // closed when Stop begins
	stopDone   chan struct{} // closed when everything has ended
	stopOnce   sync.Once

	queue    workQueue
	workers  sync.WaitGroup // handler goroutines
	nodesWG  sync.WaitGroup // node goroutines
	loops    sync.WaitGroup // the RDY loop and the lookupd loop
	rebalCh  chan struct{}  // capacity 1: the RDY loop should redistribute
	pollNow  chan struct{}  // capacity 1: the lookupd loop should poll now
	inBackof atomic.Bool    // mirrors bo.counter > 0 || bo.paused, for the handlers' fast path

	// mu guards everything below and the RDY fields of every consConn. It is taken before
	// a conn's mu, never after.
	mu            sync.Mutex
	nodes         map[string]*node // by nsqd address
	conns         []*consConn      // subscribed connections, in the order they joined
	lookupds      []string         // lookupd query URLs
	lookupResults map[string][]string
	stopping      bool
	rot           int // where the next RDY rotation or probe starts
	bo            backoffState
	maxInFlight   int   // Config.MaxInFlight, or what ChangeMaxInFlight set
	want          []int // scratch for rebalanceLocked

	// trimmed says the last distribution gave less RDY than MaxInFlight allows, because
	// connections hold messages beyond their RDY: answering one should redistribute.
	trimmed atomic.Bool

	received    atomic.Uint64
	finished    atomic.Uint64
	requeued    atomic.Uint64
	gaveUp      atomic.Uint64
	connects    atomic.Uint64
	connectErrs atomic.Uint64
}

// ConsumerStats is a snapshot of a Consumer's counters.
type ConsumerStats struct {
	// Connections is the number of subscribed connections.
	Connections int
	// MessagesReceived counts messages delivered to the Consumer.
	MessagesReceived uint64
	// MessagesFinished counts FINs sent, given-up messages included.
	MessagesFinished uint64
	// MessagesRequeued counts REQs sent.
	MessagesRequeued uint64
	// MessagesGivenUp counts messages finished without handling after MaxAttempts.
	MessagesGivenUp uint64
	// InFlight is the number of messages received and not yet responded to.
	InFlight int64
	// RDY is the sum of the RDY counts in force on the connections.
	RDY int
	// BackoffLevel is the number of unrecovered failures driving the backoff; 0 when the
	// Consumer is not backing off.
	BackoffLevel int
	// Connects counts connections made and subscribed.
	Connects uint64
	// ConnectErrors counts failed connection attempts.
	ConnectErrors uint64
}

// node is one nsqd the Consumer wants to be connected to. Its goroutine, runNode, keeps it
// connected until its context ends, and then drains its connection.
type node struct {
	addr       string
	discovered bool // found through lookupd, and dropped when lookupd no longer lists it
	ctx        context.Context
	cancel     context.CancelFunc
}

// consConn is the Consumer's side of one connection: it implements connHandler and
// batchHandler. Its atomics are shared by the read loop, the handlers and the node
// goroutine; rdy, busy, held, lastRecv and released are guarded by Consumer.mu.
type consConn struct {
	c        *Consumer
	addr     string
	conn     *conn
	maxRdy   int
	touchIvl time.Duration
	subResp  chan error    // capacity 1: the answer to SUB
	idle     chan struct{} // capacity 1: inFlight reached 0, CLOSE_WAIT came, or the conn ended

	subscribed atomic.Bool
	closing    atomic.Bool // CLS was sent: the connection is draining
	closeWait  atomic.Bool // CLOSE_WAIT came: later messages are not handled
	dead       atomic.Bool // the connection has ended: queued messages are not handled
	inFlight   atomic.Int64
	recv       atomic.Uint64 // messages since the RDY loop's last tick
	busy       atomic.Bool   // received lately; set by the read loop, cleared by a tick

	batch []*Message // the read loop's: messages of the current read

	rdy      int
	held     int // RDY ticks held while others waited, under rotation
	released bool
}

// NewConsumer returns a Consumer of channel on topic that passes messages to h. It does
// not connect: call [Consumer.ConnectToNSQD] or [Consumer.ConnectToNSQLookupd]. A nil cfg
// means [NewConfig]; otherwise cfg is validated and copied. If h implements
// [GiveUpHandler], it is told of the messages given up on.
func NewConsumer(topic, channel string, h Handler, cfg *Config) (*Consumer, error) {
	if !protocol.IsValidTopicName(topic) {
		return nil, protocol.NewFatalError(protocol.ErrBadTopic, "SUB topic name %q is not valid", topic)
	}
	if !protocol.IsValidChannelName(channel) {
		return nil, protocol.NewFatalError(protocol.ErrBadChannel, "SUB channel name %q is not valid", channel)
	}
	if h == nil {
		return nil, errors.New("nsq: consumer needs a handler")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.HeartbeatInterval < 0 {
		return nil, errors.New("nsq: config HeartbeatInterval: a consumer needs heartbeats (nsqd refuses SUB without them)")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	hardCtx, hardCancel := context.WithCancel(context.Background())
	c := &Consumer{
		topic:         topic,
		channel:       channel,
		cfg:           cfg,
		h:             h,
		logger:        logger.With("topic", topic, "channel", channel),
		hardCtx:       hardCtx,
		hardCancel:    hardCancel,
		stopCh:        make(chan struct{}),
		stopDone:      make(chan struct{}),
		rebalCh:       make(chan struct{}, 1),
		pollNow:       make(chan struct{}, 1),
		nodes:         make(map[string]*node),
		lookupResults: make(map[string][]string),
		maxInFlight:   cfg.MaxInFlight,
	}
	c.giveUp, _ = h.(GiveUpHandler)
	c.queue.cond.L = &c.queue.mu
	for range cfg.HandlerConcurrency {
		c.workers.Add(1)
		go c.worker()
	}
	c.loops.Add(1)
	go c.rdyLoop()
	return c, nil
}

// String returns the Consumer's topic and channel.
func (c *Consumer) String() string { return c.topic + "/" + c.channel }

// ConnectToNSQD connects to the nsqd at addr and subscribes, and returns the error if that
// fails; the address is then forgotten. Once subscribed, the Consumer keeps the connection
// up, redialling with exponential backoff whenever it breaks, until Stop or
// DisconnectFromNSQD. Connecting to an address already connected does nothing.
func (c *Consumer) ConnectToNSQD(ctx context.Context, addr string) error {
	if addr == "" {
		return errors.New("nsq: ConnectToNSQD needs an address")
	}
	c.mu.Lock()
	if c.stopping {
		c.mu.Unlock()
		return ErrStopped
	}
	_, known := c.nodes[addr]
	c.mu.Unlock()
	if known {
		return nil
	}
	n := c.newNode(addr, false)
	cc, err := c.connect(ctx, n)
	if err != nil {
		n.cancel()
		return err
	}
	if !c.startNode(n, cc) {
		n.cancel()
		cc.conn.close()
		<-cc.conn.done
		c.mu.Lock()
		stopping := c.stopping
		c.mu.Unlock()
		if stopping {
			return ErrStopped
		}
	}
	return nil
}

// DisconnectFromNSQD drains the connection to the nsqd at addr, as Stop does, and
// forgets the address. It does not wait for the drain.
func (c *Consumer) DisconnectFromNSQD(addr string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.nodes[addr]
	if !ok || n.discovered {
		return fmt.Errorf("nsq: not connected to nsqd %s directly", addr)
	}
	delete(c.nodes, addr)
	n.cancel()
	return nil
}

// Stats returns a snapshot of the Consumer's counters.
func (c *Consumer) Stats() ConsumerStats {
	c.mu.Lock()
	s := ConsumerStats{Connections: len(c.conns), BackoffLevel: c.bo.counter}
	for _, cc := range c.conns {
		s.RDY += cc.rdy
	}
	var inFlight int64
	for _, cc := range c.conns {
		inFlight += cc.inFlight.Load()
	}
	c.mu.Unlock()
	s.InFlight = inFlight
	s.MessagesReceived = c.received.Load()
	s.MessagesFinished = c.finished.Load()
	s.MessagesRequeued = c.requeued.Load()
	s.MessagesGivenUp = c.gaveUp.Load()
	s.Connects = c.connects.Load()
	s.ConnectErrors = c.connectErrs.Load()
	return s
}

// starvedFraction is go-nsq's: a connection holding this much of its RDY in flight is
// starved.
const starvedFraction = 0.85

// IsStarved reports whether any connection holds in flight at least 85% of its RDY count
// (truncated, as go-nsq computes it) and at least one message, and is neither closing nor
// lost. It has the semantics of go-nsq's Consumer.IsStarved: nsqd sends such a connection
// little or nothing more until some of its messages are answered, so a handler that holds
// messages to answer them in batches (nsq_to_file finishes them once their file is synced)
// should answer what it holds now rather than wait. The check is per connection: with
// several nsqds, one connection can be starved while the Consumer as a whole holds far
// less than its MaxInFlight.
func (c *Consumer) IsStarved() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cc := range c.conns {
		threshold := int64(float64(cc.rdy) * starvedFraction)
		inFlight := cc.inFlight.Load()
		if inFlight >= threshold && inFlight > 0 && !cc.closing.Load() && !cc.dead.Load() {
			return true
		}
	}
	return false
}

// Stop stops the Consumer gracefully: it sends CLS on every connection, so that nsqd
// delivers nothing more, lets the handlers finish the messages in flight and sends their
// FINs and REQs, and then closes the connections; nothing is lost and nothing delivered
// twice. If ctx ends first, the connections are closed at once, nsqd requeues what was
// still in flight (to be delivered again, perhaps elsewhere), and Stop returns ctx's
// error without waiting for handlers that are still running. Stop may be called more than
// once; every call waits.
func (c *Consumer) Stop(ctx context.Context) error {
	c.stopOnce.Do(func() {
		c.mu.Lock()
		c.stopping = true
		close(c.stopCh)
		for _, n := range c.nodes {
			n.cancel()
		}
		if c.bo.timer != nil {
			c.bo.timer.Stop()
		}
		c.mu.Unlock()
		go func() {
			c.nodesWG.Wait()
			c.queue.close()
			c.workers.Wait()
			c.loops.Wait()
			c.hardCancel()
			close(c.stopDone)
		}()
	})
	select {
	case <-c.stopDone:
		return nil
	case <-ctx.Done():
		c.hardCancel()
		// Closing the connections is quick; handlers are the application's and may not be.
		c.nodesWG.Wait()
		return fmt.Errorf("nsq: consumer stop: %w", ctx.Err())
	}
}

func (c *Consumer) newNode(addr string, discovered bool) *node {
	ctx, cancel := context.WithCancel(c.hardCtx)
	return &node{addr: addr, discovered: discovered, ctx: ctx, cancel: cancel}
}

// startNode registers n and starts its goroutine, with cc (when not nil) as its first
// connection, which is in use when startNode returns. It reports false if the Consumer is
// stopping or already has the address.
func (c *Consumer) startNode(n *node, cc *consConn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.nodes[n.addr]; dup || c.stopping {
		return false
	}
	c.nodes[n.addr] = n
	if cc != nil {
		c.addConnLocked(cc)
	}
	c.nodesWG.Add(1)
	go c.runNode(n, cc)
	return true
}

// connect dials n and subscribes. It is bounded by ctx, n's context and Config.DialTimeout
// for the SUB.
func (c *Consumer) connect(ctx context.Context, n *node) (*consConn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(n.ctx, cancel)
	defer stop()
	cc := &consConn{
		c:       c,
		addr:    n.addr,
		subResp: make(chan error, 1),
		idle:    make(chan struct{}, 1),
	}
	conn, err := dial(ctx, n.addr, c.cfg, cc)
	if err != nil {
		c.connectErrs.Add(1)
		return nil, err
	}
	cc.conn = conn
	cc.maxRdy = int(conn.ident.MaxRdyCount)
	if cc.maxRdy <= 0 {
		cc.maxRdy = 2500 // NSQ's default --max-rdy-count, for a server that did not say
	}
	cc.touchIvl = touchInterval(&conn.ident, c.cfg)
	fail := func(err error) (*consConn, error) {
		c.connectErrs.Add(1)
		conn.close()
		<-conn.done
		return nil, fmt.Errorf("nsq: subscribe to %s/%s on %s: %w", c.topic, c.channel, n.addr, err)
	}
	if err := conn.write(protocol.Subscribe(c.topic, c.channel)); err != nil {
		return fail(err)
	}
	conn.flush()
	timer := time.NewTimer(c.cfg.DialTimeout)
	defer timer.Stop()
	select {
	case err := <-cc.subResp:
		if err != nil {
			return fail(err)
		}
	case <-conn.done:
		return fail(conn.closedErr())
	case <-ctx.Done():
		return fail(ctx.Err())
	case <-timer.C:
		return fail(errors.New("no answer to SUB"))
	}
	c.connects.Add(1)
	return cc, nil
}

// runNode is a node's goroutine, started by startNode and ended when the node's context
// ends (a drop or Stop), after draining the connection. It keeps the node connected,
// redialling with jittered exponential backoff. cc, when not nil, is a connection startNode
// added.
func (c *Consumer) runNode(n *node, cc *consConn) {
	defer c.nodesWG.Done()
	added := cc != nil
	wait := backoff.Backoff{Min: c.cfg.ReconnectBackoff, Max: c.cfg.MaxReconnectBackoff}
	for attempt := 1; ; attempt++ {
		if cc == nil {
			var err error
			cc, err = c.connect(n.ctx, n)
			if err != nil {
				if n.ctx.Err() != nil {
					return
				}
				level := slog.LevelDebug
				if attempt == 1 {
					level = slog.LevelWarn
				}
				retryIn := wait.Next()
				c.logger.Log(n.ctx, level, "connect failed", "nsqd", n.addr, "error", err, "attempt", attempt, "retry_in", retryIn)
				if !c.wait(n.ctx, retryIn) {
					return
				}
				continue
			}
			c.logger.Info("connected", "nsqd", n.addr, "attempts", attempt)
		}
		attempt = 0
		wait.Reset()
		if !added {
			c.mu.Lock()
			c.addConnLocked(cc)
			c.mu.Unlock()
		}
		added = false
		select {
		case <-cc.conn.done:
			c.logger.Warn("connection lost", "nsqd", n.addr, "error", cc.conn.closedErr())
		case <-n.ctx.Done():
			c.drain(cc)
		}
		c.removeConn(cc)
		cc = nil
		if n.ctx.Err() != nil {
			return
		}
		if n.discovered {
			c.pollSoon() // it may be gone for good
		}
		// A server that accepts and then drops connections must not be hammered, and many
		// consumers of a restarted nsqd must not come back in step.
		if !c.wait(n.ctx, wait.Next()) {
			return
		}
	}
}

// wait waits for d or ctx, reporting false for ctx.
func (c *Consumer) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// drain closes cc gracefully: CLS, then wait for CLOSE_WAIT and for every message
// received before it to be answered, then half-close after the last FIN, so that nsqd
// reads them all. The Consumer's hard context cuts it short.
func (c *Consumer) drain(cc *consConn) {
	cc.closing.Store(true)
	if cc.conn.write(protocol.StartClose()) == nil {
		cc.conn.flush()
	}
	for !cc.closeWait.Load() || cc.inFlight.Load() > 0 {
		select {
		case <-cc.idle:
		case <-cc.conn.done:
			return
		case <-c.hardCtx.Done():
			cc.conn.close()
			<-cc.conn.done
			return
		}
	}
	cc.conn.closeWrite()
	timer := time.NewTimer(c.cfg.ReadTimeout)
	defer timer.Stop()
	select {
	case <-cc.conn.done:
		return
	case <-c.hardCtx.Done():
	case <-timer.C:
	}
	cc.conn.close()
	<-cc.conn.done
}

// addConnLocked makes cc a subscribed connection and gives it its share of RDY.
func (c *Consumer) addConnLocked(cc *consConn) {
	c.conns = append(c.conns, cc)
	c.rebalanceLocked(false)
}

// removeConn forgets cc once it has ended, and gives its RDY to the others.
func (c *Consumer) removeConn(cc *consConn) {
	<-cc.conn.done
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conns = slices.DeleteFunc(c.conns, func(x *consConn) bool { return x == cc })
	if c.bo.probe == cc {
		c.bo.probe = nil
	}
	c.rebalanceLocked(false)
}

// onResponse implements connHandler: the answer to SUB, or CLOSE_WAIT.
func (cc *consConn) onResponse(_ *conn, data []byte) {
	switch {
	case !cc.subscribed.Load() && string(data) == protocol.OK:
		cc.subscribed.Store(true)
		cc.subResp <- nil
	case string(data) == protocol.CloseWait:
		cc.closeWait.Store(true)
		cc.signalIdle()
	default:
		cc.c.logger.Warn("unexpected response", "nsqd", cc.addr, "response", string(data))
	}
}

// onError implements connHandler. Before subscription it is SUB's answer; afterwards it
// reports a FIN, REQ or TOUCH for a message nsqd had already timed out, or a fatal error
// after which nsqd closes the connection.
func (cc *consConn) onError(_ *conn, err *Error) {
	if !cc.subscribed.Load() {
		select {
		case cc.subResp <- err:
		default:
		}
		return
	}
	cc.c.logger.Warn("error from nsqd", "nsqd", cc.addr, "error", err.Error())
}

// onMessage implements connHandler: the message joins the current read's batch.
func (cc *consConn) onMessage(_ *conn, m *Message) {
	if cc.closeWait.Load() {
		// Sent as CLS crossed it: leave it to nsqd, which requeues it when the connection
		// closes, rather than handle it after the drain has counted what is in flight.
		return
	}
	cc.inFlight.Add(1)
	cc.recv.Add(1)
	cc.c.received.Add(1)
	if !cc.busy.Load() {
		cc.busy.Store(true)
		cc.c.requestRebalance()
	}
	m.cc = cc
	cc.batch = append(cc.batch, m)
}

// onBatchEnd implements batchHandler: the read's messages go to the handlers at once.
func (cc *consConn) onBatchEnd(_ *conn) {
	if len(cc.batch) == 0 {
		return
	}
	cc.c.queue.push(cc.batch)
	clear(cc.batch)
	cc.batch = cc.batch[:0]
}

// onClose implements connHandler.
func (cc *consConn) onClose(_ *conn, err error) {
	cc.dead.Store(true)
	// Messages of an unfinished read are nsqd's again.
	if n := len(cc.batch); n > 0 {
		cc.inFlight.Add(int64(-n))
		clear(cc.batch)
		cc.batch = nil
	}
	cc.signalIdle()
	cc.c.logger.Debug("connection closed", "nsqd", cc.addr, "error", err)
}

func (cc *consConn) signalIdle() {
	select {
	case cc.idle <- struct{}{}:
	default:
	}
}

// answered counts a message as answered, or abandoned with its connection. If the last
// distribution held RDY back because of messages in flight, it asks for another.
func (cc *consConn) answered() {
	if cc.inFlight.Add(-1) == 0 {
		cc.signalIdle()
	}
	if cc.c.trimmed.Load() {
		cc.c.requestRebalance()
	}
}

// finish sends FIN for m. kick sends it now; otherwise the handler goroutine does, after
// its batch.
func (cc *consConn) finish(m *Message, kick bool) {
	if cc.conn.writeMessageCommand("FIN", &m.ID, nil) == nil {
		cc.c.finished.Add(1)
		if kick {
			cc.conn.flush()
		}
	}
	cc.answered()
	cc.c.backoffSignal(true)
}

// requeue sends REQ for m; a negative delay is the Consumer's own.
func (cc *consConn) requeue(m *Message, delay time.Duration, backoff, kick bool) {
	if delay < 0 {
		delay = requeueDelay(cc.c.cfg, m.Attempts)
	}
	if cc.conn.writeMessageCommand("REQ", &m.ID, millisArg(delay)) == nil {
		cc.c.requeued.Add(1)
		if kick {
			cc.conn.flush()
		}
	}
	cc.answered()
	if backoff {
		cc.c.backoffSignal(false)
	}
}

func (cc *consConn) touch(m *Message) {
	if cc.conn.writeMessageCommand("TOUCH", &m.ID, nil) == nil {
		cc.conn.flush()
	}
}

// kickEvery bounds how many answers a handler goroutine buffers before asking the write
// pump to send them, so that nsqd, waiting for room under RDY, is not kept waiting for a
// long batch.
const kickEvery = 64

// worker is a handler goroutine, started by NewConsumer; it returns when Stop has closed
// the queue and it is empty. It asks for the answers it buffered to be sent before it
// waits for more messages, and every kickEvery messages: answers must never sit buffered
// behind a goroutine that sleeps.
func (c *Consumer) worker() {
	defer c.workers.Done()
	var dirty []*consConn
	n := 0
	kick := func() {
		for _, cc := range dirty {
			cc.conn.flush()
		}
		clear(dirty)
		dirty, n = dirty[:0], 0
	}
	for {
		m, ok := c.queue.pop(false)
		if !ok {
			kick()
			if m, ok = c.queue.pop(true); !ok {
				return
			}
		}
		cc := m.cc
		c.handle(m)
		if !slices.Contains(dirty, cc) {
			dirty = append(dirty, cc)
		}
		if n++; n >= kickEvery {
			kick()
		}
	}
}

// handle runs the handler for m and answers it unless the handler did.
func (c *Consumer) handle(m *Message) {
	cc := m.cc
	if cc.dead.Load() {
		// nsqd requeued it when the connection broke; handling it would be a duplicate.
		m.responded.Store(true)
		cc.answered()
		return
	}
	if c.cfg.MaxAttempts > 0 && int(m.Attempts) > c.cfg.MaxAttempts {
		c.gaveUp.Add(1)
		c.logger.Warn("giving up on message", "nsqd", cc.addr, "id", m.ID.String(), "attempts", m.Attempts)
		if c.giveUp != nil {
			c.giveUp.GiveUp(m)
		}
		if m.responded.CompareAndSwap(false, true) {
			if cc.conn.writeMessageCommand("FIN", &m.ID, nil) == nil {
				c.finished.Add(1)
			}
			cc.answered()
		}
		return
	}
	var stopTouch func()
	if c.cfg.AutoTouch {
		stopTouch = c.autoTouch(m)
	}
	err := c.h.HandleMessage(m)
	if stopTouch != nil {
		stopTouch()
	}
	if m.autoResponseDisabled.Load() || !m.responded.CompareAndSwap(false, true) {
		return
	}
	if err != nil {
		c.logger.Debug("handler failed", "nsqd", cc.addr, "id", m.ID.String(), "attempts", m.Attempts, "error", err)
		cc.requeue(m, -1, true, false)
		return
	}
	cc.finish(m, false)
}

// autoTouch touches m every half message timeout until the returned function is called.
func (c *Consumer) autoTouch(m *Message) (stop func()) {
	ivl := m.cc.touchIvl
	var (
		mu      sync.Mutex // orders the callback's Reset against the assignment of t and stop
		t       *time.Timer
		stopped bool
	)
	mu.Lock()
	defer mu.Unlock()
	t = time.AfterFunc(ivl, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped || m.responded.Load() || m.cc.dead.Load() {
			return
		}
		m.cc.touch(m)
		t.Reset(ivl)
	})
	return func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
	}
}

// workQueue is the messages handed from the read loops to the handler goroutines, in
// batches. A slice under a mutex, rather than a channel, so that a read's messages cost
// one lock and one wake-up, and each message a lock without a context switch.
type workQueue struct {
	mu     sync.Mutex
	cond   sync.Cond
	items  []*Message
	head   int
	closed bool
}

func (q *workQueue) push(ms []*Message) {
	q.mu.Lock()
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head > len(q.items)/2 {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, ms...)
	q.mu.Unlock()
	if len(ms) == 1 {
		q.cond.Signal()
	} else {
		q.cond.Broadcast()
	}
}

// pop returns the next message. If there is none it waits for one when wait is set, and
// otherwise returns false at once; it also returns false once the queue is closed and
// empty.
func (q *workQueue) pop(wait bool) (*Message, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.head == len(q.items) {
		if q.closed || !wait {
			return nil, false
		}
		q.cond.Wait()
	}
	m := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	return m, true
}

func (q *workQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}
