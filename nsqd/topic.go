package nsqd

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/nsqd/logstore"
)

// errTopicExiting means the topic is being deleted or the daemon is shutting down.
var errTopicExiting = errors.New("topic exiting")

// topicHooks are what a topic tells its daemon, kept narrow so a topic never reaches into the
// whole NSQD: metadata changes (to persist them) and the removal of an ephemeral topic.
type topicHooks interface {
	metadataChanged()
	ephemeralTopicEmpty(t *Topic)
	// storageResult reports how a write to the log went, for the daemon's health.
	storageResult(err error)
	// channelChanged reports a channel created (added) or deleted, ephemeral ones too, for
	// the lookupd registrations.
	channelChanged(topic, channel string, added bool)
	// channelWork asks for ch's dead letters to be moved and its expired messages swept,
	// outside the caller's locks; it must not block.
	channelWork(ch *Channel)
}

// Topic is a named stream: one log that every publish appends to once, and the channels that
// read it. A paused topic freezes what its channels may read at the position of the pause.
type Topic struct {
	name      string
	ephemeral bool
	dir       string // "" for an ephemeral topic
	log       *logstore.Log
	ids       *idGenerator
	sched     *scheduler
	hooks     topicHooks
	logger    *slog.Logger
	opts      func() *Options

	messageCount atomic.Uint64
	messageBytes atomic.Uint64
	exiting      atomic.Bool

	// paused and pausePos are written under mu and read without it on the delivery path.
	paused   atomic.Bool
	pausePos atomic.Pointer[logstore.Pos]
	// holes are the ranges of the log the topic dropped before any channel could read them
	// (what a paused topic held when it was emptied), in order; channels skip them. The slice
	// is replaced whole, under diskMu, and read without a lock.
	holes atomic.Pointer[[]hole]

	// diskMu serialises checkpoint writes with the removal of the topic's directory, so a
	// checkpoint never recreates a file in a topic being deleted.
	diskMu sync.Mutex

	// Settings (settings.go): the topic's are read without a lock on the publish path;
	// settingsMu serialises changes and guards the channels' saved settings.
	settings     atomic.Pointer[TopicSettings]
	settingsMu   sync.Mutex
	chanSettings map[string]ChannelSettings
	// Quotas (quota.go): floor is where a drop_oldest quota moved the oldest readable
	// record; quotaMu serialises the drops.
	floor        atomic.Pointer[logstore.Pos]
	quotaMu      sync.Mutex
	droppedCount atomic.Uint64 // messages a drop_oldest quota dropped
	refusedCount atomic.Uint64 // messages a quota refused

	mu       sync.RWMutex
	channels map[string]*Channel
	// start is where the first channel created begins: the oldest retained record of a
	// topic that never had a channel, else the tail at the moment its last channel went away,
	// so a new channel receives what was published since and nothing the old ones consumed.
	start logstore.Pos
}

// topicEnv is what a daemon gives each of its topics: where they keep their files, the
// settings, and the parts all topics share. A topic reaches its daemon only through hooks.
type topicEnv struct {
	dataPath string
	opts     func() *Options
	ids      *idGenerator
	sched    *scheduler
	hooks    topicHooks
	logger   *slog.Logger
	budget   *logstore.Budget // the memory all hot tails share
}

