package nsq

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/backoff"
	"github.com/ternmq/tern/internal/protocol"
)

// Producer publishes to one nsqd over TCP. It is safe for concurrent use, and that is how
// it is fast: commands from every goroutine are pipelined on one connection, and nsqd's
// answers, which come back in order, are matched to the commands first in, first out. The
// connection's write pump takes every publish issued since its previous write and sends
// them with one system call; consecutive PUBs to the same topic among them go as one MPUB,
// so nsqd stores them with one append and answers them with one frame. (go-nsq sends each
// command through one goroutine and nsqd answers each on its own.) Nothing waits to fill a
// batch: a publish that finds the pump idle goes out alone at once.
//
// The Producer connects on first use and, once it has been used, reconnects by itself
// with jittered exponential backoff (Config.ReconnectBackoff up to Config.MaxReconnectBackoff)
// whenever its connection breaks. A publish issued while there is no connection waits for
// one, up to its context, in the order it was issued; it is never dropped silently:
//
//   - a publish that was not sent when its context ended fails with an error matching the
//     context's error and [ErrNotConnected], carrying the last connection error, when there
//     was no connection, or [ErrNotSent] when it waited behind unanswered commands on a
//     live one;
//   - a publish sent on a connection that broke before nsqd answered fails with
//     [ErrConnectionLost], since nsqd may or may not have stored it;
//   - a publish sent after one that nsqd rejected with a fatal error (the connection is
//     then closed, and nsqd executes nothing after the failed command) is sent again on
//     the next connection, and the PUBs of a merged MPUB that nsqd rejected are sent again
//     one by one, so that each gets its own answer.
//
// Topic names and empty messages are checked before sending and fail with the [*Error]
// nsqd would have sent, without breaking the connection the other publishers share.
type Producer struct {
	addr   string
	cfg    *Config
	logger *slog.Logger

	ctx    context.Context // ends with Stop; bounds connection attempts
	cancel context.CancelFunc
	wg     sync.WaitGroup // the connect loop

	// mu guards everything below. It is taken before conn.mu, never after.
	mu          sync.Mutex
	conn        *conn          // nil while disconnected
	unsent      []*transaction // issued, not yet handed to the write pump, oldest first
	inflight    unitQueue      // sent on conn, awaiting an answer, oldest first
	resend      []*transaction // from a merged MPUB nsqd rejected: to be sent alone
	fatalConn   *conn          // conn after a fatal error: what is still in flight was not executed
	connecting  bool           // the connect loop is running
	connChanged chan struct{}  // closed and replaced when a connection is made, closed by Stop
	drained     chan struct{}  // set by Stop: closed when nothing is unsent or in flight
	lastErr     error          // the last connection error
	stopped     bool
	stopDone    chan struct{} // closed when Stop has finished

	published   atomic.Uint64
	failed      atomic.Uint64
	connects    atomic.Uint64
	connectErrs atomic.Uint64
}

// ProducerStats is a snapshot of a Producer's counters.
type ProducerStats struct {
	// Connected says whether the Producer has a connection now.
	Connected bool
	// Published counts messages nsqd acknowledged (an MPUB counts its messages).
	Published uint64
	// Failed counts publish calls that ended with an error, local checks included.
	Failed uint64
	// InFlight is the number of commands sent and not yet answered; merged PUBs count as
	// one.
	InFlight int
	// Waiting is the number of publishes not yet sent, because there is no connection or
	// the write pump has not reached them yet.
	Waiting int
	// Connects counts connections made, the first included.
	Connects uint64
	// ConnectErrors counts failed connection attempts.
	ConnectErrors uint64
}

// Merging limits: only small PUBs are merged, into batches well below nsqd's default
// --max-body-size (5 MiB), so that merging never makes nsqd refuse what it would accept
// one by one.
const (
	maxMergedBody  = 16 * 1024
	maxMergedBytes = 256 * 1024
	maxMergedMsgs  = 512
	// maxFillBytes bounds one write of the pump, so that a flood of asynchronous
	// publishes is sent in rounds rather than copied into one huge buffer.
	maxFillBytes = 1 << 20
	// maxPipelined bounds the commands in flight, so that a flood of asynchronous
	// publishes cannot queue without limit in nsqd's socket buffers and ours.
	maxPipelined = 256
)

