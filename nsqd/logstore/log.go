package logstore

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
)

// Defaults for the zero values of Options.
const (
	// DefaultSegmentBytes is the segment size when Options.SegmentBytes is 0 (nsqd's
	// --max-bytes-per-file default).
	DefaultSegmentBytes = 100 << 20
	// DefaultMaxBodyBytes is the body bound when Options.MaxBodyBytes is 0 (nsqd's
	// --max-msg-size default).
	DefaultMaxBodyBytes = 1 << 20
	// DefaultMemBytes is the hot tail's byte budget when Options.MemBytes is 0.
	DefaultMemBytes = 64 << 20
)

// MaxBodyLimit is the largest MaxBodyBytes allowed: bodies and records must fit an int on
// every platform (the record format itself could hold almost 4 GiB).
const MaxBodyLimit = math.MaxInt32 - minRest

var (
	// ErrClosed is returned by calls on a Log or Reader after Close.
	ErrClosed = errors.New("logstore: log closed")
	// ErrTooLarge is returned by Append for a body larger than Options.MaxBodyBytes.
	ErrTooLarge = errors.New("logstore: body too large")
	// ErrNotFound is returned by ReadAt for a position outside [Head, Tail).
	ErrNotFound = errors.New("logstore: no record at position")
	// ErrCorrupt is returned by ReadAt when the bytes at a position are not a valid record.
	ErrCorrupt = errors.New("logstore: corrupt record")
)

// Record is one stored message.
type Record struct {
	ID        uint64 // message ID, opaque to the log
	Timestamp int64  // publish time, Unix ns
	DeliverAt int64  // Unix ns before which it must not be delivered; 0 = not deferred
	Body      []byte
}

// Pos names a record: its dense per-log sequence number and its byte offset in the segment
// that holds it. The segment holding Seq is the one with the largest base seq <= Seq; if
// that base equals Seq the offset is 0 whatever Offset says, so a Pos taken at the tail stays
// valid after the log rolls to a new segment. In a memory-only log Offset is always 0.
type Pos struct {
	Seq    uint64
	Offset int64
}

// Entry is a record with its position.
type Entry struct {
	Pos Pos
	Record
}

// Options configures a Log.
type Options struct {
	// Dir is the directory for this log's segment files, created if missing; "" makes a
	// memory-only log.
	Dir string
	// SegmentBytes rolls to a new segment when the next record would take the active one past
	// it; a record larger than this gets a segment of its own. 0 means DefaultSegmentBytes.
	SegmentBytes int64
	// MaxBodyBytes bounds a body: Append rejects larger ones and on read a larger length is
	// corruption. 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int
	// MemRecords is the hot tail's capacity in records (0 disables it for a disk log). For a
	// memory-only log it is the bound, the oldest records dropped on overflow; values below 1
	// mean 1 there.
	MemRecords int
	// MemBytes is the hot tail's byte budget, counting encoded record sizes. 0 means
	// DefaultMemBytes.
	MemBytes int64
	// Budget, when not nil, is a byte budget this log's hot tail shares with other logs'.
	// For a memory-only log, records evicted to keep within it are dropped.
	Budget *Budget
	// SyncEvery fsyncs after this many records appended since the last sync; 0 syncs only on
	// Sync and Close.
	SyncEvery int64
	// FsyncAlways makes Append return only after its records are fsynced.
	FsyncAlways bool
	// Logger receives recovery and corruption reports; nil discards them.
	Logger *slog.Logger
}

