package nsqd

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/ternmq/tern/nsqd/logstore"
)

// Quotas. A topic can bound the messages and bytes it holds for its slowest channel: the
// records from the lowest channel cursor (or, without channels, where the first channel will
// start) to the tail. At the limit a publish is refused (QuotaReject) or the oldest of those
// records are dropped to make room (QuotaDropOldest): the topic's floor moves past them, every
// channel whose cursor is below it skips to it, and the drop is counted. Messages a channel
// has already read (in flight, requeued, deferred) are not dropped: they are bounded by its
// consumers' RDY, and dropping a message a consumer is working on would surprise it.
//
// The check is made before the append and is not atomic with it: concurrent publishes can
// take a topic past its limit by what they carry between them.

// QuotaError is a publish refused by a topic's quota.
type QuotaError struct {
	Topic string
	Bytes bool // the byte limit was reached (else the message limit)
	Limit int64
}

func (e *QuotaError) Error() string {
	what := "max_messages"
	if e.Bytes {
		what = "max_bytes"
	}
	return fmt.Sprintf("topic %s is full: %s %d reached", e.Topic, what, e.Limit)
}

// quotaUsage is what a quota counts: from is the oldest record held.
type quotaUsage struct {
	from     logstore.Pos
	messages int64
	bytes    int64
}

// usage measures what the topic holds for its slowest channel.
func (t *Topic) usage() quotaUsage {
	t.mu.RLock()
	from := t.readablePos()
	if len(t.channels) == 0 {
		from = t.start
	}
	for _, ch := range t.channels {
		ch.mu.Lock()
		if ch.cursor.Seq < from.Seq {
			from = ch.cursor
		}
		ch.mu.Unlock()
	}
	t.mu.RUnlock()
	if f := t.floor.Load(); f != nil && f.Seq > from.Seq {
		from = *f
	}
	if head := t.log.HeadPos(); head.Seq > from.Seq {
		from = head
	}
	tail := t.log.Tail()
	u := quotaUsage{from: from}
	if tail > from.Seq {
		u.messages = int64(tail - from.Seq - t.holesIn(from.Seq, tail))
	}
	u.bytes = t.log.BytesFrom(from)
	return u
}

// recordOverhead is what the log stores for a record besides its body.
const recordOverhead = 32

// admit applies the topic's quota to a publish of n messages of size body bytes.
func (t *Topic) admit(s TopicSettings, n, size int) error {
	maxMsgs, maxBytes := s.MaxMessages, s.MaxBytes
	add := int64(size + n*recordOverhead)
	if maxMsgs > 0 && int64(n) > maxMsgs {
		return &QuotaError{Topic: t.name, Limit: maxMsgs}
	}
	if maxBytes > 0 && add > maxBytes {
		return &QuotaError{Topic: t.name, Bytes: true, Limit: maxBytes}
	}
	t.quotaMu.Lock()
	defer t.quotaMu.Unlock()
	u := t.usage()
	overMsgs := maxMsgs > 0 && u.messages+int64(n) > maxMsgs
	overBytes := maxBytes > 0 && u.bytes+add > maxBytes
	if !overMsgs && !overBytes {
		return nil
	}
	if s.QuotaPolicy != QuotaDropOldest {
		t.refusedCount.Add(uint64(n))
		if overMsgs {
			return &QuotaError{Topic: t.name, Limit: maxMsgs}
		}
		return &QuotaError{Topic: t.name, Bytes: true, Limit: maxBytes}
	}
	dropMsgs, dropBytes := int64(0), int64(0)
	if maxMsgs > 0 {
		dropMsgs = u.messages + int64(n) - maxMsgs
	}
	if maxBytes > 0 {
		dropBytes = u.bytes + add - maxBytes
	}
	return t.dropOldest(u.from, max(dropMsgs, 0), max(dropBytes, 0))
}

// dropOldest moves the topic's floor past at least msgs records and bytes bytes from from.
// quotaMu is held.
func (t *Topic) dropOldest(from logstore.Pos, msgs, bytes int64) error {
	dropped, freed := int64(0), int64(0)
	next, _, err := scanLog(t.log, from, noEnd, noLimit, func(e *logstore.Entry) bool {
		if dropped >= msgs && freed >= bytes {
			return false
		}
		dropped++
		freed += int64(len(e.Body) + recordOverhead)
		return true
	})
	if err != nil {
		return fmt.Errorf("drop oldest messages of topic %q: %w", t.name, err)
	}
	return t.raiseFloor(next, dropped)
}

// raiseFloor makes every record below p dropped, counting n of them. quotaMu is held.
func (t *Topic) raiseFloor(p logstore.Pos, n int64) error {
	if f := t.floor.Load(); f != nil && f.Seq >= p.Seq {
		return nil
	}
	t.floor.Store(&p)
	t.droppedCount.Add(uint64(n))
	t.mu.Lock()
	if len(t.channels) == 0 && t.start.Seq < p.Seq {
		t.start = p
	}
	t.mu.Unlock()
	if t.dir != "" {
		t.diskMu.Lock()
		defer t.diskMu.Unlock()
		if !t.exiting.Load() {
			// Not synced: after a power cut the drop may be undone, which delivers what
			// it dropped, never loses anything.
			if err := writeFileAtomic(filepath.Join(t.dir, "floor"), encodePos(p), false); err != nil {
				return fmt.Errorf("record dropped messages of topic %q: %w", t.name, err)
			}
		}
	}
	return nil
}

// restoreFloor loads the floor a previous run recorded.
func (t *Topic) restoreFloor() {
	if t.dir == "" {
		return
	}
	if p, ok := readStartFile(filepath.Join(t.dir, "floor")); ok && p.Seq > t.log.Head() && p.Seq <= t.log.Tail() {
		t.floor.Store(&p)
	}
}

// skipDroppedLocked moves the cursor past the records the topic's quota dropped. readMu and
// mu are held.
func (ch *Channel) skipDroppedLocked() {
	f := ch.topic.floor.Load()
	if f == nil || ch.cursor.Seq >= f.Seq {
		return
	}
	_ = ch.reader.Close()
	ch.reader = ch.topic.log.NewReader(*f)
	ch.cursor = ch.reader.Pos()
	ch.dirty = true
}

// isQuotaError reports whether err is a publish refused by a quota.
func isQuotaError(err error) (*QuotaError, bool) {
	return errors.AsType[*QuotaError](err)
}