func openTopic(name string, env topicEnv) (*Topic, error) {
	o := env.opts()
	t := &Topic{
		name:      name,
		ephemeral: protocol.IsEphemeral(name),
		ids:       env.ids,
		sched:     env.sched,
		hooks:     env.hooks,
		logger:    env.logger.With("topic", name),
		opts:      env.opts,
		channels:  make(map[string]*Channel),
	}
	lo := logstore.Options{
		SegmentBytes: o.MaxBytesPerFile,
		MaxBodyBytes: int(o.MaxMsgSize) + deadLetterOverhead,
		MemRecords:   int(max(o.MemQueueSize, 1)),
		MemBytes:     o.MemQueueBytes, // no bound of its own: the shared budget is the bound
		Budget:       env.budget,
		SyncEvery:    o.SyncEvery,
		FsyncAlways:  o.FsyncAlways,
		Logger:       t.logger,
	}
	if !t.ephemeral {
		t.dir = filepath.Join(env.dataPath, "topics", name)
		lo.Dir = filepath.Join(t.dir, "log")
		if err := os.MkdirAll(filepath.Join(t.dir, "channels"), 0o755); err != nil {
			return nil, fmt.Errorf("open topic %q: %w", name, err)
		}
	}
	l, err := logstore.Open(lo)
	if err != nil {
		return nil, fmt.Errorf("open topic %q: %w", name, err)
	}
	t.log = l
	env.ids.observe(l.LastID())
	t.start = l.HeadPos()
	if t.dir != "" {
		if pos, ok := readStartFile(filepath.Join(t.dir, "start")); ok && pos.Seq >= l.Head() && pos.Seq <= l.Tail() {
			t.start = pos
		}
		t.readHolesFile()
		t.restoreFloor()
		f, err := readSettingsFile(t.dir)
		if err != nil {
			_ = l.Close()
			return nil, fmt.Errorf("open topic %q: %w", name, err)
		}
		t.settings.Store(&f.Topic)
		t.chanSettings = f.Channels
	}
	return t, nil
}

// dropConsumedHot lets the hot tail forget the records every channel has read past: what is
// in flight or requeued keeps its own reference, and nobody will read them from memory again,
// so the memory budget goes to records still to be read. A topic without channels keeps its
// backlog for its first channel.
func (t *Topic) dropConsumedHot() {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if len(t.channels) == 0 {
		return
	}
	below := t.log.Tail()
	for _, ch := range t.channels {
		ch.mu.Lock()
		below = min(below, ch.cursor.Seq)
		ch.mu.Unlock()
	}
	t.log.DropHot(below)
}

// Name returns the topic's name.
func (t *Topic) Name() string { return t.name }

// publish appends bodies as one batch, deferred by deferNs when it is positive, and wakes the
// channels' waiting clients. It returns once the batch is written (group-committed with any
// concurrent publishes to the topic).
func (t *Topic) publish(bodies [][]byte, deferNs int64) error {
	if t.exiting.Load() {
		return errTopicExiting
	}
	now := time.Now().UnixNano()
	deliverAt := int64(0)
	if deferNs > 0 {
		deliverAt = now + deferNs
	}
	size := 0
	for _, b := range bodies {
		size += len(b)
	}
	if s := t.settings.Load(); s != nil && s.hasQuota() {
		if err := t.admit(*s, len(bodies), size); err != nil {
			return err
		}
	}
	recs := make([]logstore.Record, len(bodies))
	first := t.ids.next(len(bodies))
	for i, b := range bodies {
		recs[i] = logstore.Record{ID: first + uint64(i), Timestamp: now, DeliverAt: deliverAt, Body: b}
	}
	_, err := t.log.Append(recs)
	t.hooks.storageResult(err)
	if err != nil {
		return fmt.Errorf("publish to topic %q: %w", t.name, err)
	}
	t.messageCount.Add(uint64(len(bodies)))
	t.messageBytes.Add(uint64(size))
	// Even when paused: a pause that landed after the append froze the topic after these
	// records, and whoever waits for them must hear of them. With nobody waiting it costs a
	// load per channel.
	t.wakeChannels()
	return nil
}

func (t *Topic) wakeChannels() {
	t.mu.RLock()
	for _, ch := range t.channels {
		ch.wakeWaiting()
	}
	t.mu.RUnlock()
}

// readLimit is the sequence channels may not read past, when the topic is paused.
func (t *Topic) readLimit() (uint64, bool) {
	if !t.paused.Load() {
		return 0, false
	}
	if p := t.pausePos.Load(); p != nil {
		return p.Seq, true
	}
	return 0, false
}

// readablePos is where channel cursors may read up to.
func (t *Topic) readablePos() logstore.Pos {
	if t.paused.Load() {
		if p := t.pausePos.Load(); p != nil {
			return *p
		}
	}
	return t.log.TailPos()
}

