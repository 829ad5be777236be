package nsqd

import (
	"bytes"
	"container/heap"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/quantile"
	"github.com/ternmq/tern/nsqd/logstore"
)

// Errors a channel returns to the protocol layer.
var (
	// errNotInFlight means FIN, REQ or TOUCH named a message that is not in flight. Its
	// text is NSQ's, which clients see after "FIN <id> failed ".
	errNotInFlight = errors.New("ID not in flight")
	// errNotOwner means FIN, REQ or TOUCH named a message in flight to another client.
	errNotOwner = errors.New("client does not own message")
	// errChannelExiting means the channel is being deleted or the daemon is shutting down.
	errChannelExiting = errors.New("channel exiting")
	// errTooManyConsumers means --max-channel-consumers is reached.
	errTooManyConsumers = errors.New("too many consumers")
	// errChannelNotFound means no channel has the name.
	errChannelNotFound = errors.New("channel not found")
)

// isDeliveryError reports whether err is a FIN, REQ or TOUCH naming a message the client
// cannot act on, which NSQ answers with a non-fatal error.
func isDeliveryError(err error) bool {
	return errors.Is(err, errNotInFlight) || errors.Is(err, errNotOwner)
}

// readBatch bounds how many records one take reads from the log at a time.
const readBatch = 256

// Channel is a cursor into its topic's log plus the delivery state of the messages the cursor
// has passed: those in flight to a client, those ready for redelivery (requeued, timed out or
// due), and those deferred until a time. A message leaves the channel when FINished.
//
// Every field below mu is guarded by it. Lock order: Topic.mu, then Channel.mu, then the
// scheduler's lock; a client's write lock is never held while taking Channel.mu.
type Channel struct {
	name      string
	topic     *Topic
	ephemeral bool
	sched     *scheduler
	logger    *slog.Logger

	messageCount atomic.Uint64 // records the cursor has passed
	requeueCount atomic.Uint64
	timeoutCount atomic.Uint64
	finishCount  atomic.Uint64
	e2e          *quantile.Stream // publish-to-FIN latency; nil unless percentiles are configured
	// mayWait is true while a client may be on the waiting list. take sets it before reading
	// the log, so a publish that lands after that read sees it and wakes the client; a publish
	// that sees it false landed before the read and was delivered by it.
	mayWait atomic.Bool

	mu      sync.Mutex
	reader  *logstore.Reader
	byID    map[uint64]*pending
	order   []*pending // every pending message in cursor order, done ones until popped
	orderAt int        // index of order's first live element
	ready   []*pending // FIFO of messages waiting for (re)delivery
	readyAt int
	timers  pendingHeap // in-flight deadlines and deferred due times
	slot    schedSlot   // the scheduler's; guarded by its lock
	schedAt int64       // the earliest wake-up this channel has asked for; 0 if none
	free    []*pending  // recycled pending structs

	clients  map[int64]*client
	waiting  []*client // clients with spare RDY that found nothing to deliver
	paused   bool
	exiting  bool
	inFlight int
	deferred int
	readBuf  []logstore.Entry
	taken    []*pending // scratch for take

	dirty        bool   // state changed since the last checkpoint
	ckptLowWater uint64 // low-water mark recorded by the last checkpoint written
}

func newChannel(t *Topic, name string, start logstore.Pos) *Channel {
	ch := &Channel{
		name:      name,
		topic:     t,
		ephemeral: protocol.IsEphemeral(name),
		sched:     t.sched,
		logger:    t.logger.With("channel", name),
		byID:      make(map[uint64]*pending),
		clients:   make(map[int64]*client),
		slot:      schedSlot{index: -1},
		dirty:     true,
	}
	ch.reader = t.log.NewReader(start)
	ch.ckptLowWater = start.Seq
	if o := t.opts(); len(o.E2EProcessingLatencyPercentiles) > 0 {
		ch.e2e = quantile.New(o.E2EProcessingLatencyWindowTime, o.E2EProcessingLatencyPercentiles)
	}
	return ch
}