func (o Options) normalize() (Options, error) {
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxBodyBytes > MaxBodyLimit {
		return o, fmt.Errorf("max body bytes %d above the format's limit %d", o.MaxBodyBytes, MaxBodyLimit)
	}
	if o.MemRecords < 0 {
		o.MemRecords = 0
	}
	if o.Dir == "" && o.MemRecords < 1 {
		o.MemRecords = 1
	}
	if o.MemBytes <= 0 {
		o.MemBytes = DefaultMemBytes
	}
	if o.SyncEvery < 0 {
		o.SyncEvery = 0
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// Stats are cumulative counters of a Log's work since Open.
type Stats struct {
	Records uint64 // records appended
	Batches uint64 // group commits written (one write per segment touched)
	Bytes   uint64 // bytes appended
	Fsyncs  uint64 // fsyncs of segment files
	// CorruptRecords counts the records found damaged, each once however many readers meet
	// it: records that fail their checksum or whose length is invalid, found by Open in the
	// active segment, by a reader or by ReadAt; the records lost when a reader skips the
	// rest of a segment it cannot read; and those Open cuts from the active segment with
	// damage that valid records follow (the damaged record and the valid ones found after
	// it). Any value above 0 means stored data was damaged or unreadable. Each Open counts
	// afresh what it finds, damage it kept in place included.
	CorruptRecords uint64
	// TornBytes is the size of the torn tail that Open cut off the active segment: the
	// unfinished end of a write that a crash interrupted, with no valid record after it.
	// That is expected after a power loss (records not yet fsynced) or a kill during an
	// append (records not yet acknowledged), so it is not counted in CorruptRecords; a last
	// record with a flipped bit cannot be told apart from a torn one and counts here too.
	TornBytes uint64
}

// Log is one topic's message log. All methods are safe for concurrent use.
//
// Locks, always taken in this order: wmu, then either qmu or mu (never both).
//   - wmu serialises everything that writes files or changes which segment is active:
//     a group commit, Sync, Empty, Close. The fields in w are only touched under it.
//   - qmu guards the batch that arriving appenders join, so gathering records never waits
//     for a write in progress.
//   - mu guards the state readers see (published by a commit once its write is done).
//     Readers take it shared and never do I/O under it.
type Log struct {
	opts   Options
	logger *slog.Logger
	dir    string // "" for a memory-only log

	qmu     sync.Mutex
	pending *batch // batch that arriving appenders join; nil when none is gathering
	qclosed bool
	spare   []byte // a written batch's buffer to reuse, when no hot tail keeps it

	wmu sync.Mutex
	w   writer

	mu        sync.RWMutex
	closed    bool
	head      uint64
	tail      uint64
	segs      []*segment // oldest first; replaced, never changed in place, so a snapshot is stable
	diskBytes int64
	lastID    uint64
	ring      ring

	stats struct {
		records, batches, bytes, fsyncs, corrupt, torn atomic.Uint64
	}

	// hooks replace file operations in tests that inject failures; nil means the os call.
	hooks struct {
		writeAt  func(f *os.File, b []byte, off int64) (int, error)
		truncate func(f *os.File, size int64) error
	}
}

// writer is the state of the write side, guarded by Log.wmu.
type writer struct {
	closed   bool
	active   *segment // last segment, the one appended to
	size     int64    // bytes in active, equal to active.size between commits
	next     uint64   // seq the next record gets
	unsynced int64    // records written since the last fsync
	// repair is a file that must be cut back before anything else is written: a failed
	// write could not be undone and its torn bytes must never precede later records.
	repair *repair
	places []place // scratch for a commit: where each record of the batch went
}

// repair describes a failed write that is still to be undone.
type repair struct {
	seg     *segment
	size    int64
	created []*segment // unpublished segments of the failed batch, to remove
}

// place is where one record of a batch was written.
type place struct {
	pos Pos
	off int // offset of the record in the batch buffer
	n   int // its size
}

// Open opens the log in opts.Dir, creating it if missing, or a memory-only log when Dir is
// "". An existing log is recovered: the active (last) segment is scanned and a torn or
// corrupt tail is cut off, so the log holds exactly the records that were completely
// written. A lone corrupt record that valid records follow (a flipped bit) is kept in
// place, holding its seq, for readers to step over. Older segments are not scanned; damage
// in them is met and skipped by readers.
func Open(opts Options) (*Log, error) {
	o, err := opts.normalize()
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	l := &Log{opts: o, logger: o.Logger, dir: o.Dir}
	l.ring = ring{max: o.MemRecords, maxBytes: o.MemBytes, budget: o.Budget}
	if l.dir == "" {
		return l, nil
	}
	if err := os.MkdirAll(l.dir, 0o755); err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	if err := l.recover(); err != nil {
		for _, s := range l.segs {
			_ = s.close()
		}
		return nil, fmt.Errorf("open log %s: %w", l.dir, err)
	}
	return l, nil
}

// recover loads the segments of an existing directory, or creates the first one.
func (l *Log) recover() error {
	segs, odd, err := listSegments(l.dir)
	if err != nil {
		return err
	}
	for _, name := range odd {
		l.logger.Warn("ignoring file with a segment suffix but not a segment name", "file", name)
	}
	if len(segs) == 0 {
		s, err := createSegment(l.dir, 0)
		if err != nil {
			return err
		}
		l.segs = []*segment{s}
		l.w.active = s
		return syncDir(l.dir)
	}
	l.segs = segs
	active := segs[len(segs)-1]
	f, err := os.OpenFile(active.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open active segment: %w", err)
	}
	active.f = f
	res, err := scanSegment(f, 0, l.opts.MaxBodyBytes)
	if err != nil {
		return err
	}
	if res.end < res.size {
		if err := l.cutTail(active, res); err != nil {
			return err
		}
	}
	for _, b := range res.lone {
		// A flipped bit, not a torn write: the record keeps its seq, so Tail, LastID and the
		// seqs after it stay what they were, and readers step over it.
		l.noteDamage(active, b.off, damage{judged: true, skip: b.n, counted: 1})
		l.logger.Error("corrupt record in the active segment; kept it in place, readers skip it",
			"segment", filepath.Base(active.path), "offset", b.off, "seq", active.base+uint64(b.index),
			"bytes", b.n)
	}
	active.size = res.end
	l.lastID = res.lastID
	if res.records == 0 {
		l.lastID, err = l.lastIDBefore(len(segs) - 1)
		if err != nil {
			return err
		}
	}
	for _, s := range segs {
		l.diskBytes += s.size
	}
	l.head = segs[0].base
	l.tail = active.base + uint64(res.records)
	l.ring.head = l.tail
	l.w.active = active
	l.w.size = res.end
	l.w.next = l.tail
	return nil
}

// cutTail truncates the active segment after the records the scan kept.
func (l *Log) cutTail(s *segment, res scanResult) error {
	cut := res.size - res.end
	maxBody := l.opts.MaxBodyBytes
	at, err := findRecordAfter(s.f, res.end, res.size, maxBody)
	if err != nil {
		return err
	}
	if at >= 0 {
		// Valid records after the damage: not a torn write. Keep the bytes for an operator,
		// and count what the log loses: the damaged record and the records found after it.
		saved := fmt.Sprintf("%s.%d.corrupt", s.path, res.end)
		if err := preserve(s.f, res.end, res.size, saved); err != nil {
			return err
		}
		after, err := scanSegment(s.f, at, maxBody)
		if err != nil {
			return err
		}
		lost := 1 + after.records
		l.stats.corrupt.Add(uint64(lost))
		l.logger.Error("corrupt record in the active segment; cut the rest and saved it",
			"segment", filepath.Base(s.path), "offset", res.end, "bytes_cut", cut,
			"records_kept", res.records, "records_lost", lost, "saved_to", filepath.Base(saved))
	} else {
		l.stats.torn.Add(uint64(cut))
		l.logger.Warn("cut torn tail of the active segment",
			"segment", filepath.Base(s.path), "offset", res.end, "bytes_cut", cut,
			"records_kept", res.records)
	}
	if err := s.f.Truncate(res.end); err != nil {
		return fmt.Errorf("cut torn tail: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("cut torn tail: %w", err)
	}
	return nil
}

// lastIDBefore finds the ID of the newest record in the segments before index i, for when
// the active segment is empty (the log rolled, or was emptied, just before it stopped).
func (l *Log) lastIDBefore(i int) (uint64, error) {
	for i--; i >= 0; i-- {
		f, err := l.segs[i].file()
		if err != nil {
			return 0, err
		}
		res, err := scanSegment(f, 0, l.opts.MaxBodyBytes)
		if err != nil {
			return 0, err
		}
		if res.records > 0 {
			return res.lastID, nil
		}
	}
	return 0, nil
}

// Head returns the seq of the oldest retained record.
func (l *Log) Head() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.head
}

// Tail returns the seq the next record will get; Head == Tail means the log is empty.
func (l *Log) Tail() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.tail
}

// HeadPos returns the position of the oldest retained record (or the tail when empty).
func (l *Log) HeadPos() Pos {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return Pos{Seq: l.head}
}

// TailPos returns the position the next record will take.
func (l *Log) TailPos() Pos {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.tailPos()
}

// tailPos is TailPos with mu held.
func (l *Log) tailPos() Pos {
	if l.dir == "" {
		return Pos{Seq: l.tail}
	}
	return Pos{Seq: l.tail, Offset: l.segs[len(l.segs)-1].size}
}

// LastID returns the ID of the newest record ever appended or recovered, 0 if none. It is
// not persisted on its own: after Empty and a restart it is 0 again.
func (l *Log) LastID() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.lastID
}