// transaction is one publish and whoever waits for its answer.
type transaction struct {
	cmd  *protocol.Command // the command as sent alone
	pub  bool              // cmd is a PUB, which may be merged with its neighbours
	msgs int
	ch   chan error  // capacity 1, for a synchronous caller; nil for an asynchronous one
	done func(error) // for an asynchronous caller; may be nil
	self [1]*transaction

	// Guarded by Producer.mu.
	sent      bool
	cancelled bool // the caller gave up before it was sent: do not send it
	alone     bool // do not merge: it was in a merged MPUB that nsqd rejected
}

// unit is what one command sent carries: one transaction, or the PUBs merged into an MPUB.
type unit []*transaction

// NewProducer returns a Producer for the nsqd at addr ("host:port"). It does not connect;
// the first publish or [Producer.Ping] does. A nil cfg means [NewConfig]; otherwise cfg is
// validated and copied.
func NewProducer(addr string, cfg *Config) (*Producer, error) {
	if addr == "" {
		return nil, errors.New("nsq: producer needs an nsqd address")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	logger := c.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Producer{
		addr:        addr,
		cfg:         c,
		logger:      logger.With("nsqd", addr),
		ctx:         ctx,
		cancel:      cancel,
		connChanged: make(chan struct{}),
		stopDone:    make(chan struct{}),
	}, nil
}

// String returns the nsqd address the Producer publishes to.
func (p *Producer) String() string { return p.addr }

// Publish publishes body to topic and returns once nsqd has acknowledged it, or when ctx
// ends. In the second case the message may still be published: an answer that arrives
// later is consumed and ignored.
func (p *Producer) Publish(ctx context.Context, topic string, body []byte) error {
	if err := checkPublish("PUB", topic, body); err != nil {
		p.failed.Add(1)
		return err
	}
	return p.do(ctx, &transaction{cmd: protocol.Publish(topic, body), pub: true, msgs: 1})
}

// MultiPublish publishes bodies to topic as one batch (MPUB), which nsqd stores all or
// nothing, and returns once nsqd has acknowledged it or ctx ends.
func (p *Producer) MultiPublish(ctx context.Context, topic string, bodies [][]byte) error {
	cmd, err := multiPublish(topic, bodies)
	if err != nil {
		p.failed.Add(1)
		return err
	}
	return p.do(ctx, &transaction{cmd: cmd, msgs: len(bodies)})
}

// DeferredPublish publishes body to topic, to be delivered no sooner than delay from now
// (rounded down to milliseconds; nsqd refuses delays above its --max-req-timeout), and
// returns once nsqd has acknowledged it or ctx ends.
func (p *Producer) DeferredPublish(ctx context.Context, topic string, delay time.Duration, body []byte) error {
	if err := checkPublish("DPUB", topic, body); err != nil {
		p.failed.Add(1)
		return err
	}
	return p.do(ctx, &transaction{cmd: protocol.DeferredPublish(topic, delay, body), msgs: 1})
}

// PublishAsync publishes body to topic without waiting. done, when not nil, is called
// exactly once with the outcome, as [Producer.Publish] would have returned it.
//
// A callback was chosen over go-nsq's channel of transactions: it needs no channel to
// size, drain and close, it captures whatever context the caller needs without an "Args"
// slice, and it costs no goroutine. done runs on the connection's read goroutine (or the
// caller's, for a failure known at once), so it must be quick and must not call a
// synchronous method of the same Producer, whose answer that goroutine would deliver.
// Errors found before sending (an invalid topic, an empty message, a stopped Producer)
// are returned and done is not called. body must not be modified until done has run.
func (p *Producer) PublishAsync(topic string, body []byte, done func(error)) error {
	if err := checkPublish("PUB", topic, body); err != nil {
		p.failed.Add(1)
		return err
	}
	return p.submit(&transaction{cmd: protocol.Publish(topic, body), pub: true, msgs: 1, done: done})
}

// MultiPublishAsync is the asynchronous [Producer.MultiPublish]; done is called as for
// [Producer.PublishAsync].
func (p *Producer) MultiPublishAsync(topic string, bodies [][]byte, done func(error)) error {
	cmd, err := multiPublish(topic, bodies)
	if err != nil {
		p.failed.Add(1)
		return err
	}
	return p.submit(&transaction{cmd: cmd, msgs: len(bodies), done: done})
}

// DeferredPublishAsync is the asynchronous [Producer.DeferredPublish]; done is called as
// for [Producer.PublishAsync].
func (p *Producer) DeferredPublishAsync(topic string, delay time.Duration, body []byte, done func(error)) error {
	if err := checkPublish("DPUB", topic, body); err != nil {
		p.failed.Add(1)
		return err
	}
	return p.submit(&transaction{cmd: protocol.DeferredPublish(topic, delay, body), msgs: 1, done: done})
}

// Ping connects to nsqd if the Producer is not connected, waiting up to ctx, and reports
// whether it is. NSQ has no command that nsqd answers without side effects, so Ping
// checks the connection's handshake rather than a round trip on an established one; a
// broken connection shows up on the next publish (or within Config.ReadTimeout).
func (p *Producer) Ping(ctx context.Context) error {
	for {
		p.mu.Lock()
		if p.stopped {
			p.mu.Unlock()
			return ErrStopped
		}
		if p.conn != nil {
			p.mu.Unlock()
			return nil
		}
		p.startConnectLocked()
		changed, lastErr := p.connChanged, p.lastErr
		p.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return notConnected(ctx, p.addr, lastErr)
		}
	}
}