func (t *Topic) readableSeq() uint64 {
	if seq, ok := t.readLimit(); ok {
		return seq
	}
	return t.log.Tail()
}

// Channel returns the named channel, or nil.
func (t *Topic) Channel(name string) *Channel {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.channels[name]
}

// Channels returns the topic's channels sorted by name.
func (t *Topic) Channels() []*Channel {
	t.mu.RLock()
	chans := make([]*Channel, 0, len(t.channels))
	for _, ch := range t.channels {
		chans = append(chans, ch)
	}
	t.mu.RUnlock()
	slices.SortFunc(chans, func(a, b *Channel) int { return cmp.Compare(a.name, b.name) })
	return chans
}

// getOrCreateChannel returns the named channel, creating it if needed. The first channel of
// a topic starts at the topic's backlog; later ones start at what is readable now.
func (t *Topic) getOrCreateChannel(name string) (*Channel, error) {
	t.mu.RLock()
	ch := t.channels[name]
	t.mu.RUnlock()
	if ch != nil {
		return ch, nil
	}
	cs := t.channelSettings(name)
	t.mu.Lock()
	if t.exiting.Load() {
		t.mu.Unlock()
		return nil, errTopicExiting
	}
	if ch = t.channels[name]; ch != nil {
		t.mu.Unlock()
		return ch, nil
	}
	start := t.readablePos()
	if len(t.channels) == 0 {
		start = t.start
		if start.Seq < t.log.Head() {
			start = t.log.HeadPos()
		}
	}
	ch = newChannel(t, name, start, cs)
	t.channels[name] = ch
	t.mu.Unlock()
	// A new durable channel is checkpointed at once, so a restart finds its cursor even if the
	// process dies before the first periodic checkpoint.
	t.checkpointNow(ch, true)
	t.logger.Info("channel created", "channel", name)
	t.hooks.channelChanged(t.name, name, true)
	if !ch.ephemeral {
		t.hooks.metadataChanged()
	}
	return ch, nil
}

// restoreChannel recreates a channel found in the metadata file from its checkpoint.
func (t *Topic) restoreChannel(name string, paused bool) error {
	start := t.log.TailPos()
	var (
		runs    []checkpointRun
		gen     uint64
		scratch int
		read    = -1 // the slot restored from
	)
	if t.dir != "" && !protocol.IsEphemeral(name) {
		ck, err := t.readCheckpoint(name)
		if err != nil {
			return fmt.Errorf("restore channel %q: %w", name, err)
		}
		switch {
		case ck.slot >= 0:
			start, runs, gen, scratch, read = ck.cur, ck.runs, ck.gen, 1-ck.slot, ck.slot
		case len(ck.bad) > 0:
			// Periodic checkpoints are not fsynced, so a power cut can leave one empty
			// or torn. Start anyway: from the log's head, which retention never passes
			// while the channel still needs it, so everything unfinished is delivered
			// again (with duplicates) and nothing is lost.
			start = t.log.HeadPos()
			var aside []string
			for _, path := range ck.bad {
				aside = append(aside, t.quarantineFile(name, path))
			}
			t.logger.Error("unreadable channel checkpoint; redelivering the channel from the oldest retained message",
				"channel", name, "error", errBadCheckpoint, "moved_to", aside, "from_seq", start.Seq)
		default:
			start = t.log.HeadPos() // deliver too much rather than lose anything
		}
	}
	if start.Seq < t.log.Head() {
		start = t.log.HeadPos()
	}
	ch := newChannel(t, name, start, t.channelSettings(name))
	ch.paused = paused
	ch.ckptGen, ch.ckptScratch = gen, scratch
	if read >= 0 {
		// What was read may have been written without fsync before a kill. Retention's sync
		// request fsyncs it, off the start-up path, before anything trusts it.
		ch.ckptPending, ch.ckptPendSlot, ch.ckptNewFile = true, read, true
	}
	// As NSQ's, message_count counts from the start of this process.
	ch.routedFrom = max(ch.routedFrom, t.readableSeq())
	if lost := ch.restore(runs, time.Now().UnixNano()); lost > 0 {
		t.logger.Error("unfinished messages missing from the log after restart", "channel", name, "count", lost)
	}
	if err := t.restoreRedrive(ch); err != nil {
		return fmt.Errorf("restore channel %q: %w", name, err)
	}
	ch.dirty = false
	t.mu.Lock()
	t.channels[name] = ch
	t.mu.Unlock()
	return nil
}