// Size returns the bytes on disk, or the encoded bytes held for a memory-only log.
func (l *Log) Size() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.dir == "" {
		return l.ring.bytes
	}
	return l.diskBytes
}

// Depth returns Tail - Head.
func (l *Log) Depth() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.tail - l.head
}

// Stats returns the log's counters.
func (l *Log) Stats() Stats {
	return Stats{
		Records: l.stats.records.Load(),
		Batches: l.stats.batches.Load(),
		Bytes:   l.stats.bytes.Load(),
		Fsyncs:  l.stats.fsyncs.Load(),

		CorruptRecords: l.stats.corrupt.Load(),
		TornBytes:      l.stats.torn.Load(),
	}
}

// segIndex returns the index of the segment that holds seq (the largest base <= seq), or -1.
func segIndex(segs []*segment, seq uint64) int {
	return sort.Search(len(segs), func(i int) bool { return segs[i].base > seq }) - 1
}

// TruncateFront deletes every segment all of whose records have a seq below seq, never the
// active one, and returns how many it removed. Readers positioned in them skip to Head.
// In a memory-only log it drops the records below seq and returns 0.
func (l *Log) TruncateFront(seq uint64) (int, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, ErrClosed
	}
	if l.dir == "" {
		l.ring.dropBelow(seq, l.tail)
		l.head = l.ring.head
		l.mu.Unlock()
		return 0, nil
	}
	k := 0
	for k < len(l.segs)-1 && l.segs[k+1].base <= seq {
		k++
	}
	if k == 0 {
		l.mu.Unlock()
		return 0, nil
	}
	removed := l.segs[:k]
	l.segs = slices.Clone(l.segs[k:])
	l.head = l.segs[0].base
	for _, s := range removed {
		l.diskBytes -= s.size
	}
	l.ring.dropBelow(l.head, l.tail)
	l.mu.Unlock()
	// Oldest first, so that a crash part way leaves a contiguous log.
	return k, l.removeSegments(removed)
}

