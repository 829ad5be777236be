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

const (
	// readBatch bounds how many records one read of the topic log takes; a read is then
	// handed out among the channel's subscribers.
	readBatch = 256
	// fireBatch bounds how many due messages one call of fire releases, so that a channel
	// with a flood of due messages cannot hold the scheduler away from the others.
	fireBatch = 1024
	// maxDeferredRead bounds how many deferred records one read takes beyond what the
	// subscribers have room for: they take none.
	maxDeferredRead = 4 * readBatch
	// readErrLogInterval bounds how often a channel logs failing reads of its log.
	readErrLogInterval = 10 * time.Second
	// checkpointChunk bounds how many entries a checkpoint encodes per hold of the lock.
	checkpointChunk = 1024
)

// subscriber is what a channel needs of a consumer: it is told when the channel may have
// messages for it, and says how many it may have in flight. The channel never reaches into
// a connection; a test subscribes anything that implements this.
type subscriber interface {
	// wake tells the subscriber to take what the channel has for it; it must not block.
	wake()
	// parked says the subscriber is idle, waiting for a wake: woken, it takes at once. One
	// that is not may be busy writing to a client that does not read.
	parked() bool
	// readyCount is how many messages the subscriber may have in flight (its RDY); 0 while
	// it takes nothing (RDY 0, or closing).
	readyCount() int64
	// close disconnects the subscriber: its channel is being deleted.
	close()
	// stats describes it in the channel's stats.
	stats() ClientStats
}

// subscription is one subscriber's place in a channel: its delivery settings, fixed at
// subscription, and what the channel holds for it.
type subscription struct {
	sub        subscriber
	msgTimeout int64 // ns a delivery stays in flight without FIN or TOUCH
	sampleRate int32 // 0: every message; else the percentage delivered

	inFlight atomic.Int64  // written under Channel.mu, read anywhere
	timeouts atomic.Uint64 // deliveries to it that timed out

	// outbox holds the messages the channel assigned to the subscriber and its pump has not
	// taken yet. Guarded by Channel.mu, as is gone.
	outbox []*pending
	gone   bool
}

// room is how many more messages the subscriber may be given: its RDY less what it has in
// flight and in its outbox. Channel.mu is held.
func (s *subscription) room() int64 {
	return s.sub.readyCount() - s.inFlight.Load() - int64(len(s.outbox))
}

