package nsqd

import (
	"errors"
	"fmt"
	"time"

	"github.com/ternmq/tern/nsqd/logstore"
)

// Replay. A topic with retain_ms or retain_bytes keeps consumed log segments (whole segments,
// of --max-bytes-per-file) while they are younger than retain_ms or among the newest
// retain_bytes; a channel can then be moved back (or forward) to the oldest retained
// message, to a time or to a message ID, and receives from there. Moving a channel drops what
// it held (in flight, requeued, deferred), as emptying it does: the new position says what it
// is to receive.

// SeekTarget is where a channel is moved to: the oldest retained message, the first message
// published at or after Time (Unix ns), or the message with ID.
type SeekTarget struct {
	Oldest bool
	Time   int64
	ID     uint64
	ByID   bool
}

// errSeekNotFound means a seek by ID named a message the topic does not hold.
var errSeekNotFound = errors.New("message not found in the topic's log")

// retentionSeq is the oldest sequence the topic's retention keeps at now, the tail when it
// keeps nothing of its own.
func (t *Topic) retentionSeq(now int64) uint64 {
	s := t.Settings()
	tail := t.log.Tail()
	segs := t.log.Segments()
	if !s.retains() || len(segs) == 0 {
		return tail
	}
	keep := tail
	if s.RetainBytes > 0 {
		sum := int64(0)
		for i := len(segs) - 1; i >= 0 && sum < s.RetainBytes; i-- {
			keep = segs[i].Base
			sum += segs[i].Bytes
		}
	}
	if s.RetainMs > 0 {
		// A segment holds only records older than the cutoff when the next one starts with
		// one: those are the segments time lets go.
		cutoff := now - s.RetainMs*int64(time.Millisecond)
		k := 0
		for i := 0; i+1 < len(segs); i++ {
			rec, err := t.log.ReadAt(logstore.Pos{Seq: segs[i+1].Base})
			if err != nil || rec.Timestamp >= cutoff {
				break
			}
			k = i + 1
		}
		keep = min(keep, segs[k].Base)
	}
	return keep
}

// oldestPos is the oldest message a channel can be moved to.
func (t *Topic) oldestPos() logstore.Pos {
	p := t.log.HeadPos()
	if f := t.floor.Load(); f != nil && f.Seq > p.Seq {
		p = *f
	}
	return p
}

// findPos returns the position a seek goes to.
func (t *Topic) findPos(target SeekTarget) (logstore.Pos, error) {
	oldest := t.oldestPos()
	if target.Oldest {
		return oldest, nil
	}
	// Start in the last segment that begins before the target: publish times and IDs grow
	// along the log (but for clock steps, which at worst move the answer within the segment
	// boundary), so the record is in it or after it.
	from := oldest
	for _, s := range t.log.Segments() {
		if s.Base <= from.Seq {
			continue
		}
		rec, err := t.log.ReadAt(logstore.Pos{Seq: s.Base})
		if err != nil {
			break
		}
		if target.ByID && rec.ID > target.ID || !target.ByID && rec.Timestamp >= target.Time {
			break
		}
		from = logstore.Pos{Seq: s.Base}
	}
	p, exhausted, err := scanLog(t.log, from, noEnd, noLimit, func(e *logstore.Entry) bool {
		return !(target.ByID && e.ID == target.ID || !target.ByID && e.Timestamp >= target.Time)
	})
	switch {
	case err != nil:
		return logstore.Pos{}, fmt.Errorf("seek in topic %q: %w", t.name, err)
	case exhausted && target.ByID:
		return logstore.Pos{}, errSeekNotFound
	}
	return p, nil // the record found, or the tail for a time past the last one
}

// seek moves the channel to p, dropping what it held from its old position.
func (ch *Channel) seek(p logstore.Pos) {
	ch.readMu.Lock()
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.dropStateLocked()
	_ = ch.reader.Close()
	ch.reader = ch.topic.log.NewReader(p)
	ch.cursor = ch.reader.Pos()
	// Retention must not delete what the channel is now to read before its next checkpoint
	// says so.
	ch.ckptLowWater = min(ch.ckptLowWater, ch.cursor.Seq)
	ch.ckptSyncedLowWater = min(ch.ckptSyncedLowWater, ch.cursor.Seq)
	ch.dirty = true
	ch.releaseReadAndWakeLocked()
}

// SeekChannel moves a channel to target.
func (n *NSQD) SeekChannel(topic, channel string, target SeekTarget) error {
	t, ch, err := n.channel(topic, channel)
	if err != nil {
		return err
	}
	return t.seekChannel(ch, target)
}

// seekChannel finds target and moves ch there under diskMu, which retention holds from the
// checkpoint it relies on to the deletion of segments: no segment the channel is moved to
// can go in between.
func (t *Topic) seekChannel(ch *Channel, target SeekTarget) error {
	t.diskMu.Lock()
	defer t.diskMu.Unlock()
	if t.exiting.Load() {
		return errTopicExiting
	}
	p, err := t.findPos(target)
	if err != nil {
		return err
	}
	ch.seek(p)
	ch.logger.Info("channel moved", "seq", p.Seq)
	return nil
}

// CreateChannelAt creates a channel that starts at target rather than at what is published
// next. It fails with ErrChannelExists if the channel exists.
func (n *NSQD) CreateChannelAt(topic, channel string, target SeekTarget) (*Channel, error) {
	t := n.Topic(topic)
	if t == nil {
		return nil, ErrTopicNotFound
	}
	if t.Channel(channel) != nil {
		return nil, ErrChannelExists
	}
	if _, err := t.findPos(target); err != nil {
		return nil, err // nothing to create at
	}
	ch, err := n.CreateChannel(topic, channel)
	if err != nil {
		return nil, err
	}
	if err := t.seekChannel(ch, target); err != nil {
		return nil, err
	}
	return ch, nil
}

// ErrChannelExists means a channel to be created at a position exists already.
var ErrChannelExists = errors.New("channel exists")