// Name returns the channel's name.
func (ch *Channel) Name() string { return ch.name }

func (ch *Channel) schedSlot() *schedSlot { return &ch.slot }

// addClient subscribes c.
func (ch *Channel) addClient(c *client, maxConsumers int) error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.exiting {
		return errChannelExiting
	}
	if maxConsumers > 0 && len(ch.clients) >= maxConsumers {
		return errTooManyConsumers
	}
	ch.clients[c.id] = c
	return nil
}

// removeClient unsubscribes c and makes its in-flight messages ready for redelivery at once
// (NSQ leaves them until their timeout). It reports whether the channel is now an ephemeral
// channel with no clients, which its topic deletes.
func (ch *Channel) removeClient(c *client) (emptyEphemeral bool) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if _, ok := ch.clients[c.id]; !ok {
		return false
	}
	delete(ch.clients, c.id)
	for i := range ch.waiting {
		if ch.waiting[i] == c {
			ch.waiting = append(ch.waiting[:i], ch.waiting[i+1:]...)
			break
		}
	}
	requeued := false
	for i := 0; i < len(ch.timers); {
		p := ch.timers[i]
		if p.state == stateInFlight && p.owner == c {
			heap.Remove(&ch.timers, i)
			ch.inFlight--
			p.owner = nil
			p.state = stateReady
			ch.pushReady(p)
			requeued = true
			continue
		}
		i++
	}
	if requeued {
		ch.dirty = true
		ch.wakeWaitingLocked()
	}
	return ch.ephemeral && len(ch.clients) == 0
}

// take moves up to max messages into flight for c and appends them to dst. It serves ready
// messages first, then reads the log at the cursor; records whose DPUB time is in the future
// go to the timer heap instead. When nothing can be delivered c is put on the waiting list and
// woken when that changes.
func (ch *Channel) take(c *client, dst []delivery, max int, now int64) []delivery {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.paused || ch.exiting || max <= 0 {
		ch.addWaitingLocked(c)
		return dst
	}
	taken := ch.taken[:0]
	for len(taken) < max && ch.readyAt < len(ch.ready) {
		p := ch.ready[ch.readyAt]
		ch.ready[ch.readyAt] = nil
		ch.readyAt++
		if p.state == stateReady && ch.sampled(c) {
			taken = append(taken, p)
		} else if p.state == stateReady {
			ch.doneLocked(p)
		}
	}
	if ch.readyAt == len(ch.ready) {
		ch.ready, ch.readyAt = ch.ready[:0], 0
	}
	ch.mayWait.Store(true)
	for len(taken) < max {
		want := min(max-len(taken), readBatch)
		if limit, ok := ch.topic.readLimit(); ok {
			at := ch.reader.Pos().Seq
			if at >= limit {
				break
			}
			want = int(min(uint64(want), limit-at))
		}
		ents, err := ch.reader.Read(ch.readBuf[:0], want)
		ch.readBuf = ents[:0]
		if err != nil {
			ch.logger.Error("read topic log", "error", err)
			break
		}
		if len(ents) == 0 {
			break
		}
		ch.messageCount.Add(uint64(len(ents)))
		ch.dirty = true
		for i := range ents {
			p := ch.newPending(&ents[i])
			deliverAt := ents[i].DeliverAt
			ents[i] = logstore.Entry{} // drop the body reference held by the read buffer
			ch.order = append(ch.order, p)
			ch.byID[p.id] = p
			if deliverAt > now {
				p.state = stateDeferred
				p.due = deliverAt
				p.detachBody(deliverAt - now)
				heap.Push(&ch.timers, p)
				ch.deferred++
				continue
			}
			if !ch.sampled(c) {
				ch.doneLocked(p)
				continue
			}
			taken = append(taken, p)
		}
	}
	if len(taken) == 0 {
		ch.addWaitingLocked(c)
		ch.scheduleLocked()
		return dst
	}
	if len(ch.waiting) == 0 {
		ch.mayWait.Store(false)
	}
	deadline := now + int64(c.msgTimeout)
	for i, p := range taken {
		p.state = stateInFlight
		p.attempts++
		p.owner = c
		p.deliveredAt = now
		p.due = deadline
		heap.Push(&ch.timers, p)
		dst = append(dst, delivery{id: p.id, timestamp: p.timestamp, attempts: p.attempts, body: p.body, due: p.releasedDue})
		p.releasedDue = 0
		taken[i] = nil
	}
	ch.taken = taken[:0]
	ch.inFlight += len(taken)
	c.inFlight.Add(int64(len(taken)))
	ch.dirty = true
	ch.scheduleLocked()
	return dst
}