// Channel is a cursor into its topic's log plus the delivery state of the messages the cursor
// has passed: those in flight to a subscriber, those assigned to one and not yet taken, those
// ready for (re)delivery (requeued, timed out or due) and those deferred until a time. A
// message leaves the channel when FINished.
//
// Delivery is fair: whatever is ready is handed out among the subscribers with room in
// proportion to their room (what their RDY leaves free), the remainder round-robin, and each
// subscriber's pump takes its share; no subscriber takes a whole batch while others wait, and
// one that stops taking keeps only what it was given.
//
// Locks (the daemon's order is in doc.go): readMu, then mu, then the scheduler's and the
// log's. readMu is held by whoever reads the log for the channel (one subscriber's pump, for
// everyone) or moves its cursor; mu guards the delivery state and is never held across I/O,
// so a read from disk or a long checkpoint never delays the scheduler or a FIN.
type Channel struct {
	name      string
	topic     *Topic
	ephemeral bool
	sched     *scheduler
	logger    *slog.Logger

	requeueCount    atomic.Uint64
	timeoutCount    atomic.Uint64
	finishCount     atomic.Uint64
	expiredCount    atomic.Uint64     // messages that outlived the TTL
	deadLetterCount atomic.Uint64     // messages moved to the dead-letter topic
	e2e             *quantile.Stream  // publish-to-FIN latency; nil unless percentiles are configured
	lateness        latenessHistogram // how late this channel's timer-released messages were written
	// mayWait is true while a subscriber may be on the waiting list. A reader sets it before
	// reading the log, so a publish that lands after that read sees it and wakes the
	// waiting; a publish that sees it false landed before the read and was delivered by it.
	mayWait atomic.Bool

	readMu  sync.Mutex
	reader  *logstore.Reader // guarded by readMu
	readBuf []logstore.Entry // guarded by readMu

	mu      sync.Mutex
	cursor  logstore.Pos // where the next record read enters the channel
	byID    map[uint64]*pending
	order   []*pending // every pending message in cursor order, done ones until popped
	orderAt int        // index of order's first live element
	ready   []*pending // FIFO of messages waiting to be assigned
	readyAt int
	timers  pendingHeap // in-flight deadlines and deferred due times
	slot    schedSlot   // the scheduler's; guarded by its lock
	schedAt int64       // the earliest wake-up this channel has asked for; 0 if none
	free    []*pending  // recycled pending structs

	subs     []*subscription // in the order they subscribed; assignment rotates over them
	rr       int             // where the next round-robin remainder starts
	waiting  []*subscription // subscribers with room that found nothing to take
	rooms    []int           // scratch for assignReadyLocked
	shares   []int           // scratch for assignReadyLocked
	paused   bool
	exiting  bool
	inFlight int
	deferred int
	assigned int // messages in outboxes

	// Settings in force (settings.go), derived from the topic's and the channel's.
	cfg        ChannelSettings
	ttl        int64 // ns; 0: messages never expire
	expireDead bool  // expired messages go to the dead-letter topic
	sweepAt    int64 // when expired messages are next swept; 0 if not planned
	sweeping   bool  // the worker has been asked to sweep
	dying      []*pending
	epoch      uint64 // counts dropStateLocked: a dead-letter flush across one drops its result
	// injected are redriven messages not finished yet, and redriven the dead letters sent
	// back; both are kept in the redrive file, rewritten when redriveDirty.
	injected     map[uint64]*pending
	redriven     map[uint64]struct{}
	redriveDirty bool

	// routedFrom is the log sequence message_count counts from: messages routed into the
	// channel are those the topic made readable since.
	routedFrom uint64

	dirty        bool   // state changed since the last checkpoint
	ckptLowWater uint64 // low-water mark recorded by the last checkpoint written
	// ckptSyncedLowWater is that of the last checkpoint known to be fsynced, which is what
	// retention may trust: an unsynced one may not survive a power cut.
	ckptSyncedLowWater uint64

	// The checkpoint files (see checkpointSlots), guarded by the topic's diskMu, which
	// serialises every checkpoint write.
	ckptGen      uint64 // generation of the newest checkpoint written or restored
	ckptScratch  int    // the slot unsynced checkpoints overwrite; the other holds the last synced
	ckptPending  bool   // the newest checkpoint may not be fsynced yet:
	ckptPendSlot int    // the one in this slot (the scratch slot, or after a restart the one read)
	ckptNewFile  bool   // and its directory entry may not be either

	readErrLogged    time.Time // when a failed read was last logged
	readErrsUnlogged int       // failed reads since, not logged
}

// newChannel makes a channel of t starting at start, with its saved settings cs (read by the
// caller before taking Topic.mu: settingsMu is not taken under it).
func newChannel(t *Topic, name string, start logstore.Pos, cs ChannelSettings) *Channel {
	ch := &Channel{
		name:      name,
		topic:     t,
		ephemeral: protocol.IsEphemeral(name),
		sched:     t.sched,
		logger:    t.logger.With("channel", name),
		byID:      make(map[uint64]*pending),
		slot:      schedSlot{index: -1},
		dirty:     true,
		injected:  make(map[uint64]*pending),
		redriven:  make(map[uint64]struct{}),
	}
	ch.reader = t.log.NewReader(start)
	ch.cursor = ch.reader.Pos()
	ch.routedFrom = ch.cursor.Seq
	ch.ckptLowWater = ch.cursor.Seq
	ch.ckptSyncedLowWater = ch.cursor.Seq
	ch.applySettingsLocked(t.Settings(), cs, time.Now().UnixNano())
	if o := t.opts(); len(o.E2EProcessingLatencyPercentiles) > 0 {
		ch.e2e = quantile.New(o.E2EProcessingLatencyWindowTime, o.E2EProcessingLatencyPercentiles)
	}
	return ch
}

// Name returns the channel's name.
func (ch *Channel) Name() string { return ch.name }

func (ch *Channel) schedSlot() *schedSlot { return &ch.slot }

// subscribe adds s with its delivery settings and returns its subscription.
func (ch *Channel) subscribe(s subscriber, msgTimeout time.Duration, sampleRate int32, maxConsumers int) (*subscription, error) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.exiting {
		return nil, errChannelExiting
	}
	if maxConsumers > 0 && len(ch.subs) >= maxConsumers {
		return nil, errTooManyConsumers
	}
	sub := &subscription{sub: s, msgTimeout: int64(msgTimeout), sampleRate: sampleRate}
	ch.subs = append(ch.subs, sub)
	return sub, nil
}