// Stats returns a snapshot of the Producer's counters.
func (p *Producer) Stats() ProducerStats {
	p.mu.Lock()
	s := ProducerStats{
		Connected: p.conn != nil,
		InFlight:  p.inflight.len(),
	}
	for _, t := range p.unsent {
		// A publish whose context ended stays queued until the pump skips it, but nobody
		// waits for it any more.
		if !t.cancelled {
			s.Waiting++
		}
	}
	p.mu.Unlock()
	s.Published = p.published.Load()
	s.Failed = p.failed.Load()
	s.Connects = p.connects.Load()
	s.ConnectErrors = p.connectErrs.Load()
	return s
}

// Stop stops the Producer. New publishes fail with [ErrStopped] from then on. If it is
// connected, what was issued before Stop is sent and given Config.WriteTimeout to be
// answered; then the connection is closed, publishes still unanswered fail with
// [ErrConnectionLost] and those never sent (all of them, without a connection) with
// ErrStopped. Stop returns when every outcome has been reported. It may be called more
// than once.
func (p *Producer) Stop() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		<-p.stopDone
		return
	}
	p.stopped = true
	defer close(p.stopDone)
	close(p.connChanged)
	c := p.conn
	var drained chan struct{}
	if c != nil && (len(p.unsent) > 0 || p.inflight.len() > 0) {
		drained = make(chan struct{})
		p.drained = drained
	}
	p.mu.Unlock()
	p.cancel()
	if c != nil {
		if drained != nil {
			c.flush()
			timer := time.NewTimer(p.cfg.WriteTimeout)
			select {
			case <-drained:
			case <-timer.C:
				p.logger.Warn("stopping with publishes unanswered", "timeout", p.cfg.WriteTimeout)
			}
			timer.Stop()
		}
		c.close()
		<-c.done
	}
	p.wg.Wait()
	p.mu.Lock()
	unsent := append(p.resend, p.unsent...)
	p.unsent, p.resend = nil, nil
	p.mu.Unlock()
	for _, t := range unsent {
		if !t.cancelled {
			p.failed.Add(1)
			p.complete(t, ErrStopped)
		}
	}
}

// do submits t, a synchronous publish, and waits for its answer or for ctx.
func (p *Producer) do(ctx context.Context, t *transaction) error {
	if err := ctx.Err(); err != nil {
		p.failed.Add(1)
		return err
	}
	t.ch = make(chan error, 1)
	if err := p.submit(t); err != nil {
		return err
	}
	select {
	case err := <-t.ch:
		return err
	case <-ctx.Done():
	}
	p.mu.Lock()
	sent, lastErr, connected, ahead := t.sent, p.lastErr, p.conn != nil, p.inflight.len()
	if !sent {
		t.cancelled = true
	}
	p.mu.Unlock()
	select {
	case err := <-t.ch: // answered while we looked: report the real outcome
		return err
	default:
	}
	p.failed.Add(1)
	switch {
	case !sent && connected:
		return fmt.Errorf("%w to %s: waiting behind %d commands nsqd has not answered: %w", ErrNotSent, p.addr, ahead, ctx.Err())
	case !sent:
		return notConnected(ctx, p.addr, lastErr)
	}
	return fmt.Errorf("nsq: publish to %s: no answer yet: %w", p.addr, ctx.Err())
}