// sampled reports whether a message goes to c under its sample_rate; NSQ drops the others
// from the channel, and so does Tern.
func (ch *Channel) sampled(c *client) bool {
	return c.sampleRate <= 0 || rand.Int32N(100) <= c.sampleRate
}

func (ch *Channel) newPending(e *logstore.Entry) *pending {
	var p *pending
	if n := len(ch.free); n > 0 {
		p = ch.free[n-1]
		ch.free = ch.free[:n-1]
	} else {
		p = new(pending)
	}
	*p = pending{
		pos:       e.Pos,
		id:        e.ID,
		timestamp: e.Timestamp,
		body:      e.Body,
		heapIndex: -1,
	}
	return p
}

// longHold is how long a message may wait with its body still pointing into a log buffer.
const longHold = int64(time.Second)

// detachBody copies the body of a message about to wait for hold ns when that is long: the
// body aliases a log read chunk or write batch, and one long-deferred message must not keep a
// whole buffer alive.
func (p *pending) detachBody(hold int64) {
	if hold >= longHold {
		p.body = bytes.Clone(p.body)
	}
}

// inFlightTo checks that p is a message in flight to c.
func inFlightTo(p *pending, c *client) error {
	switch {
	case p == nil || p.state != stateInFlight:
		return errNotInFlight
	case p.owner != c:
		return errNotOwner
	}
	return nil
}

// finish completes an in-flight message of c.
func (ch *Channel) finish(c *client, id uint64) error {
	ch.mu.Lock()
	p := ch.byID[id]
	if err := inFlightTo(p, c); err != nil {
		ch.mu.Unlock()
		return err
	}
	heap.Remove(&ch.timers, p.heapIndex)
	ch.inFlight--
	published := p.timestamp
	ch.doneLocked(p)
	ch.mu.Unlock()
	c.inFlight.Add(-1)
	ch.finishCount.Add(1)
	if ch.e2e != nil {
		ch.e2e.Observe(float64(time.Now().UnixNano() - published))
	}
	return nil
}

// requeue returns an in-flight message of c to the channel, at once or after delay ns.
func (ch *Channel) requeue(c *client, id uint64, delay, now int64) error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	p := ch.byID[id]
	if err := inFlightTo(p, c); err != nil {
		return err
	}
	ch.inFlight--
	c.inFlight.Add(-1)
	p.owner = nil
	ch.requeueCount.Add(1)
	ch.dirty = true
	if delay <= 0 {
		heap.Remove(&ch.timers, p.heapIndex)
		p.state = stateReady
		ch.pushReady(p)
		ch.wakeWaitingLocked()
		return nil
	}
	p.state = stateDeferred
	p.due = now + delay
	p.detachBody(delay)
	ch.deferred++
	heap.Fix(&ch.timers, p.heapIndex)
	ch.scheduleLocked()
	return nil
}

// touch extends an in-flight message's deadline by c's msg_timeout, never past its delivery
// time plus maxMsgTimeout.
func (ch *Channel) touch(c *client, id uint64, now, maxMsgTimeout int64) error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	p := ch.byID[id]
	if err := inFlightTo(p, c); err != nil {
		return err
	}
	due := now + int64(c.msgTimeout)
	if limit := p.deliveredAt + maxMsgTimeout; due > limit {
		due = limit
	}
	p.due = due
	heap.Fix(&ch.timers, p.heapIndex)
	return nil
}

