package nsqd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/ternmq/tern/nsqd/logstore"
)

// Dead letters. A channel with max attempts moves a message that was delivered that many
// times and is requeued or times out again to its dead-letter topic (by default
// "<topic>.dead"); with dead_letter_expired, expired messages go there too. A dead letter is
// an ordinary message of that topic, so any consumer can read it; its body is one line of
// JSON metadata (DeadLetterMeta), a newline, and the original body byte for byte.
//
// Moving a message is two steps, so that a crash never loses it: the channel marks it dying
// (it stays in the channel's checkpoint, and is not delivered), and the daemon's dead-letter
// worker appends it to the dead-letter topic and only then retires it from the channel. A
// crash between the two delivers it once more after the restart: at least once, never lost.
//
// Redrive sends dead letters back to their channel (and only that channel): they become new
// messages of the channel, kept in the channel's redrive file until finished, since the
// topic's log is shared by every channel.

// Reasons a message is dead-lettered, as DeadLetterMeta.Reason says them.
const (
	reasonNone uint8 = iota
	reasonTimeout
	reasonRequeue
	reasonExpired
)

func reasonName(r uint8) string {
	switch r {
	case reasonTimeout:
		return "timeout"
	case reasonRequeue:
		return "requeue"
	case reasonExpired:
		return "expired"
	}
	return ""
}

// DeadLetterMeta is the first line of a dead letter's body.
type DeadLetterMeta struct {
	Topic         string `json:"topic"`
	Channel       string `json:"channel"`
	ID            string `json:"id"`             // the message's ID on its channel
	Timestamp     int64  `json:"timestamp"`      // its publish time, Unix ns
	Attempts      uint16 `json:"attempts"`       // deliveries
	FirstDelivery int64  `json:"first_delivery"` // Unix ns; 0 when never delivered
	LastDelivery  int64  `json:"last_delivery"`  // Unix ns; 0 when never delivered
	Reason        string `json:"reason"`         // "timeout", "requeue" or "expired"
	DeadAt        int64  `json:"dead_at"`        // when it was dead-lettered, Unix ns
}

// deadLetterOverhead bounds the metadata line: names are at most 64 bytes, the rest numbers.
// Topic logs accept bodies this much larger than --max-msg-size, so that a dead letter of a
// message of the largest size can be stored.
const deadLetterOverhead = 1024

// encodeDeadLetter builds a dead letter's body.
func encodeDeadLetter(m DeadLetterMeta, body []byte) []byte {
	meta, _ := json.Marshal(m) // a struct of strings and numbers always marshals
	b := make([]byte, 0, len(meta)+1+len(body))
	b = append(b, meta...)
	b = append(b, '\n')
	return append(b, body...)
}

// ParseDeadLetter splits a dead letter's body into its metadata and the original body.
func ParseDeadLetter(b []byte) (DeadLetterMeta, []byte, error) {
	var m DeadLetterMeta
	line, body, ok := bytes.Cut(b, []byte{'\n'})
	if !ok {
		return m, nil, errors.New("not a dead letter: no metadata line")
	}
	if err := json.Unmarshal(line, &m); err != nil {
		return m, nil, fmt.Errorf("not a dead letter: %w", err)
	}
	return m, body, nil
}

// channelWork is the set of channels that have dead letters to move or expired messages to
// sweep, and the worker that serves them. Channels add themselves from under their own lock
// (the scheduler's fire, a REQ), so adding only takes a leaf lock and never blocks.
type channelWork struct {
	mu     sync.Mutex
	set    map[*Channel]struct{}
	signal chan struct{}
}

func newChannelWork() *channelWork {
	return &channelWork{set: make(map[*Channel]struct{}), signal: make(chan struct{}, 1)}
}