// unsubscribe removes sub and makes what it held ready for redelivery at once: its outbox
// first, in order, then its in-flight messages (NSQ leaves those until their timeout). It
// reports whether the channel is now an ephemeral channel with no subscribers, which its
// topic deletes.
func (ch *Channel) unsubscribe(sub *subscription) (emptyEphemeral bool) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if sub.gone {
		return false
	}
	sub.gone = true
	ch.subs = removeSub(ch.subs, sub)
	ch.waiting = removeSub(ch.waiting, sub)
	released := ch.unassignLocked(sub.outbox)
	clear(sub.outbox)
	sub.outbox = nil
	if ch.removeTimersLocked(func(p *pending) bool {
		if p.state != stateInFlight || p.owner != sub {
			return false
		}
		ch.inFlight--
		sub.inFlight.Add(-1)
		p.owner = nil
		// NSQ counts a disconnect as a timeout: a message that crashes its consumers must
		// still reach the dead-letter topic.
		if ch.attemptsUsedLocked(p) {
			ch.dieLocked(p, reasonTimeout)
		} else {
			p.state = stateReady
			ch.pushReady(p)
		}
		return true
	}) {
		released = true
	}
	if released {
		ch.dirty = true
		ch.wakeWaitingLocked()
	} else {
		ch.passWakeLocked()
	}
	return ch.ephemeral && len(ch.subs) == 0
}

func removeSub(subs []*subscription, sub *subscription) []*subscription {
	for i, s := range subs {
		if s == sub {
			copy(subs[i:], subs[i+1:])
			subs[len(subs)-1] = nil
			return subs[:len(subs)-1]
		}
	}
	return subs
}

// rdyChanged gives back to the channel what sub was assigned beyond its room, once its RDY
// was lowered or it started closing, so that other subscribers can have it.
func (ch *Channel) rdyChanged(sub *subscription) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	keep := max(0, int(sub.sub.readyCount()-sub.inFlight.Load()))
	if len(sub.outbox) > keep && ch.unassignLocked(sub.outbox[keep:]) {
		clear(sub.outbox[keep:])
		sub.outbox = sub.outbox[:keep]
		ch.wakeWaitingLocked()
		return
	}
	// sub may hold a wake it can no longer use: a closing client's pump takes nothing.
	ch.passWakeLocked()
}

// unassignLocked puts assigned messages back at the front of the ready queue, in order, and
// reports whether there were any. The caller empties the outbox they came from.
func (ch *Channel) unassignLocked(ps []*pending) bool {
	if len(ps) == 0 {
		return false
	}
	for _, p := range ps {
		p.state, p.owner = stateReady, nil
	}
	ch.assigned -= len(ps)
	if ch.readyAt >= len(ps) {
		ch.readyAt -= len(ps)
		copy(ch.ready[ch.readyAt:], ps)
	} else {
		rest := ch.ready[ch.readyAt:]
		ch.ready = append(append(make([]*pending, 0, len(ps)+len(rest)), ps...), rest...)
		ch.readyAt = 0
	}
	return true
}