// removeSegments closes and deletes detached segments.
func (l *Log) removeSegments(segs []*segment) error {
	var errs []error
	for _, s := range segs {
		_ = s.close()
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove segment: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return nil
}

// DropHot evicts the hot tail's records below seq, which no reader needs in memory any more,
// so that the budget goes to records still to be read. It does nothing to a memory-only log,
// whose hot tail is all it has.
func (l *Log) DropHot(seq uint64) {
	if l.dir == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.ring.dropBelow(min(seq, l.tail), l.tail)
	}
}

// HotBytes returns the bytes of records the hot tail holds.
func (l *Log) HotBytes() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.ring.bytes
}

// Empty drops every record: afterwards Head == Tail, and seqs keep counting from Tail.
func (l *Log) Empty() error {
	if l.dir == "" {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.closed {
			return ErrClosed
		}
		l.ring.reset(l.tail)
		l.head = l.tail
		return nil
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.w.closed {
		return ErrClosed
	}
	if err := l.repairLocked(); err != nil {
		return fmt.Errorf("empty log: %w", err)
	}
	active := l.w.active
	if active.base != l.w.next {
		// The active segment has records: start a new one at the tail. It is made durable
		// before the old ones go, so a crash in between leaves records, never a gap.
		s, err := createSegment(l.dir, l.w.next)
		if err != nil {
			return fmt.Errorf("empty log: %w", err)
		}
		if err := syncDir(l.dir); err != nil {
			_ = s.close()
			return fmt.Errorf("empty log: %w", err)
		}
		active = s
	}
	l.mu.Lock()
	old := l.segs
	l.segs = []*segment{active}
	l.head = l.tail
	l.diskBytes = 0
	l.ring.reset(l.tail)
	l.mu.Unlock()
	l.w.active, l.w.size, l.w.unsynced = active, 0, 0
	var drop []*segment
	for _, s := range old {
		if s != active {
			drop = append(drop, s)
		}
	}
	if err := l.removeSegments(drop); err != nil {
		return fmt.Errorf("empty log: %w", err)
	}
	if err := syncDir(l.dir); err != nil {
		return fmt.Errorf("empty log: %w", err)
	}
	return nil
}

// Sync fsyncs the active segment if anything is unsynced. (Sealed segments were fsynced
// when the log rolled past them.)
func (l *Log) Sync() error {
	if l.dir == "" {
		if l.isClosed() {
			return ErrClosed
		}
		return nil
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.w.closed {
		return ErrClosed
	}
	return l.syncLocked()
}

// syncLocked fsyncs the active segment if needed; wmu is held.
func (l *Log) syncLocked() error {
	if l.w.unsynced == 0 {
		return nil
	}
	if err := l.w.active.f.Sync(); err != nil {
		return fmt.Errorf("sync segment: %w", err)
	}
	l.stats.fsyncs.Add(1)
	l.w.unsynced = 0
	return nil
}

func (l *Log) isClosed() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.closed
}

// Close syncs and closes the log. Appends waiting for a commit fail with ErrClosed, and so
// do all later calls except the accessors and Delete.
func (l *Log) Close() error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.w.closed {
		return ErrClosed
	}
	l.w.closed = true
	l.qmu.Lock()
	l.qclosed = true
	l.spare = nil
	l.qmu.Unlock()
	var err error
	if l.dir != "" {
		if rerr := l.repairLocked(); rerr != nil {
			l.logger.Error("closing with a failed append not undone", "err", rerr)
		}
		err = l.syncLocked()
	}
	l.mu.Lock()
	l.closed = true
	segs := l.segs
	l.ring.reset(l.tail)
	l.mu.Unlock()
	for _, s := range segs {
		if cerr := s.close(); err == nil && cerr != nil {
			err = fmt.Errorf("close segment: %w", cerr)
		}
	}
	return err
}