// fire is called by the scheduler: it times out overdue in-flight messages and releases due
// deferred ones.
func (ch *Channel) fire(now int64) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.schedAt = 0
	released := false
	for len(ch.timers) > 0 && ch.timers[0].due <= now {
		p := heap.Pop(&ch.timers).(*pending)
		switch p.state {
		case stateInFlight:
			ch.inFlight--
			owner := p.owner
			owner.inFlight.Add(-1)
			owner.timeoutCount.Add(1)
			owner.wake()
			p.owner = nil
			ch.timeoutCount.Add(1)
		case stateDeferred:
			ch.deferred--
		}
		p.state = stateReady
		p.releasedDue = p.due
		ch.pushReady(p)
		released = true
	}
	if released {
		ch.dirty = true
		ch.wakeWaitingLocked()
	}
	ch.scheduleLocked()
}

// scheduleLocked registers the earliest timer with the scheduler when it is earlier than what
// is registered (see scheduler for why later ones are left alone).
func (ch *Channel) scheduleLocked() {
	if len(ch.timers) == 0 {
		return
	}
	if at := ch.timers[0].due; ch.schedAt == 0 || at < ch.schedAt {
		ch.schedAt = at
		ch.sched.schedule(ch, at)
	}
}

func (ch *Channel) pushReady(p *pending) {
	ch.ready = append(ch.ready, p)
}

// doneLocked retires p: it leaves the ID map now and the order queue once everything before
// it is done, which is when its struct is recycled.
func (ch *Channel) doneLocked(p *pending) {
	p.state = stateDone
	p.owner = nil
	p.body = nil
	delete(ch.byID, p.id)
	ch.dirty = true
	ch.advanceOrderLocked()
}

// advanceOrderLocked pops finished messages off the front of the order queue, and compacts it
// when finished messages behind a long-lived one (a deferred message, say) pile up.
func (ch *Channel) advanceOrderLocked() {
	for ch.orderAt < len(ch.order) && ch.order[ch.orderAt].state == stateDone {
		ch.recycle(ch.order[ch.orderAt])
		ch.order[ch.orderAt] = nil
		ch.orderAt++
	}
	live := len(ch.order) - ch.orderAt
	switch {
	case live == 0:
		ch.order, ch.orderAt = ch.order[:0], 0
	case ch.orderAt > 1024 && ch.orderAt > live:
		n := copy(ch.order, ch.order[ch.orderAt:])
		clear(ch.order[n:])
		ch.order, ch.orderAt = ch.order[:n], 0
	}
	if live > 1024 && live > 4*len(ch.byID) {
		kept := ch.order[:0]
		for _, p := range ch.order[ch.orderAt:] {
			if p.state == stateDone {
				ch.recycle(p)
				continue
			}
			kept = append(kept, p)
		}
		clear(ch.order[len(kept):])
		ch.order, ch.orderAt = kept, 0
	}
}

func (ch *Channel) recycle(p *pending) {
	if len(ch.free) < 4096 {
		*p = pending{}
		ch.free = append(ch.free, p)
	}
}

// lowWaterLocked is the oldest log sequence the channel still needs: its oldest unfinished
// message, or its cursor.
func (ch *Channel) lowWaterLocked() uint64 {
	if ch.orderAt < len(ch.order) {
		return ch.order[ch.orderAt].pos.Seq
	}
	return ch.reader.Pos().Seq
}

func (ch *Channel) addWaitingLocked(c *client) {
	for _, w := range ch.waiting {
		if w == c {
			return
		}
	}
	ch.waiting = append(ch.waiting, c)
}

// wakeWaiting wakes every client waiting for messages; the topic calls it after an append.
func (ch *Channel) wakeWaiting() {
	if !ch.mayWait.Load() {
		return
	}
	ch.mu.Lock()
	ch.wakeWaitingLocked()
	ch.mu.Unlock()
}