// take moves into flight for sub what the channel has for it, as much as its room allows,
// and appends the deliveries to dst. What is ready is handed out among all subscribers with
// room first; when nothing is ready, sub reads the next records of the log for everyone
// (unless another subscriber is reading, which then hands sub its share). Records whose
// DPUB time is in the future go to the timer heap instead. A subscriber that gets nothing is
// put on the waiting list and woken when that may change.
func (ch *Channel) take(sub *subscription, dst []delivery, now int64) []delivery {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if sub.gone {
		return dst
	}
	if ch.paused || ch.exiting {
		ch.addWaitingLocked(sub)
		return dst
	}
	room := int(sub.sub.readyCount() - sub.inFlight.Load())
	if room <= 0 {
		ch.passWakeLocked()
		return dst
	}
	for room > 0 {
		if len(sub.outbox) == 0 {
			ch.assignReadyLocked(sub)
		}
		if len(sub.outbox) > 0 {
			n := len(dst)
			dst = ch.deliverLocked(sub, dst, now, room)
			room -= len(dst) - n
			continue
		}
		if !ch.readMu.TryLock() {
			// Another subscriber is reading and hands out what it reads; when it finishes
			// it wakes a waiting subscriber if records remain.
			if len(dst) == 0 {
				ch.addWaitingLocked(sub)
			}
			return dst
		}
		n, atTail := ch.readLocked(now)
		if sub.gone {
			// Gone while the log was read (with mu released): the others may all be
			// waiting on this reader. What it read is handed to them; a publish that
			// landed during the read, which woke one of them into a taken readMu, is
			// passed on.
			if n > 0 {
				ch.assignReadyLocked(nil)
			} else {
				ch.passWakeLocked()
			}
			return dst
		}
		if ch.paused || ch.exiting {
			// Paused or deleted while the log was read: what was read waits in the ready
			// queue; unpausing wakes everyone.
			if len(dst) == 0 {
				ch.addWaitingLocked(sub)
			}
			return dst
		}
		if n == 0 {
			if len(dst) > 0 {
				return dst
			}
			// Messages may have become ready while the log was read with mu released (a
			// subscriber left, a REQ, a timeout): their wake went to the waiting, and sub
			// was not among them. Take them while sub has room: then each pass hands some
			// of the ready queue out. Without room (its RDY lowered, or CLS, meanwhile)
			// nothing can be handed to sub, and looping would spin with mu held.
			if len(ch.ready) > ch.readyAt && sub.room() > 0 {
				continue
			}
			// Nothing to read. A publish that lands from now on sees mayWait, set with the
			// waiting list, and wakes sub; one that landed since a read that found the
			// tail shows here, and is read. Anything else that stopped the read (no room
			// left, a paused topic, an error) is not retried here.
			ch.addWaitingLocked(sub)
			if !atTail || ch.cursor.Seq >= ch.topic.readableSeq() {
				return dst
			}
		}
	}
	return dst // a FIN, REQ, timeout or RDY wakes it for more
}

// readLocked reads the next records of the log into the channel, unlocking mu around the
// read: records due later go to the timer heap, the others to the ready queue. It is called
// with readMu and mu held and returns with mu held and readMu released; before releasing it,
// it wakes a waiting subscriber if more records remain, so that it reads next.
// It returns how many records it read and, when none, whether that is because the read
// found the end of the log (rather than no room, a pause or an error).
func (ch *Channel) readLocked(now int64) (n int, atTail bool) {
	defer func() {
		// Only after progress: a read that fails would otherwise have the waiting, its own
		// subscriber among them, retry it at once, and again.
		if n > 0 && len(ch.waiting) > 0 && ch.cursor.Seq < ch.topic.readableSeq() {
			ch.wakeWaitingLocked()
		}
		ch.readMu.Unlock()
	}()
	// Read no more than the subscribers have room for, less what is read and not yet handed
	// out: what is read but not delivered waits in memory, and a timed-out or requeued
	// message should not queue behind it. A batch per subscriber keeps each share a batch.
	want := -(len(ch.ready) - ch.readyAt)
	for _, s := range ch.subs {
		want += int(max(0, s.room()))
	}
	want = min(want, readBatch*max(1, len(ch.subs)))
	if want <= 0 {
		return 0, false
	}
	// end is where this read must stop, however many records it steps over: the pause
	// point, or the start of a range the topic dropped.
	end := uint64(noEnd)
	limit, limited := ch.topic.readLimit()
	if limited {
		if ch.cursor.Seq >= limit {
			return 0, false
		}
		want = int(min(uint64(want), limit-ch.cursor.Seq))
		end = limit
	}
	ch.skipDroppedLocked()
	// Ranges the topic dropped before any channel read them (an emptied paused topic) are
	// skipped. The pause point is read first: a hole is published before the pause point
	// moves past it.
	for {
		h, ok := ch.topic.nextHole(ch.cursor.Seq)
		if !ok {
			break
		}
		if ch.cursor.Seq < h.from {
			want = int(min(uint64(want), h.from-ch.cursor.Seq))
			end = min(end, h.from)
			break
		}
		_ = ch.reader.Close()
		ch.reader = ch.topic.log.NewReader(h.to)
		ch.cursor = ch.reader.Pos()
		ch.dirty = true
		if limited && ch.cursor.Seq >= limit {
			return 0, false
		}
	}
	ch.mayWait.Store(true)
	ch.mu.Unlock()
	// Deferred records take no room: read on past them, up to a bound.
	ents, live := ch.readBuf[:0], 0
	var err error
	for live < want && len(ents) < want+maxDeferredRead {
		n := len(ents)
		if ents, err = ch.reader.ReadBelow(ents, want-live, end); err != nil || len(ents) == n {
			break
		}
		for i := n; i < len(ents); i++ {
			if ents[i].DeliverAt <= now {
				live++
			}
		}
	}
	ch.mu.Lock()
	ch.readBuf = ents[:0]
	if err != nil && !errors.Is(err, logstore.ErrClosed) {
		ch.logReadError(err)
	}
	ch.cursor = ch.reader.Pos()
	if len(ents) == 0 {
		return 0, err == nil
	}
	ch.dirty = true
	for i := range ents {
		p := ch.newPending(&ents[i])
		deliverAt := ents[i].DeliverAt
		ents[i] = logstore.Entry{} // drop the body reference held by the read buffer
		ch.order = append(ch.order, p)
		ch.byID[p.id] = p
		if ch.expired(p.timestamp, now) {
			ch.expireLocked(p)
			continue
		}
		if deliverAt > now {
			p.state = stateDeferred
			p.due = deliverAt
			p.detachBody(deliverAt - now)
			heap.Push(&ch.timers, p)
			ch.deferred++
			continue
		}
		p.state = stateReady
		ch.pushReady(p)
	}
	ch.scheduleLocked()
	return len(ents), false
}