// savedCheckpoint is what a channel's checkpoint slots hold: the readable checkpoint of the
// highest generation (slot -1 if none) and the slots that exist but cannot be read.
type savedCheckpoint struct {
	slot int
	gen  uint64
	cur  logstore.Pos
	runs []checkpointRun
	bad  []string
}

func (t *Topic) readCheckpoint(channel string) (savedCheckpoint, error) {
	ck := savedCheckpoint{slot: -1}
	for i, path := range checkpointSlots(t.checkpointPath(channel)) {
		buf, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return ck, err
		}
		gen, cur, runs, err := decodeCheckpoint(buf)
		if err != nil {
			ck.bad = append(ck.bad, path)
			continue
		}
		if ck.slot < 0 || gen > ck.gen {
			ck.slot, ck.gen, ck.cur, ck.runs = i, gen, cur, runs
		}
	}
	if ck.slot >= 0 && len(ck.bad) > 0 {
		// The scratch slot of a write cut short, most likely: the other slot holds the
		// checkpoint before it, and the next checkpoint overwrites this one.
		t.logger.Warn("unreadable checkpoint slot ignored; using the other", "channel", channel,
			"unreadable", filepath.Base(ck.bad[0]), "generation", ck.gen)
		ck.bad = nil
	}
	return ck, nil
}

// quarantineFile moves a channel's unreadable checkpoint file aside, for an operator to look
// at, and returns where it went ("" if it could not be moved, which the next checkpoint then
// overwrites).
func (t *Topic) quarantineFile(channel, path string) string {
	aside := fmt.Sprintf("%s.corrupt-%d", path, time.Now().UnixNano())
	if err := os.Rename(path, aside); err != nil {
		t.logger.Error("move unreadable checkpoint aside", "channel", channel, "error", err)
		return ""
	}
	return filepath.Base(aside)
}

// deleteChannel removes a channel, disconnecting its clients.
func (t *Topic) deleteChannel(name string) error {
	t.mu.Lock()
	ch, ok := t.channels[name]
	if !ok {
		t.mu.Unlock()
		return errChannelNotFound
	}
	delete(t.channels, name)
	last := len(t.channels) == 0
	if last {
		t.start = t.readablePos()
	}
	t.mu.Unlock()
	for _, c := range ch.close() {
		c.close()
	}
	if t.dir != "" {
		t.removeChannelFiles(name, last)
	}
	t.forgetChannelSettings(name)
	t.logger.Info("channel deleted", "channel", name)
	t.hooks.channelChanged(t.name, name, false)
	if !ch.ephemeral {
		t.hooks.metadataChanged()
	}
	if last && t.ephemeral {
		t.hooks.ephemeralTopicEmpty(t)
	}
	return nil
}

// removeChannelFiles removes a deleted channel's checkpoint and, when it was the last
// channel, records where a future first channel starts.
func (t *Topic) removeChannelFiles(name string, last bool) {
	t.diskMu.Lock()
	defer t.diskMu.Unlock()
	slots := checkpointSlots(t.checkpointPath(name))
	for _, path := range []string{slots[0], slots[1], t.redrivePath(name)} {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.logger.Error("remove channel file", "channel", name, "error", err)
		}
	}
	if last {
		if err := writeStartFile(filepath.Join(t.dir, "start"), t.startPos()); err != nil {
			t.logger.Error("record topic start", "error", err)
		}
	}
}

func (t *Topic) startPos() logstore.Pos {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.start
}