func notConnected(ctx context.Context, addr string, lastErr error) error {
	if lastErr == nil {
		return fmt.Errorf("%w to %s: %w", ErrNotConnected, addr, ctx.Err())
	}
	return fmt.Errorf("%w to %s: %w (last error: %w)", ErrNotConnected, addr, ctx.Err(), lastErr)
}

// submit queues t for the write pump, waking it, or for the next connection.
func (p *Producer) submit(t *transaction) error {
	t.self[0] = t
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		p.failed.Add(1)
		return ErrStopped
	}
	p.unsent = append(p.unsent, t)
	c := p.conn
	if c == nil {
		p.startConnectLocked()
	} else if p.inflight.len() > 0 && t.mergeable() {
		c = nil // held back: the pump is woken by the next answer
	}
	p.mu.Unlock()
	if c != nil {
		c.flush()
	}
	return nil
}

// fill implements commandSource: the write pump of c is ready to write, and takes what is
// unsent, oldest first, into dst and inflight.
//
// PUBs are held back while any command is in flight, and then sent together: the PUBs up
// to the next other command are grouped by topic (in order within a topic; NSQ orders
// nothing across topics) and each group goes as one MPUB. nsqd executes one connection's
// commands one after another, each with its own append and answer, so this turns a round
// trip per PUB into a round trip per batch; a PUB that finds nothing in flight, the case
// of a lone publisher, goes out at once. Other commands (DPUB, MPUB, PUBs resent alone)
// are pipelined up to maxPipelined deep. Holding the queue's head holds what follows it,
// so the order of issue is kept and nothing starves.
func (p *Producer) fill(c *conn, dst []byte) ([]byte, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c != p.conn {
		return dst, false
	}
	i := 0
loop:
	for i < len(p.unsent) && len(dst) < maxFillBytes {
		t := p.unsent[i]
		switch {
		case t.cancelled:
			i++
		case t.mergeable():
			if p.inflight.len() > 0 {
				break loop
			}
			var n int
			dst, n = p.sendMerged(dst, p.unsent[i:])
			i += n
		case p.inflight.len() >= maxPipelined:
			break loop
		default:
			dst = t.cmd.AppendTo(dst)
			t.sent = true
			p.inflight.push(t.self[:])
			i++
		}
	}
	n := copy(p.unsent, p.unsent[i:])
	clear(p.unsent[n:])
	p.unsent = p.unsent[:n]
	p.checkDrainedLocked()
	return dst, n > 0 && len(dst) >= maxFillBytes
}

// mergeable reports whether t is a PUB that may share an MPUB.
func (t *transaction) mergeable() bool {
	return t.pub && !t.alone && len(t.cmd.Body) <= maxMergedBody
}

// sendMerged sends the mergeable PUBs at the head of ts, grouped by topic, and returns how
// many entries of ts it consumed (cancelled ones included).
func (p *Producer) sendMerged(dst []byte, ts []*transaction) ([]byte, int) {
	var groups []unit
	var sizes []int
	n, bytes := 0, 0
	for ; n < len(ts) && bytes < maxFillBytes; n++ {
		t := ts[n]
		if t.cancelled {
			continue
		}
		if !t.mergeable() {
			break
		}
		bytes += len(t.cmd.Body)
		g := -1
		for j := range groups {
			last := groups[j][0]
			if string(last.cmd.Params[0]) == string(t.cmd.Params[0]) &&
				sizes[j]+len(t.cmd.Body) <= maxMergedBytes && len(groups[j]) < maxMergedMsgs {
				g = j
				break
			}
		}
		if g < 0 {
			groups = append(groups, make(unit, 0, 8))
			sizes = append(sizes, 0)
			g = len(groups) - 1
		}
		groups[g] = append(groups[g], t)
		sizes[g] += len(t.cmd.Body)
	}
	for _, u := range groups {
		if len(u) == 1 {
			dst = u[0].cmd.AppendTo(dst)
			u = u[0].self[:]
		} else {
			dst = appendMerged(dst, u)
		}
		for _, t := range u {
			t.sent = true
		}
		p.inflight.push(u)
	}
	return dst, n
}