// logReadError logs a failed read of the topic log at most once per readErrLogInterval, with
// how many failures went unlogged. mu is held.
func (ch *Channel) logReadError(err error) {
	now := time.Now()
	if now.Sub(ch.readErrLogged) < readErrLogInterval {
		ch.readErrsUnlogged++
		return
	}
	ch.logger.Error("read topic log", "error", err, "errors_not_logged", ch.readErrsUnlogged)
	ch.readErrLogged, ch.readErrsUnlogged = now, 0
}

// assignReadyLocked hands the ready queue out among the subscribers with room: each gets a
// share in proportion to its room, the remainder goes one each round-robin, and what nobody
// has room for stays ready. Subscribers given something are woken, but for self, whose pump
// is the caller.
func (ch *Channel) assignReadyLocked(self *subscription) {
	avail := len(ch.ready) - ch.readyAt
	if avail == 0 || ch.paused || ch.exiting {
		return
	}
	rooms, shares := ch.rooms[:0], ch.shares[:0]
	total := 0
	for _, s := range ch.subs {
		r := int(max(0, s.room()))
		rooms = append(rooms, r)
		shares = append(shares, 0)
		total += r
	}
	ch.rooms, ch.shares = rooms, shares
	if total == 0 {
		return
	}
	// Shares in proportion to room, rounded down. Each rounding loses less than one, and
	// while n < total every share is below its room, so one pass from where the last
	// remainder stopped places the remainder, one each: single messages rotate.
	n := min(avail, total)
	given := 0
	for i, r := range rooms {
		shares[i] = n * r / total
		given += shares[i]
	}
	for k := 0; given < n && k < len(rooms); k++ {
		i := (ch.rr + k) % len(rooms)
		if shares[i] < rooms[i] {
			shares[i]++
			given++
			ch.rr = (i + 1) % len(rooms)
		}
	}
	for i, s := range ch.subs {
		got := false
		for share := shares[i]; share > 0 && ch.readyAt < len(ch.ready); {
			p := ch.ready[ch.readyAt]
			ch.ready[ch.readyAt] = nil
			ch.readyAt++
			if p.state != stateReady {
				continue // stale: finished or emptied meanwhile
			}
			p.state, p.owner = stateAssigned, s
			s.outbox = append(s.outbox, p)
			ch.assigned++
			share--
			got = true
		}
		if got && s != self {
			s.sub.wake()
		}
	}
	if ch.readyAt == len(ch.ready) {
		ch.ready, ch.readyAt = ch.ready[:0], 0
	}
}