// Delete closes the log (if it is still open) and removes its directory.
func (l *Log) Delete() error {
	err := l.Close()
	if errors.Is(err, ErrClosed) {
		err = nil
	}
	if l.dir == "" {
		return err
	}
	if rerr := os.RemoveAll(l.dir); rerr != nil {
		return errors.Join(err, fmt.Errorf("delete log: %w", rerr))
	}
	return err
}

// BytesFrom returns the bytes the log holds from the record at p to its tail (a position below
// Head counts from Head). For a memory-only log it is the hot tail's bytes, whatever p.
func (l *Log) BytesFrom(p Pos) int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.dir == "" {
		return l.ring.bytes
	}
	i := segIndex(l.segs, p.Seq)
	off := p.Offset
	if i < 0 || p.Seq < l.head {
		i, off = 0, 0
	}
	if p.Seq == l.segs[i].base {
		off = 0
	}
	n := max(l.segs[i].size-off, 0)
	for _, s := range l.segs[i+1:] {
		n += s.size
	}
	return n
}

// SegmentInfo describes one segment of a disk log.
type SegmentInfo struct {
	Base  uint64 // seq of its first record
	Bytes int64  // committed size
}

// Segments describes the log's segments, oldest first; nil for a memory-only log.
func (l *Log) Segments() []SegmentInfo {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.dir == "" {
		return nil
	}
	out := make([]SegmentInfo, len(l.segs))
	for i, s := range l.segs {
		out[i] = SegmentInfo{Base: s.base, Bytes: s.size}
	}
	return out
}