// clientLeft is called when a subscribed client disconnects; an ephemeral channel goes with
// its last client.
func (t *Topic) clientLeft(ch *Channel, sub *subscription) {
	if ch.unsubscribe(sub) {
		if err := t.deleteChannel(ch.name); err != nil && !errors.Is(err, errChannelNotFound) {
			t.logger.Error("delete ephemeral channel", "channel", ch.name, "error", err)
		}
	}
}

// setPaused pauses or resumes the topic: while paused, channels deliver what they had read
// before the pause and nothing published after it. The pause file is written under diskMu,
// not mu: publishes and new channels never wait for the disk.
func (t *Topic) setPaused(paused bool) {
	t.diskMu.Lock()
	t.mu.Lock()
	changed := paused != t.paused.Load()
	var pos *logstore.Pos
	if changed {
		if paused {
			p := t.log.TailPos()
			pos = &p
		}
		t.pausePos.Store(pos)
		t.paused.Store(paused)
	}
	t.mu.Unlock()
	if changed {
		t.writePauseFile(pos)
	}
	t.diskMu.Unlock()
	t.hooks.metadataChanged()
	if !paused {
		t.wakeChannels()
	}
}

// writePauseFile records where a pause froze the topic, so a restart does not release what was
// published during the pause; nil removes the record. diskMu is held.
func (t *Topic) writePauseFile(pos *logstore.Pos) {
	if t.dir == "" || t.exiting.Load() {
		return
	}
	path := filepath.Join(t.dir, "paused")
	var err error
	if pos == nil {
		err = os.Remove(path)
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
	} else {
		err = writeStartFile(path, *pos)
	}
	if err != nil {
		t.logger.Error("record topic pause", "error", err)
	}
}

// restorePause pauses a topic loaded as paused at the position its pause recorded.
func (t *Topic) restorePause() {
	pos := t.log.TailPos()
	if t.dir != "" {
		if p, ok := readStartFile(filepath.Join(t.dir, "paused")); ok && p.Seq >= t.log.Head() && p.Seq <= t.log.Tail() {
			pos = p
		}
	}
	t.pausePos.Store(&pos)
	t.paused.Store(true)
}

// Paused reports whether the topic is paused.
func (t *Topic) Paused() bool { return t.paused.Load() }

// empty drops the topic's own backlog, NSQ's "messages not yet given to a channel": all of it
// when there is no channel, and what was published since the pause when paused. The log and
// the pause file change under diskMu, not mu.
func (t *Topic) empty() error {
	t.diskMu.Lock()
	defer t.diskMu.Unlock()
	t.mu.RLock()
	noChannels := len(t.channels) == 0
	t.mu.RUnlock()
	if noChannels {
		// A channel created meanwhile starts below the new head and skips to it.
		if err := t.log.Empty(); err != nil {
			return fmt.Errorf("empty topic %q: %w", t.name, err)
		}
		t.mu.Lock()
		t.start = t.log.TailPos()
		pos := t.start
		paused := t.paused.Load()
		if paused {
			t.pausePos.Store(&pos)
		}
		t.mu.Unlock()
		if paused {
			t.writePauseFile(&pos)
		}
		return nil
	}
	t.mu.Lock()
	p := t.pausePos.Load()
	if !t.paused.Load() || p == nil {
		t.mu.Unlock()
		return nil
	}
	old, pos := *p, t.log.TailPos()
	if pos.Seq > old.Seq {
		// The hole is published before the pause point moves past it, so a reader that
		// sees the new pause point sees the hole, and every channel skips the range
		// whenever it gets there, lagging ones included.
		t.addHole(hole{from: old.Seq, to: pos})
	}
	t.pausePos.Store(&pos)
	t.mu.Unlock()
	t.writePauseFile(&pos)
	t.writeHolesFile()
	return nil
}

// hole is a range of the log, from seq from up to (not including) to, that channels skip.
type hole struct {
	from uint64
	to   logstore.Pos
}