// appendMerged appends one MPUB carrying the bodies of run, PUBs to one topic.
func appendMerged(dst []byte, run unit) []byte {
	line := protocol.Command{Name: mpubName, Params: run[0].cmd.Params}
	dst = line.AppendTo(dst)
	size := 4
	for _, t := range run {
		size += 4 + len(t.cmd.Body)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(size))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(run)))
	for _, t := range run {
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(t.cmd.Body)))
		dst = append(dst, t.cmd.Body...)
	}
	return dst
}

var mpubName = []byte("MPUB")

// checkDrainedLocked tells a waiting Stop that nothing is left to send or answer.
func (p *Producer) checkDrainedLocked() {
	if p.drained != nil && len(p.unsent) == 0 && p.inflight.len() == 0 {
		close(p.drained)
		p.drained = nil
	}
}

// startConnectLocked starts the connect loop unless it runs or is not needed.
func (p *Producer) startConnectLocked() {
	if p.connecting || p.conn != nil || p.stopped {
		return
	}
	p.connecting = true
	p.wg.Add(1)
	go p.connectLoop()
}

// connectLoop dials until it has a connection or the Producer stops. It is started by
// startConnectLocked, at most one at a time, and on success installs the connection, whose
// write pump then sends what is unsent, in order.
func (p *Producer) connectLoop() {
	defer p.wg.Done()
	wait := backoff.Backoff{Min: p.cfg.ReconnectBackoff, Max: p.cfg.MaxReconnectBackoff}
	for attempt := 1; ; attempt++ {
		c, err := dial(p.ctx, p.addr, p.cfg, p)
		if err == nil {
			p.connects.Add(1)
			p.install(c)
			if attempt > 1 {
				p.logger.Info("connected", "attempts", attempt)
			}
			return
		}
		p.connectErrs.Add(1)
		p.mu.Lock()
		p.lastErr = err
		if p.stopped {
			p.connecting = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		// The first failure is worth a warning; repeating it every backoff is noise.
		level := slog.LevelDebug
		if attempt == 1 {
			level = slog.LevelWarn
		}
		retryIn := wait.Next()
		p.logger.Log(p.ctx, level, "connect failed", "error", err, "attempt", attempt, "retry_in", retryIn)
		timer := time.NewTimer(retryIn)
		select {
		case <-p.ctx.Done():
			timer.Stop()
			p.mu.Lock()
			p.connecting = false
			p.mu.Unlock()
			return
		case <-timer.C:
		}
	}
}

// install makes c the Producer's connection and wakes its write pump for what is unsent.
func (p *Producer) install(c *conn) {
	p.mu.Lock()
	p.connecting = false
	if p.stopped {
		p.mu.Unlock()
		c.close()
		return
	}
	p.conn = c
	p.lastErr = nil
	close(p.connChanged)
	p.connChanged = make(chan struct{})
	p.mu.Unlock()
	c.flush()
}

// onResponse implements connHandler: the oldest command in flight is answered.
func (p *Producer) onResponse(c *conn, data []byte) {
	var err error
	if string(data) != protocol.OK {
		err = fmt.Errorf("nsq: unexpected response %q from %s", data, p.addr)
	}
	p.answer(c, err)
}

// onError implements connHandler: the oldest command in flight failed.
func (p *Producer) onError(c *conn, err *Error) {
	p.answer(c, err)
}

// onMessage implements connHandler; nsqd sends no messages to a connection that has not
// subscribed.
func (p *Producer) onMessage(c *conn, m *Message) {
	p.logger.Warn("unexpected message on a producer connection", "id", m.ID.String())
}

func (p *Producer) answer(c *conn, err error) {
	p.mu.Lock()
	if c != p.conn {
		p.mu.Unlock()
		return
	}
	u := p.inflight.pop()
	if u == nil {
		p.mu.Unlock()
		p.logger.Warn("answer with no command in flight", "error", err)
		return
	}
	if perr, ok := err.(*Error); ok && perr.Fatal {
		p.fatalConn = c
		if len(u) > 1 {
			// nsqd refused the merged MPUB as a whole and executed none of it; sent
			// alone, each PUB gets its own answer.
			for _, t := range u {
				t.sent, t.alone = false, true
			}
			p.resend = append(p.resend, u...)
			u = nil
		}
	}
	p.checkDrainedLocked()
	kick := len(p.unsent) > 0
	p.mu.Unlock()
	if kick {
		c.flush()
	}
	for _, t := range u {
		if err == nil {
			p.published.Add(uint64(t.msgs))
		} else {
			p.failed.Add(1)
		}
		p.complete(t, err)
	}
}

// onClose implements connHandler: the connection is gone. What was in flight fails, or
// goes back to the head of the queue if nsqd cannot have executed it, and unless the
// Producer is stopping a new connection is dialled at once.
func (p *Producer) onClose(c *conn, err error) {
	p.mu.Lock()
	if c != p.conn {
		p.mu.Unlock()
		return
	}
	p.conn = nil
	var lost []*transaction
	for _, u := range p.inflight.drain() {
		lost = append(lost, u...)
	}
	if p.fatalConn == c {
		p.fatalConn = nil
		if !p.stopped {
			for _, t := range lost {
				t.sent = false
			}
			p.unsent = append(append(p.resend, lost...), p.unsent...)
			p.resend, lost = nil, nil
		}
	}
	if p.drained != nil {
		close(p.drained)
		p.drained = nil
	}
	stopped := p.stopped
	if !stopped {
		p.lastErr = err
		p.startConnectLocked()
	}
	p.mu.Unlock()
	if !stopped {
		p.logger.Warn("connection lost", "error", err, "in_flight", len(lost))
	}
	for _, t := range lost {
		p.failed.Add(1)
		p.complete(t, fmt.Errorf("%w: %w", ErrConnectionLost, err))
	}
}

func (p *Producer) complete(t *transaction, err error) {
	if t.ch != nil {
		t.ch <- err
		return
	}
	if t.done != nil {
		t.done(err)
	} else if err != nil {
		p.logger.Warn("asynchronous publish failed", "error", err)
	}
}

// checkPublish refuses locally what nsqd would refuse with a fatal error.
func checkPublish(cmd, topic string, body []byte) error {
	if !protocol.IsValidTopicName(topic) {
		return protocol.NewClientError(protocol.ErrBadTopic, "%s topic name %q is not valid", cmd, topic)
	}
	if len(body) == 0 {
		return protocol.NewClientError(protocol.ErrBadMessage, "%s invalid message body size 0", cmd)
	}
	return nil
}

// multiPublish builds an MPUB, refusing what nsqd would refuse with nsqd's own error.
func multiPublish(topic string, bodies [][]byte) (*protocol.Command, error) {
	if !protocol.IsValidTopicName(topic) {
		return nil, protocol.NewClientError(protocol.ErrBadTopic, "MPUB topic name %q is not valid", topic)
	}
	if len(bodies) == 0 {
		return nil, protocol.NewClientError(protocol.ErrBadBody, "MPUB invalid message count 0")
	}
	for i, b := range bodies {
		if len(b) == 0 {
			return nil, protocol.NewClientError(protocol.ErrBadMessage, "MPUB invalid message(%d) body size 0", i)
		}
	}
	return protocol.MultiPublish(topic, bodies)
}

// unitQueue is a FIFO of units. It reuses its slice: pops advance head, and the slice is
// reset when it empties, which in steady pipelining it does often.
type unitQueue struct {
	items []unit
	head  int
}

func (q *unitQueue) len() int { return len(q.items) - q.head }

func (q *unitQueue) push(u unit) {
	if q.head > 0 && q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	q.items = append(q.items, u)
}

func (q *unitQueue) pop() unit {
	if q.head == len(q.items) {
		return nil
	}
	u := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head > 1024 && q.head > len(q.items)/2 {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return u
}

// drain removes and returns everything, oldest first.
func (q *unitQueue) drain() []unit {
	out := append([]unit(nil), q.items[q.head:]...)
	clear(q.items)
	q.items, q.head = q.items[:0], 0
	return out
}
