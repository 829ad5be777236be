package nsqd

import (
	"time"

	"github.com/ternmq/tern/nsqd/logstore"
)

// Message TTL. A channel with a TTL (its own, or its topic's) never delivers a message at or
// after its publish time plus the TTL: the check is made as a message goes into flight, so it
// is exact. Expired messages are also retired as they expire, whether or not anyone consumes,
// so that depth, the expired count and the dead-letter topic follow the clock: the channel's
// scheduler slot wakes at the next expiry (sweepAt) and the daemon's worker, which may read
// the log, sweeps the expired messages the channel holds in memory and those at the front of
// what it has not read.

// minSweepInterval bounds how often an idle channel with a tiny TTL sweeps.
const minSweepInterval = int64(5 * time.Millisecond)

// sweepBatch bounds how many unread records one sweep reads.
const sweepBatch = 4096

// settingsChanged puts the topic's and the channel's current settings in force.
func (ch *Channel) settingsChanged() {
	ts, cs := ch.topic.Settings(), ch.topic.channelSettings(ch.name)
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.applySettingsLocked(ts, cs, time.Now().UnixNano())
	ch.wakeWaitingLocked()
}

// applySettingsLocked derives the channel's working settings. mu is held (or the channel is
// not reachable yet).
func (ch *Channel) applySettingsLocked(ts TopicSettings, cs ChannelSettings, now int64) {
	ch.cfg = cs
	ch.ttl, ch.expireDead = effectiveTTL(ts, cs)
	if ch.ttl > 0 {
		ch.sweepAt = now
		ch.scheduleLocked()
	} else {
		ch.sweepAt = 0
	}
}

// sweepExpired retires what has expired at now: the ready and deferred messages the channel
// holds, and the unread records at the front of the log. Called by the daemon's worker, never
// with a lock held; it reads the log with readMu held, as every reader of the channel does.
func (ch *Channel) sweepExpired(now int64) {
	// The worker calls this for channels with dead letters to move too: without a TTL it
	// must not take readMu, which a subscriber that finds it taken waits on.
	ch.mu.Lock()
	ch.sweeping = false
	active := ch.ttl > 0 && !ch.exiting
	ch.mu.Unlock()
	if !active {
		return
	}
	ch.readMu.Lock()
	ch.mu.Lock()
	if ch.ttl <= 0 || ch.exiting {
		ch.readMu.Unlock()
		ch.wakeWaitingLocked()
		ch.mu.Unlock()
		return
	}
	ttl := ch.ttl
	// Held in memory: the ready queue and the deferred messages in the timer heap. Both are
	// filtered, never left holding a retired message: its struct is recycled, and a queue
	// must not hand it out again.
	kept := ch.ready[:ch.readyAt]
	for _, p := range ch.ready[ch.readyAt:] {
		if p.state == stateReady && ch.expired(p.timestamp, now) {
			ch.expireLocked(p)
			continue
		}
		kept = append(kept, p)
	}
	clear(ch.ready[len(kept):])
	ch.ready = kept
	ch.removeTimersLocked(func(p *pending) bool {
		if p.state != stateDeferred || !ch.expired(p.timestamp, now) {
			return false
		}
		ch.deferred--
		ch.expireLocked(p)
		return true
	})
	ch.skipDroppedLocked()
	cursor := ch.cursor
	end := ch.topic.readableSeq()
	if h, ok := ch.topic.nextHole(cursor.Seq); ok && h.from < end {
		end = h.from
	}
	ch.mu.Unlock()

	// Unread records, oldest first: publish times only grow along the log (but for clock
	// steps), so the sweep stops at the first one still alive.
	var expired []logstore.Entry
	nextAlive := int64(0)
	next, _, _ := scanLog(ch.topic.log, cursor, end, sweepBatch, func(e *logstore.Entry) bool {
		if now < e.Timestamp+ttl {
			nextAlive = e.Timestamp + ttl
			return false
		}
		expired = append(expired, *e)
		return true
	}) // a failed read stops the sweep at what it read; the next one tries again

	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.cursor == cursor && len(expired) > 0 {
		// Nobody moved the cursor meanwhile (readMu is held; only empty or a seek could, and
		// they take readMu too): the expired records are passed over as if read.
		_ = ch.reader.Close()
		ch.reader = ch.topic.log.NewReader(next)
		ch.cursor = ch.reader.Pos()
		ch.dirty = true
		for i := range expired {
			p := ch.newPending(&expired[i])
			ch.order = append(ch.order, p)
			ch.byID[p.id] = p
			ch.expireLocked(p)
		}
	}
	switch {
	case len(expired) == sweepBatch:
		ch.sweepAt = now // more to sweep: at once, after the scheduler served the others
	case nextAlive > 0:
		ch.sweepAt = nextAlive
	default:
		// Everything unread is swept: what is published from now expires no earlier than
		// now+ttl.
		ch.sweepAt = now + max(ttl, minSweepInterval)
	}
	ch.scheduleLocked()
	// A subscriber that found readMu taken while the sweep read the log waits for the
	// reader to wake it, as take's reader would: readMu first, so that it can read.
	ch.readMu.Unlock()
	ch.wakeWaitingLocked()
}