// deliverLocked moves up to room messages of sub's outbox into flight and appends them to
// dst; the rest of the outbox goes back to the ready queue. Messages its sample_rate leaves
// out are dropped from the channel, as NSQ drops them.
func (ch *Channel) deliverLocked(sub *subscription, dst []delivery, now int64, room int) []delivery {
	out := sub.outbox
	k := min(room, len(out))
	deadline := now + sub.msgTimeout
	taken := 0
	for _, p := range out[:k] {
		ch.assigned--
		if ch.expired(p.timestamp, now) {
			ch.expireLocked(p)
			continue
		}
		if !sampled(sub.sampleRate) {
			ch.doneLocked(p)
			continue
		}
		p.state = stateInFlight
		p.attempts++
		p.deliveredAt = now
		if p.firstDeliv == 0 {
			p.firstDeliv = now
		}
		p.due = deadline
		heap.Push(&ch.timers, p)
		dst = append(dst, delivery{id: p.id, timestamp: p.timestamp, attempts: p.attempts, body: p.body, due: p.releasedDue})
		p.releasedDue = 0
		taken++
	}
	if ch.unassignLocked(out[k:]) {
		ch.wakeWaitingLocked()
	}
	clear(out)
	sub.outbox = out[:0]
	if taken > 0 {
		ch.inFlight += taken
		sub.inFlight.Add(int64(taken))
		ch.dirty = true
		ch.scheduleLocked()
	}
	return dst
}

// sampled reports whether a message goes to a subscriber with the given sample_rate; NSQ
// drops the others from the channel, and so does Tern.
func sampled(rate int32) bool {
	return rate <= 0 || rand.Int32N(100) <= rate
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

// inFlightTo checks that p is a message in flight to sub.
func inFlightTo(p *pending, sub *subscription) error {
	switch {
	case p == nil || p.state != stateInFlight:
		return errNotInFlight
	case p.owner != sub:
		return errNotOwner
	}
	return nil
}

// finish completes an in-flight message of sub.
func (ch *Channel) finish(sub *subscription, id uint64) error {
	ch.mu.Lock()
	p := ch.byID[id]
	if err := inFlightTo(p, sub); err != nil {
		ch.mu.Unlock()
		return err
	}
	heap.Remove(&ch.timers, p.heapIndex)
	ch.inFlight--
	sub.inFlight.Add(-1)
	published := p.timestamp
	ch.doneLocked(p)
	ch.mu.Unlock()
	ch.finishCount.Add(1)
	if ch.e2e != nil {
		ch.e2e.Observe(float64(time.Now().UnixNano() - published))
	}
	return nil
}

// requeue returns an in-flight message of sub to the channel, at once or after delay ns.
func (ch *Channel) requeue(sub *subscription, id uint64, delay, now int64) error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	p := ch.byID[id]
	if err := inFlightTo(p, sub); err != nil {
		return err
	}
	ch.inFlight--
	sub.inFlight.Add(-1)
	p.owner = nil
	ch.requeueCount.Add(1)
	ch.dirty = true
	if ch.attemptsUsedLocked(p) {
		heap.Remove(&ch.timers, p.heapIndex)
		ch.dieLocked(p, reasonRequeue)
		return nil
	}
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

// touch extends an in-flight message's deadline by sub's msg_timeout, never past its
// delivery time plus maxMsgTimeout.
func (ch *Channel) touch(sub *subscription, id uint64, now, maxMsgTimeout int64) error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	p := ch.byID[id]
	if err := inFlightTo(p, sub); err != nil {
		return err
	}
	p.due = min(now+sub.msgTimeout, p.deliveredAt+maxMsgTimeout)
	heap.Fix(&ch.timers, p.heapIndex)
	return nil
}

// fire is called by the scheduler: it times out overdue in-flight messages and releases due
// deferred ones to the ready queue, at most fireBatch per call; if more are due it asks to be
// called again at once, after the scheduler has served the other channels due now.
func (ch *Channel) fire(now int64) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.schedAt = 0
	if ch.exiting {
		return
	}
	if ch.sweepAt != 0 && ch.sweepAt <= now {
		ch.sweepAt = 0
		if !ch.sweeping {
			ch.sweeping = true
			ch.topic.hooks.channelWork(ch)
		}
	}
	released := 0
	for len(ch.timers) > 0 && ch.timers[0].due <= now && released < fireBatch {
		p := heap.Pop(&ch.timers).(*pending)
		switch p.state {
		case stateInFlight:
			ch.inFlight--
			owner := p.owner
			owner.inFlight.Add(-1)
			owner.timeouts.Add(1)
			owner.sub.wake()
			p.owner = nil
			ch.timeoutCount.Add(1)
			if ch.attemptsUsedLocked(p) {
				ch.dieLocked(p, reasonTimeout)
				continue
			}
		case stateDeferred:
			ch.deferred--
			if ch.expired(p.timestamp, now) {
				ch.expireLocked(p) // dieLocked and doneLocked mark the channel dirty
				continue
			}
		}
		p.state = stateReady
		p.releasedDue = p.due
		ch.pushReady(p)
		released++
	}
	if released > 0 {
		ch.dirty = true
		ch.wakeWaitingLocked()
	}
	ch.scheduleLocked()
}