func (ch *Channel) wakeWaitingLocked() {
	for i, c := range ch.waiting {
		c.wake()
		ch.waiting[i] = nil
	}
	ch.waiting = ch.waiting[:0]
	ch.mayWait.Store(false)
}

// wakeAll wakes every subscribed client (pause changes, empty).
func (ch *Channel) wakeAllLocked() {
	for _, c := range ch.clients {
		c.wake()
	}
}

// setPaused pauses or resumes delivery; in-flight messages may still be finished.
func (ch *Channel) setPaused(paused bool) {
	ch.mu.Lock()
	ch.paused = paused
	ch.wakeAllLocked()
	ch.mu.Unlock()
}

// Paused reports whether delivery is paused.
func (ch *Channel) Paused() bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.paused
}

// empty drops every message of the channel: in flight, ready, deferred and unread, moving the
// cursor to what the topic has made readable.
func (ch *Channel) empty() {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for _, p := range ch.timers {
		if p.state == stateInFlight {
			p.owner.inFlight.Add(-1)
		}
		p.heapIndex = -1
	}
	ch.timers = ch.timers[:0]
	clear(ch.ready)
	ch.ready, ch.readyAt = ch.ready[:0], 0
	for _, p := range ch.order[ch.orderAt:] {
		p.state = stateDone
	}
	clear(ch.byID)
	ch.inFlight, ch.deferred = 0, 0
	ch.advanceOrderLocked()
	_ = ch.reader.Close()
	ch.reader = ch.topic.log.NewReader(ch.topic.readablePos())
	ch.dirty = true
	ch.wakeAllLocked()
}

// skipTo moves the cursor from one position to another if it stands at the first; an
// emptied paused topic uses it to drop what it held back.
func (ch *Channel) skipTo(from, to logstore.Pos) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.reader.Pos().Seq != from.Seq {
		return
	}
	_ = ch.reader.Close()
	ch.reader = ch.topic.log.NewReader(to)
	ch.dirty = true
}

// Stats returns a snapshot of the channel with its clients.
func (ch *Channel) Stats() ChannelStats { return ch.stats(true) }

// depthLocked is NSQ's channel depth: messages ready to be delivered, read or not.
func (ch *Channel) depthLocked() int64 {
	unread := int64(0)
	limit := ch.topic.readableSeq()
	// Records below the log's head are gone (an ephemeral topic's memory bound dropped them,
	// or segments were deleted); the cursor will skip them, so they are not depth.
	at := max(ch.reader.Pos().Seq, ch.topic.log.Head())
	if limit > at {
		unread = int64(limit - at)
	}
	return unread + int64(len(ch.ready)-ch.readyAt)
}

// Depth returns the channel's depth.
func (ch *Channel) Depth() int64 {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.depthLocked()
}

// close stops the channel: clients are disconnected and the scheduler forgets it. Its state
// stays in memory for a final checkpoint.
func (ch *Channel) close() []*client {
	ch.mu.Lock()
	ch.exiting = true
	clients := make([]*client, 0, len(ch.clients))
	for _, c := range ch.clients {
		clients = append(clients, c)
	}
	ch.mu.Unlock()
	ch.sched.cancel(ch)
	return clients
}

// String is for logs.
func (ch *Channel) String() string { return fmt.Sprintf("%s/%s", ch.topic.name, ch.name) }

// pendingHeap orders pending messages by due time.
type pendingHeap []*pending

func (h pendingHeap) Len() int           { return len(h) }
func (h pendingHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h pendingHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex = i
	h[j].heapIndex = j
}
func (h *pendingHeap) Push(x any) {
	p := x.(*pending)
	p.heapIndex = len(*h)
	*h = append(*h, p)
}
func (h *pendingHeap) Pop() any {
	old := *h
	n := len(old)
	p := old[n-1]
	old[n-1] = nil
	p.heapIndex = -1
	*h = old[:n-1]
	return p
}