func (w *channelWork) add(ch *Channel) {
	w.mu.Lock()
	w.set[ch] = struct{}{}
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

func (w *channelWork) take() []*Channel {
	w.mu.Lock()
	defer w.mu.Unlock()
	chans := make([]*Channel, 0, len(w.set))
	for ch := range w.set {
		chans = append(chans, ch)
	}
	clear(w.set)
	return chans
}

// deadLetterRetry is how long a dead letter that could not be written waits to be tried again.
const deadLetterRetry = time.Second

// channelWorker moves dead letters and sweeps expired messages until ctx ends.
func (n *NSQD) channelWorker(ctx context.Context) {
	retry := time.NewTimer(0)
	<-retry.C
	var failed []*Channel
	for {
		select {
		case <-ctx.Done():
			retry.Stop()
			return
		case <-n.work.signal:
		case <-retry.C:
			for _, ch := range failed {
				n.work.add(ch)
			}
			failed = nil
		}
		for _, ch := range n.work.take() {
			ch.sweepExpired(time.Now().UnixNano())
			if err := n.flushDeadLetters(ch); err != nil {
				if !errors.Is(err, errTopicExiting) && !errors.Is(err, ErrExiting) {
					ch.logger.Error("dead-letter", "error", err)
				}
				// Tried again after a pause, not at once: a dead-letter topic that
				// refuses (a full quota, a failing disk) must not make this spin.
				if failed == nil {
					retry.Reset(deadLetterRetry)
				}
				failed = append(failed, ch)
			}
		}
	}
}

// channelWork implements topicHooks: ch has dead letters to move or expired messages to sweep.
func (n *NSQD) channelWork(ch *Channel) { n.work.add(ch) }

// flushDeadLetters appends ch's dying messages to its dead-letter topic and retires them. On
// failure they stay dying, and ch is queued again.
func (n *NSQD) flushDeadLetters(ch *Channel) error {
	ch.mu.Lock()
	if ch.exiting {
		// Deleted (its messages go with it) or shutting down (they stay in the final
		// checkpoint, marked, and move after the restart).
		ch.mu.Unlock()
		return nil
	}
	dying := ch.dying
	ch.dying = nil
	epoch := ch.epoch
	target := ch.cfg.deadLetterTopic(ch.topic.name)
	now := time.Now().UnixNano()
	bodies := make([][]byte, 0, len(dying))
	kept := dying[:0]
	for _, p := range dying {
		if p.state != stateDying {
			continue // emptied or deleted meanwhile
		}
		kept = append(kept, p)
		bodies = append(bodies, encodeDeadLetter(DeadLetterMeta{
			Topic: ch.topic.name, Channel: ch.name, ID: msgIDString(p.id), Timestamp: p.timestamp,
			Attempts: p.attempts, FirstDelivery: p.firstDeliv, LastDelivery: p.deliveredAt,
			Reason: reasonName(p.deadReason), DeadAt: now,
		}, p.body))
	}
	dying = kept
	ch.mu.Unlock()
	if len(dying) == 0 {
		return nil
	}
	err := n.publishDeadLetters(target, bodies)
	ch.mu.Lock()
	if ch.epoch != epoch {
		// Emptied or moved meanwhile: the structs may hold other messages now.
		ch.mu.Unlock()
		return nil
	}
	if err != nil {
		ch.dying = append(dying, ch.dying...)
		ch.mu.Unlock()
		return fmt.Errorf("move %d messages to topic %q: %w", len(dying), target, err)
	}
	for _, p := range dying {
		if p.state == stateDying {
			ch.deadLetterCount.Add(1)
			ch.doneLocked(p)
		}
	}
	ch.mu.Unlock()
	// Record at once that they left, rather than at the next periodic checkpoint: a crash
	// meanwhile would deliver, and dead-letter, each of them again.
	ch.topic.checkpointNow(ch, false)
	return nil
}

func (n *NSQD) publishDeadLetters(topic string, bodies [][]byte) error {
	if n.exiting.Load() {
		return ErrExiting
	}
	t, err := n.getOrCreateTopic(topic)
	if err != nil {
		return err
	}
	return t.publish(bodies, 0)
}

// dieLocked marks p for the dead-letter topic. mu is held; p is out of the ready queue, the
// timer heap and any outbox.
func (ch *Channel) dieLocked(p *pending, reason uint8) {
	p.state = stateDying
	p.owner = nil
	p.deadReason = reason
	ch.dying = append(ch.dying, p)
	ch.dirty = true
	ch.topic.hooks.channelWork(ch)
}

// attemptsUsedLocked reports whether p has had the deliveries the channel's max_attempts
// allows: failing once more makes it a dead letter.
func (ch *Channel) attemptsUsedLocked(p *pending) bool {
	return ch.cfg.MaxAttempts > 0 && int(p.attempts) >= ch.cfg.MaxAttempts
}

// expireLocked retires an expired message: to the dead-letter topic, or dropped and counted.
func (ch *Channel) expireLocked(p *pending) {
	ch.expiredCount.Add(1)
	if ch.expireDead {
		ch.dieLocked(p, reasonExpired)
		return
	}
	ch.doneLocked(p)
}

// expired reports whether p has outlived the channel's TTL at now. mu is held.
func (ch *Channel) expired(ts, now int64) bool {
	return ch.ttl > 0 && now >= ts+ch.ttl
}

// DeadLetter is one dead letter as the HTTP API lists it.
type DeadLetter struct {
	ID   string         `json:"id"` // its ID in the dead-letter topic
	Meta DeadLetterMeta `json:"meta"`
	Body []byte         `json:"body"` // the original body; base64 in JSON
}

// maxDeadScan bounds how many records of a dead-letter topic one listing reads.
const maxDeadScan = 1_000_000

// scanDeadLetters hands f the dead letters of ch still retained in its dead-letter topic, oldest
// first, until f returns false. Dead letters already redriven are left out; redriven is also
// pruned to what the topic still holds.
func (ch *Channel) scanDeadLetters(dead *Topic, f func(id uint64, m DeadLetterMeta, body []byte) bool) {
	ch.mu.Lock()
	redriven := make(map[uint64]struct{}, len(ch.redriven))
	for id := range ch.redriven {
		redriven[id] = struct{}{}
	}
	ch.mu.Unlock()
	present := make(map[uint64]struct{})
	_, exhausted, err := scanLog(dead.log, dead.log.HeadPos(), noEnd, maxDeadScan, func(e *logstore.Entry) bool {
		if _, done := redriven[e.ID]; done {
			present[e.ID] = struct{}{}
			return true
		}
		m, body, err := ParseDeadLetter(e.Body)
		if err != nil || m.Topic != ch.topic.name || m.Channel != ch.name {
			return true
		}
		return f(e.ID, m, body)
	})
	if err != nil || !exhausted {
		return
	}
	// The whole retained topic was read: redriven dead letters it no longer holds need not
	// be remembered. Only IDs of the snapshot: one a concurrent redrive added was not
	// looked for.
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for id := range redriven {
		if _, ok := present[id]; !ok {
			if _, ok := ch.redriven[id]; ok {
				delete(ch.redriven, id)
				ch.redriveDirty = true
			}
		}
	}
}

// DeadLetters returns up to n of the channel's dead letters, oldest first.
func (n *NSQD) DeadLetters(ch *Channel, max int) []DeadLetter {
	out := []DeadLetter{}
	dead := n.Topic(ch.deadLetterTopic())
	if dead == nil || max <= 0 {
		return out
	}
	ch.scanDeadLetters(dead, func(id uint64, m DeadLetterMeta, body []byte) bool {
		out = append(out, DeadLetter{ID: msgIDString(id), Meta: m, Body: bytes.Clone(body)})
		return len(out) < max
	})
	return out
}

func (ch *Channel) deadLetterTopic() string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.cfg.deadLetterTopic(ch.topic.name)
}