// addHole appends h, merging it with the last hole when they touch. diskMu is held.
func (t *Topic) addHole(h hole) {
	var hs []hole
	if p := t.holes.Load(); p != nil {
		hs = slices.Clone(*p)
	}
	if n := len(hs); n > 0 && hs[n-1].to.Seq >= h.from {
		hs[n-1].to = h.to
	} else {
		hs = append(hs, h)
	}
	t.holes.Store(&hs)
}

// nextHole returns the first hole that ends after seq.
func (t *Topic) nextHole(seq uint64) (hole, bool) {
	p := t.holes.Load()
	if p == nil {
		return hole{}, false
	}
	for _, h := range *p {
		if h.to.Seq > seq {
			return h, true
		}
	}
	return hole{}, false
}

// holesIn returns how many sequences of [from, to) lie in holes.
func (t *Topic) holesIn(from, to uint64) uint64 {
	p := t.holes.Load()
	if p == nil {
		return 0
	}
	n := uint64(0)
	for _, h := range *p {
		if lo, hi := max(h.from, from), min(h.to.Seq, to); hi > lo {
			n += hi - lo
		}
	}
	return n
}

// pruneHoles forgets the holes the log no longer holds. diskMu is held.
func (t *Topic) pruneHoles() {
	p := t.holes.Load()
	if p == nil {
		return
	}
	head := t.log.Head()
	i := 0
	for i < len(*p) && (*p)[i].to.Seq <= head {
		i++
	}
	if i > 0 {
		hs := slices.Clone((*p)[i:])
		t.holes.Store(&hs)
		t.writeHolesFile()
	}
}

// writeHolesFile records the holes, so that a channel lagging behind one skips it after a
// restart too. diskMu is held.
func (t *Topic) writeHolesFile() {
	if t.dir == "" || t.exiting.Load() {
		return
	}
	var b []byte
	if p := t.holes.Load(); p != nil {
		for _, h := range *p {
			b = binary.BigEndian.AppendUint64(b, h.from)
			b = binary.BigEndian.AppendUint64(b, h.to.Seq)
			b = binary.BigEndian.AppendUint64(b, uint64(h.to.Offset))
		}
	}
	if err := writeFileAtomic(filepath.Join(t.dir, "holes"), b, true); err != nil {
		t.logger.Error("record emptied ranges", "error", err)
	}
}

// readHolesFile loads the holes a previous run recorded; a damaged file is ignored (the
// ranges are then delivered: duplicates of nothing, and nothing lost).
func (t *Topic) readHolesFile() {
	b, err := os.ReadFile(filepath.Join(t.dir, "holes"))
	if err != nil || len(b)%24 != 0 {
		return
	}
	var hs []hole
	for ; len(b) > 0; b = b[24:] {
		h := hole{from: binary.BigEndian.Uint64(b), to: logstore.Pos{Seq: binary.BigEndian.Uint64(b[8:]), Offset: int64(binary.BigEndian.Uint64(b[16:]))}}
		if h.from >= h.to.Seq || h.to.Seq > t.log.Tail() || len(hs) > 0 && hs[len(hs)-1].to.Seq > h.from {
			return
		}
		hs = append(hs, h)
	}
	t.holes.Store(&hs)
}

// Depth is NSQ's topic depth: messages held by the topic itself, not yet readable by a channel.
func (t *Topic) Depth() int64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	tail := t.log.Tail()
	if len(t.channels) == 0 {
		return int64(tail - min(max(t.start.Seq, t.log.Head()), tail))
	}
	if seq, ok := t.readLimit(); ok && tail > seq {
		return int64(tail - seq)
	}
	return 0
}

func (t *Topic) checkpointPath(channel string) string {
	return filepath.Join(t.dir, "channels", channel+".ckpt")
}

func (t *Topic) checkpointChannel(ch *Channel, force, sync bool) error {
	if t.dir == "" || ch.ephemeral {
		return nil
	}
	return errors.Join(ch.checkpoint(t.checkpointPath(ch.name), force, sync), t.saveRedriveIfDirty(ch))
}