// scheduleLocked registers the earliest timer with the scheduler when it is earlier than what
// is registered (see scheduler for why later ones are left alone). A channel that is closing
// is never registered again: its timers die with it.
func (ch *Channel) scheduleLocked() {
	if ch.exiting {
		return
	}
	at := ch.sweepAt
	if len(ch.timers) > 0 && (at == 0 || ch.timers[0].due < at) {
		at = ch.timers[0].due
	}
	if at == 0 {
		return
	}
	if ch.schedAt == 0 || at < ch.schedAt {
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
	if p.injected {
		delete(ch.injected, p.id)
		ch.redriveDirty = true
		return
	}
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
	return ch.cursor.Seq
}

// addWaitingLocked puts sub on the waiting list and sets mayWait, so that the next publish
// wakes it.
func (ch *Channel) addWaitingLocked(sub *subscription) {
	ch.mayWait.Store(true)
	for _, w := range ch.waiting {
		if w == sub {
			return
		}
	}
	ch.waiting = append(ch.waiting, sub)
}

// wakeWaiting wakes a subscriber waiting for messages; the topic calls it after an append.
func (ch *Channel) wakeWaiting() {
	if !ch.mayWait.Load() {
		return
	}
	ch.mu.Lock()
	ch.wakeWaitingLocked()
	ch.mu.Unlock()
}

// wakeWaitingLocked wakes one waiting subscriber with room, and only it: its take reads the
// log for every subscriber's room and hands the ready queue out among all of them, waking
// each one given a share, and a read that leaves records behind wakes the next. Waking every
// waiting subscriber would have all but one find readMu taken and wait again: with fifty
// consumers on a channel, fifty goroutines and fifty lock round trips per publish.
//
// The one woken is the first that is parked. One that is not may be writing to a client
// that stopped reading, for as long as the write deadline, and the others would wait with
// it; when none is parked, every waiting subscriber with room is woken. Waiting subscribers
// without room leave the list: the FIN, REQ, timeout or RDY that gives them room wakes them
// itself.
func (ch *Channel) wakeWaitingLocked() {
	kept := ch.waiting[:0]
	woke := false
	for _, s := range ch.waiting {
		switch {
		case s.room() <= 0:
		case !woke && s.sub.parked():
			s.sub.wake()
			woke = true
		default:
			kept = append(kept, s)
		}
	}
	if !woke {
		for _, s := range kept {
			s.sub.wake()
		}
		kept = kept[:0]
	}
	clear(ch.waiting[len(kept):])
	ch.waiting = kept
	if len(kept) == 0 {
		ch.mayWait.Store(false)
	}
}

// passWakeLocked hands a wake sub cannot use to another waiting subscriber: sub was woken to
// read or take for everyone, and has no room left (its RDY lowered, CLS) or has left.
func (ch *Channel) passWakeLocked() {
	if len(ch.waiting) > 0 && (len(ch.ready) > ch.readyAt || ch.cursor.Seq < ch.topic.readableSeq()) {
		ch.wakeWaitingLocked()
	}
}

// wakeAllLocked wakes every subscriber (pause changes, empty).
func (ch *Channel) wakeAllLocked() {
	for _, s := range ch.subs {
		s.sub.wake()
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

// empty drops every message of the channel: in flight, assigned, ready, deferred and unread,
// moving the cursor to what the topic has made readable.
func (ch *Channel) empty() {
	ch.readMu.Lock()
	ch.mu.Lock()
	ch.dropStateLocked()
	_ = ch.reader.Close()
	ch.reader = ch.topic.log.NewReader(ch.topic.readablePos())
	ch.cursor = ch.reader.Pos()
	ch.dirty = true
	ch.releaseReadAndWakeLocked()
	ch.mu.Unlock()
}

// releaseReadAndWakeLocked releases readMu, then wakes every subscriber, with mu held. In
// that order: a subscriber woken while readMu is held finds it taken, waits for the reader
// to wake it again, and nobody would.
func (ch *Channel) releaseReadAndWakeLocked() {
	ch.readMu.Unlock()
	ch.wakeAllLocked()
}

// dropStateLocked drops every message the channel holds: in flight, assigned, ready,
// deferred, dying and redriven. readMu and mu are held; the caller moves the cursor.
func (ch *Channel) dropStateLocked() {
	ch.epoch++
	for _, p := range ch.timers {
		if p.state == stateInFlight {
			p.owner.inFlight.Add(-1)
		}
		p.heapIndex = -1
	}
	ch.timers = ch.timers[:0]
	for _, s := range ch.subs {
		clear(s.outbox)
		s.outbox = s.outbox[:0]
	}
	clear(ch.ready)
	ch.ready, ch.readyAt = ch.ready[:0], 0
	for _, p := range ch.order[ch.orderAt:] {
		p.state, p.owner = stateDone, nil
	}
	for _, p := range ch.injected {
		p.state, p.owner = stateDone, nil
	}
	if len(ch.injected) > 0 {
		clear(ch.injected)
		ch.redriveDirty = true
	}
	ch.dying = nil
	clear(ch.byID)
	ch.inFlight, ch.deferred, ch.assigned = 0, 0, 0
	ch.advanceOrderLocked()
}

// Stats returns a snapshot of the channel with its clients.
func (ch *Channel) Stats() ChannelStats { return ch.stats(true) }

// depthLocked is NSQ's channel depth: messages waiting to be delivered, read or not.
func (ch *Channel) depthLocked() int64 {
	unread := int64(0)
	limit := ch.topic.readableSeq()
	// Records below the log's head are gone (an ephemeral topic's memory bound dropped them,
	// or segments were deleted); the cursor will skip them, so they are not depth.
	at := max(ch.cursor.Seq, ch.topic.log.Head())
	if f := ch.topic.floor.Load(); f != nil {
		at = max(at, f.Seq)
	}
	if limit > at {
		unread = int64(limit - at - ch.topic.holesIn(at, limit))
	}
	return unread + int64(len(ch.ready)-ch.readyAt) + int64(ch.assigned)
}

// messageCountLocked is NSQ's channel message_count: the messages routed into the channel,
// which for Tern are those the topic made readable since the channel began counting, read by
// its cursor or not.
func (ch *Channel) messageCountLocked() uint64 {
	if readable := ch.topic.readableSeq(); readable > ch.routedFrom {
		return readable - ch.routedFrom - ch.topic.holesIn(ch.routedFrom, readable)
	}
	return 0
}

// Depth returns the channel's depth.
func (ch *Channel) Depth() int64 {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.depthLocked()
}

// close stops the channel: its subscribers are returned for the caller to disconnect, and
// the scheduler forgets it for good. Its state stays in memory for a final checkpoint.
func (ch *Channel) close() []subscriber {
	ch.mu.Lock()
	ch.exiting = true
	subs := make([]subscriber, 0, len(ch.subs))
	for _, s := range ch.subs {
		subs = append(subs, s.sub)
	}
	ch.mu.Unlock()
	ch.sched.cancel(ch)
	return subs
}

// String is for logs.
func (ch *Channel) String() string { return fmt.Sprintf("%s/%s", ch.topic.name, ch.name) }

// removeTimersLocked takes out of the timer heap every message for which take returns true
// (take moves it elsewhere), then restores the heap, and reports whether it took any. The heap
// is filtered and rebuilt: removing in place would move later elements to slots already
// passed. mu is held.
func (ch *Channel) removeTimersLocked(take func(p *pending) bool) bool {
	kept, took := ch.timers[:0], false
	for _, p := range ch.timers {
		if take(p) {
			p.heapIndex = -1
			took = true
			continue
		}
		kept = append(kept, p)
	}
	clear(ch.timers[len(kept):])
	ch.timers = kept
	if took {
		for i, p := range ch.timers {
			p.heapIndex = i
		}
		heap.Init(&ch.timers)
	}
	return took
}

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