// Redrive sends dead letters back to the channel: those with the given IDs (in the
// dead-letter topic), or all of them when ids is nil. It returns how many it sent. They are
// on disk, in the channel's redrive file, before it returns.
func (n *NSQD) Redrive(ch *Channel, ids []uint64) (int, error) {
	dead := n.Topic(ch.deadLetterTopic())
	if dead == nil {
		return 0, nil
	}
	want := make(map[uint64]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	var picked []redriveEntry
	var deadIDs []uint64
	now := time.Now().UnixNano()
	ch.scanDeadLetters(dead, func(id uint64, m DeadLetterMeta, body []byte) bool {
		if ids == nil || want[id] {
			picked = append(picked, redriveEntry{Timestamp: now, Body: bytes.Clone(body)})
			deadIDs = append(deadIDs, id)
		}
		return ids == nil || len(picked) < len(ids)
	})
	if len(picked) == 0 {
		return 0, nil
	}
	first := n.ids.next(len(picked))
	for i := range picked {
		picked[i].ID = first + uint64(i)
	}
	return ch.topic.injectRedriven(ch, picked, deadIDs)
}

// redriveEntry is a redriven message as the redrive file keeps it.
type redriveEntry struct {
	ID        uint64 `json:"id"`
	Timestamp int64  `json:"timestamp"`
	Attempts  uint16 `json:"attempts"`
	Body      []byte `json:"body"`
}

// redriveState is a channel's redrive file: the redriven messages not finished yet, and the
// dead letters (IDs in the dead-letter topic) already sent back, so none is sent twice.
type redriveState struct {
	Messages []redriveEntry `json:"messages"`
	Redriven []uint64       `json:"redriven"`
}

func (t *Topic) redrivePath(channel string) string { return t.checkpointPath(channel) + ".redrive" }

// injectRedriven adds redriven messages to ch, writing its redrive file first; msgs[i] is the
// dead letter deadIDs[i]. Dead letters another redrive sent back meanwhile are left out (two
// redrives are serialised by diskMu). It returns how many it added.
func (t *Topic) injectRedriven(ch *Channel, msgs []redriveEntry, deadIDs []uint64) (int, error) {
	t.diskMu.Lock()
	defer t.diskMu.Unlock()
	if t.exiting.Load() {
		return 0, errTopicExiting
	}
	ch.mu.Lock()
	if ch.exiting {
		ch.mu.Unlock()
		return 0, errChannelExiting
	}
	k := 0
	for i, id := range deadIDs {
		if _, done := ch.redriven[id]; !done {
			msgs[k], deadIDs[k] = msgs[i], id
			k++
		}
	}
	msgs, deadIDs = msgs[:k], deadIDs[:k]
	if k == 0 {
		ch.mu.Unlock()
		return 0, nil
	}
	st := ch.redriveStateLocked()
	st.Messages = append(st.Messages, msgs...)
	st.Redriven = append(st.Redriven, deadIDs...)
	ch.mu.Unlock()
	if err := t.writeRedrive(ch, st); err != nil {
		return 0, err
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for _, id := range deadIDs {
		ch.redriven[id] = struct{}{}
	}
	for _, m := range msgs {
		ch.addInjectedLocked(m, stateReady)
	}
	ch.wakeWaitingLocked()
	return k, nil
}

// addInjectedLocked adds a redriven message to the channel's state.
func (ch *Channel) addInjectedLocked(m redriveEntry, state pendingState) {
	p := ch.newPending(&logstore.Entry{Record: logstore.Record{ID: m.ID, Timestamp: m.Timestamp, Body: m.Body}})
	p.attempts = m.Attempts
	p.injected = true
	p.state = state
	ch.byID[p.id] = p
	ch.injected[p.id] = p
	ch.pushReady(p)
}

// redriveStateLocked is what the channel's redrive file should hold now. mu is held.
func (ch *Channel) redriveStateLocked() redriveState {
	st := redriveState{Messages: []redriveEntry{}, Redriven: []uint64{}}
	for _, p := range ch.injected {
		st.Messages = append(st.Messages, redriveEntry{ID: p.id, Timestamp: p.timestamp, Attempts: p.attempts, Body: p.body})
	}
	for id := range ch.redriven {
		st.Redriven = append(st.Redriven, id)
	}
	ch.redriveDirty = false
	return st
}

// writeRedrive writes ch's redrive file, synced; an empty state removes it. diskMu is held.
func (t *Topic) writeRedrive(ch *Channel, st redriveState) error {
	if t.dir == "" || ch.ephemeral {
		return nil
	}
	path := t.redrivePath(ch.name)
	if len(st.Messages) == 0 && len(st.Redriven) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(path, b, true); err != nil {
		ch.mu.Lock()
		ch.redriveDirty = true
		ch.mu.Unlock()
		return fmt.Errorf("write redrive file of channel %s: %w", ch, err)
	}
	return nil
}

// saveRedriveIfDirty rewrites ch's redrive file when redriven messages were finished. diskMu
// is held.
func (t *Topic) saveRedriveIfDirty(ch *Channel) error {
	ch.mu.Lock()
	if !ch.redriveDirty {
		ch.mu.Unlock()
		return nil
	}
	st := ch.redriveStateLocked()
	ch.mu.Unlock()
	return t.writeRedrive(ch, st)
}

// restoreRedrive loads a channel's redrive file at startup.
func (t *Topic) restoreRedrive(ch *Channel) error {
	if t.dir == "" || ch.ephemeral {
		return nil
	}
	b, err := os.ReadFile(t.redrivePath(ch.name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st redriveState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("redrive file of channel %s: %w", ch, err)
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for _, id := range st.Redriven {
		ch.redriven[id] = struct{}{}
	}
	for _, m := range st.Messages {
		ch.addInjectedLocked(m, stateReady)
	}
	return nil
}