// checkpointNow writes one channel's state, not synced: if it changed, or always with force.
// Under diskMu, as every checkpoint, and only while the channel is the topic's, so that it
// cannot bring back the file of a channel deleted meanwhile.
func (t *Topic) checkpointNow(ch *Channel, force bool) {
	t.diskMu.Lock()
	defer t.diskMu.Unlock()
	if t.exiting.Load() || t.Channel(ch.name) != ch {
		return
	}
	if err := t.checkpointChannel(ch, force, false); err != nil {
		t.logger.Error("checkpoint", "channel", ch.name, "error", err)
	}
}

// checkpoint writes every durable channel's state that changed.
func (t *Topic) checkpoint(sync bool) error {
	t.diskMu.Lock()
	defer t.diskMu.Unlock()
	if t.exiting.Load() {
		return nil
	}
	var errs []error
	for _, ch := range t.Channels() {
		errs = append(errs, t.checkpointChannel(ch, false, sync))
	}
	return errors.Join(errs...)
}

// retain deletes log segments that no durable channel needs any more, after making sure the
// checkpoints that allow it are on disk.
func (t *Topic) retain() error {
	if t.dir == "" {
		return nil
	}
	if err := t.checkpoint(true); err != nil {
		return err
	}
	// From reading the checkpointed low-water marks to deleting segments, under diskMu:
	// a seek, which moves a channel back, waits (see seekChannel).
	t.diskMu.Lock()
	defer t.diskMu.Unlock()
	if t.exiting.Load() {
		return nil
	}
	lowWater := t.retentionSeq(time.Now().UnixNano())
	t.mu.RLock()
	if len(t.channels) == 0 {
		lowWater = min(lowWater, t.start.Seq)
	}
	for _, ch := range t.channels {
		if !ch.ephemeral {
			lowWater = min(lowWater, ch.checkpointedLowWater())
		}
	}
	t.mu.RUnlock()
	n, err := t.log.TruncateFront(lowWater)
	if n > 0 {
		t.logger.Debug("deleted consumed segments", "count", n)
		t.pruneHoles()
	}
	return err
}

// close stops the topic for shutdown: clients are disconnected, the final checkpoints are
// synced and the log is closed.
func (t *Topic) close() error {
	t.exiting.Store(true)
	var clients []subscriber
	for _, ch := range t.Channels() {
		clients = append(clients, ch.close()...)
	}
	for _, c := range clients {
		c.close()
	}
	t.diskMu.Lock()
	defer t.diskMu.Unlock()
	var errs []error
	for _, ch := range t.Channels() {
		errs = append(errs, t.checkpointChannel(ch, true, true))
	}
	errs = append(errs, t.log.Close())
	return errors.Join(errs...)
}

// delete removes the topic, its channels and its data.
func (t *Topic) delete() error {
	t.exiting.Store(true)
	t.mu.Lock()
	chans := t.channels
	t.channels = make(map[string]*Channel)
	t.mu.Unlock()
	for _, ch := range chans {
		for _, c := range ch.close() {
			c.close()
		}
	}
	t.diskMu.Lock()
	defer t.diskMu.Unlock()
	if err := t.log.Delete(); err != nil {
		return fmt.Errorf("delete topic %q: %w", t.name, err)
	}
	if t.dir != "" {
		if err := os.RemoveAll(t.dir); err != nil {
			return fmt.Errorf("delete topic %q: %w", t.name, err)
		}
	}
	return nil
}

// Stats returns a snapshot of the topic and its channels, with clients.
func (t *Topic) Stats() TopicStats { return t.stats("", true) }

func readStartFile(path string) (logstore.Pos, bool) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) != 16 {
		return logstore.Pos{}, false
	}
	return logstore.Pos{Seq: binary.BigEndian.Uint64(b), Offset: int64(binary.BigEndian.Uint64(b[8:]))}, true
}

func writeStartFile(path string, p logstore.Pos) error {
	return writeFileAtomic(path, encodePos(p), true)
}

// encodePos is a position as the start, pause and floor files keep it.
func encodePos(p logstore.Pos) []byte {
	b := binary.BigEndian.AppendUint64(nil, p.Seq)
	return binary.BigEndian.AppendUint64(b, uint64(p.Offset))
}
