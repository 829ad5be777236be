package logstore

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
)

const (
	// readChunk is how much a reader reads from a segment per syscall. Each chunk is freshly
	// allocated because returned bodies alias it.
	readChunk = 64 << 10
	// maxReadFailures is how many reads in a row may fail with an I/O error at one position
	// before the reader gives the segment up as unreadable and skips it, so that a bad sector
	// cannot hold a channel forever while a passing error costs nothing.
	maxReadFailures = 3
)

// Reader is one cursor into a Log. It is not safe for concurrent use: its owner serialises
// calls. Readers cost the log nothing while idle; they share the log's file handles.
type Reader struct {
	log      *Log
	pos      Pos
	skipped  uint64
	closed   bool
	failures int // consecutive I/O errors at pos

	// chunk holds bytes of chunkSeg from file offset chunkOff. It is never written again
	// once read, since bodies handed out alias it.
	chunk    []byte
	chunkOff int64
	chunkSeg *segment
}

// NewReader returns a reader positioned at from, which must be a position this log handed
// out (HeadPos, TailPos, an entry's or a reader's Pos) or Pos{Seq: s} with s at or below
// Head: the offset is trusted. A position past the tail (a checkpoint from before a crash
// that lost unsynced records, say) is moved back to the tail; one below Head is moved up to
// Head by the first Read, which counts the records skipped.
func (l *Log) NewReader(from Pos) *Reader {
	l.mu.RLock()
	tail, tailPos := l.tail, l.tailPos()
	l.mu.RUnlock()
	if from.Seq > tail {
		l.logger.Warn("reader position past the tail; starting at the tail", "seq", from.Seq, "tail", tail)
		from = tailPos
	}
	return &Reader{log: l, pos: from}
}

// Pos returns the position of the next record the reader will return.
func (r *Reader) Pos() Pos { return r.pos }

// Skipped returns how many records the reader has skipped since it was made: records
// deleted or dropped below Head before it read them, and records lost to corruption.
func (r *Reader) Skipped() uint64 { return r.skipped }

// Close releases the reader's buffer. It is idempotent.
func (r *Reader) Close() error {
	r.closed = true
	r.chunk, r.chunkSeg = nil, nil
	return nil
}

// view is what a reader needs to know, from one consistent snapshot, about the segment that
// holds its position.
type view struct {
	seg   *segment
	limit int64  // committed bytes of seg
	next  uint64 // seq after seg's records: the next segment's base, or the tail
	stop  uint64 // where reading the disk stops: next, or the hot tail's first seq if lower
	last  bool   // seg is the active segment
}

// view returns the view for seq, which must be in [head, tail); mu is held.
func (l *Log) view(seq uint64) view {
	i := segIndex(l.segs, seq)
	v := view{seg: l.segs[i], limit: l.segs[i].size, next: l.tail, last: i == len(l.segs)-1}
	if !v.last {
		v.next = l.segs[i+1].base
	}
	v.stop = v.next
	if l.ring.n > 0 && l.ring.head < v.stop {
		v.stop = l.ring.head
	}
	return v
}

// Read appends to dst up to max records available now and returns it; at the tail it
// returns at once with nothing added. Records still in the hot tail are copied from memory;
// older ones are read from the segment files a large chunk at a time.
//
// If the reader's position fell below Head it jumps to Head, and a segment that is corrupt
// or persistently unreadable is skipped from the bad record to its end; both are counted in
// Skipped, and records lost to damage in Stats.CorruptRecords too (once for all readers).
// Returned bodies are never modified afterwards, however long they are kept.
func (r *Reader) Read(dst []Entry, max int) ([]Entry, error) {
	return r.ReadBelow(dst, max, math.MaxUint64)
}

// ReadBelow is Read that returns no record at or above seq end, however many records it
// steps over: max bounds what is returned, not how far the reader moves, and a caller that
// must not pass a point (a paused topic's pause point, the end of a range) bounds it with
// end. Only skipping the rest of a damaged segment can move the reader past end.
func (r *Reader) ReadBelow(dst []Entry, max int, end uint64) ([]Entry, error) {
	if r.closed {
		return dst, ErrClosed
	}
	l := r.log
	retried := false
	for max > 0 {
		l.mu.RLock()
		if l.closed {
			l.mu.RUnlock()
			return dst, ErrClosed
		}
		if r.pos.Seq < l.head {
			r.skipped += l.head - r.pos.Seq
			r.pos = Pos{Seq: l.head}
		}
		if r.pos.Seq >= l.tail || r.pos.Seq >= end {
			l.mu.RUnlock()
			return dst, nil
		}
		if l.ring.has(r.pos.Seq) {
			dst, r.pos = l.ring.copyFrom(dst, r.pos.Seq, int(min(uint64(max), end-r.pos.Seq)), l.tailPos())
			l.mu.RUnlock()
			r.failures = 0
			return dst, nil
		}
		v := l.view(r.pos.Seq)
		l.mu.RUnlock()

		n := len(dst)
		var err error
		dst, err = r.readSegment(dst, max, v, end)
		max -= len(dst) - n
		if err != nil {
			if gone(err) && !retried {
				// The segment was deleted under us: look again, from below Head.
				retried = true
				continue
			}
			return dst, err
		}
	}
	return dst, nil
}

// gone reports whether err comes from a segment deleted (or a log closed) during a read.
func gone(err error) bool {
	return errors.Is(err, errSegmentGone) || errors.Is(err, os.ErrClosed)
}

// readSegment reads records of v.seg from the reader's position. It always makes progress:
// it returns records, moves to the next segment, or fails.
func (r *Reader) readSegment(dst []Entry, max int, v view, end uint64) ([]Entry, error) {
	seq, off := r.pos.Seq, r.pos.Offset
	if seq == v.seg.base {
		off = 0
	}
	if r.chunkSeg != v.seg {
		r.chunk, r.chunkSeg = nil, v.seg
	}
	maxBody := r.log.opts.MaxBodyBytes
	for max > 0 && seq < v.stop && seq < end && off < v.limit {
		rec, n, err := r.record(v.seg, off, v.limit, maxBody)
		if err != nil {
			r.pos = Pos{Seq: seq, Offset: off}
			if n, err = r.fail(v, n, err); n == 0 {
				return dst, err
			}
			// A lone corrupt record: step over it alone.
			off += int64(n)
			seq++
			continue
		}
		dst = append(dst, Entry{Pos: Pos{Seq: seq, Offset: off}, Record: rec})
		off += int64(n)
		seq++
		max--
	}
	r.failures = 0
	r.pos = Pos{Seq: seq, Offset: off}
	if off >= r.chunkOff+int64(len(r.chunk)) {
		// Every record of the chunk has been handed out: the bodies keep it alive as long
		// as they are held, and the reader need not. A new chunk is read next anyway.
		r.chunk = nil
	}
	if off >= v.limit && seq < v.next {
		// The segment's bytes end before the records that the next base implies (a sealed
		// segment damaged outside this process, or a position that does not belong here).
		r.skipRest(v, "segment ends before its last record; skipping to the next segment", nil)
	}
	return dst, nil
}

// fail decides what a read error at the reader's position means, n being the record's size
// when its length is plausible. A deleted segment is for Read to retry. A lone corrupt record
// (see lone) is stepped over: it is counted in Skipped and fail returns its size. Any other
// corruption, or an I/O error that keeps coming back, skips the rest of the segment.
func (r *Reader) fail(v view, n int, err error) (int, error) {
	if gone(err) {
		return 0, err
	}
	if errors.Is(err, errChecksum) {
		d, jerr := r.judge(v, n, err)
		switch {
		case jerr != nil:
			err = jerr // the record after it could not be read: try again later
		case d.skip > 0:
			r.skipped++
			r.failures = 0
			return d.skip, nil
		}
	}
	if !errors.Is(err, ErrCorrupt) {
		if gone(err) {
			return 0, err
		}
		r.failures++
		if r.failures < maxReadFailures {
			return 0, err
		}
	}
	r.skipRest(v, "unreadable record; skipping the rest of the segment", err)
	return 0, nil
}

// judge returns the readers' verdict on the record of n bytes at the reader's position, which
// failed its checksum: the verdict of the first reader that met it, which every later reader
// follows, or a new one. A lone record is recorded, counted and logged here; the other
// verdict (skip the rest of the segment) is left for skipRest to record. An error means the
// verdict could not be reached for now.
func (r *Reader) judge(v view, n int, cause error) (damage, error) {
	off := r.pos.Offset
	if d, ok := v.seg.damageAt(off); ok && d.judged {
		return d, nil
	}
	lone, err := r.lone(v, n)
	if err != nil || !lone {
		return damage{}, err
	}
	d, fresh := r.log.noteDamage(v.seg, off, damage{judged: true, skip: n, counted: 1})
	if fresh {
		r.log.logger.Error("corrupt record; readers skip it",
			"segment", filepath.Base(v.seg.path), "offset", off, "seq", r.pos.Seq, "bytes", n,
			"err", cause)
	}
	return d, nil
}

// lone reports whether the record of n bytes at the reader's position, whose length is
// plausible but whose checksum is wrong, is damaged on its own, so that readers may step over
// it alone: the record after it is valid, or it is the segment's last one and the seqs agree,
// and no valid record lies inside it. A flipped bit anywhere but the length does that. A
// damaged length rarely lands on a record boundary; when it does, the records it spans must
// not be read as one, which would misnumber every seq after them: hence the last check.
func (r *Reader) lone(v view, n int) (bool, error) {
	maxBody := r.log.opts.MaxBodyBytes
	seq, off := r.pos.Seq, r.pos.Offset
	// record has just read the whole record into the chunk.
	rel := int(off - r.chunkOff)
	if validWithin(r.chunk[rel:rel+n], maxBody) {
		return false, nil
	}
	end := off + int64(n)
	if end == v.limit {
		return seq+1 == v.next, nil
	}
	_, _, err := r.record(v.seg, end, v.limit, maxBody)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrCorrupt):
		return false, nil
	}
	return false, err
}

// skipRest moves the reader past the rest of v.seg from its position, counting the records
// it leaves in Skipped and, the first time any reader skips from this spot, in
// Stats.CorruptRecords; only that first time is logged, since every channel's reader of the
// topic meets the same damage.
func (r *Reader) skipRest(v view, msg string, err error) {
	lost := v.next - r.pos.Seq
	if _, fresh := r.log.noteDamage(v.seg, r.pos.Offset, damage{judged: true, counted: lost}); fresh {
		args := []any{"segment", filepath.Base(v.seg.path), "offset", r.pos.Offset, "seq", r.pos.Seq,
			"records_skipped", lost}
		if err != nil {
			args = append(args, "err", err)
		}
		r.log.logger.Error(msg, args...)
	}
	r.skipSegment(v)
}

// skipSegment moves the reader past the rest of v.seg, counting the records it leaves.
func (r *Reader) skipSegment(v view) {
	r.skipped += v.next - r.pos.Seq
	r.pos = Pos{Seq: v.next}
	if v.last {
		r.pos.Offset = v.limit
	}
	r.chunk, r.chunkSeg = nil, nil
	r.failures = 0
}

// record returns the record of s at off, reading a new chunk when the current one does not
// hold all of it, and its encoded size. A record that fails its checksum yields errChecksum
// with its size, and the chunk holds all of it.
func (r *Reader) record(s *segment, off, limit int64, maxBody int) (Record, int, error) {
	if off+headerSize > limit {
		return Record{}, 0, corrupt(s, off, "record header past the end of the segment")
	}
	if err := r.fill(s, off, headerSize, limit); err != nil {
		return Record{}, 0, err
	}
	rel := int(off - r.chunkOff)
	n, ok := restLen(r.chunk[rel:], maxBody)
	if !ok {
		return Record{}, 0, corrupt(s, off, "invalid record length")
	}
	if off+int64(n) > limit {
		return Record{}, 0, corrupt(s, off, "record past the end of the segment")
	}
	if rel+n > len(r.chunk) {
		if err := r.fill(s, off, n, limit); err != nil {
			return Record{}, 0, err
		}
		rel = 0
	}
	rec, ok := decodeRecord(r.chunk[rel : rel+n])
	if !ok {
		return Record{}, n, badChecksum(s, off)
	}
	return rec, n, nil
}

// fill makes the chunk hold the need bytes of s at off, reading a new chunk that starts at
// off if it does not. It never reads past limit, the committed end.
func (r *Reader) fill(s *segment, off int64, need int, limit int64) error {
	if off >= r.chunkOff && off+int64(need) <= r.chunkOff+int64(len(r.chunk)) {
		return nil
	}
	size := min(max(int64(readChunk), int64(need)), limit-off)
	f, err := s.file()
	if err != nil {
		return err
	}
	buf := make([]byte, size)
	n, err := f.ReadAt(buf, off)
	if int64(n) < size {
		if err == nil || errors.Is(err, io.EOF) {
			return corrupt(s, off+int64(n), "segment shorter than its committed size")
		}
		return fmt.Errorf("read segment %s: %w", filepath.Base(s.path), err)
	}
	r.chunk, r.chunkOff = buf, off
	return nil
}

// errChecksum is the corruption of a record whose length is plausible and fits the segment
// but whose checksum does not match: the one kind a reader may step over alone.
var errChecksum = fmt.Errorf("checksum mismatch: %w", ErrCorrupt)

func corrupt(s *segment, off int64, what string) error {
	return fmt.Errorf("segment %s offset %d: %s: %w", filepath.Base(s.path), off, what, ErrCorrupt)
}

func badChecksum(s *segment, off int64) error {
	return fmt.Errorf("segment %s offset %d: %w", filepath.Base(s.path), off, errChecksum)
}

// ReadAt returns the record at p, which must be a position this log handed out (a reader's
// entry or TailPos at the time). The record's checksum is verified; a position that does not
// start a record yields ErrCorrupt. A corrupt record is logged and counted in
// Stats.CorruptRecords the first time it is found, not each time it is asked for.
func (l *Log) ReadAt(p Pos) (Record, error) {
	for attempt := 0; ; attempt++ {
		l.mu.RLock()
		if l.closed {
			l.mu.RUnlock()
			return Record{}, ErrClosed
		}
		if p.Seq < l.head || p.Seq >= l.tail {
			head, tail := l.head, l.tail
			l.mu.RUnlock()
			return Record{}, fmt.Errorf("read seq %d of [%d, %d): %w", p.Seq, head, tail, ErrNotFound)
		}
		if l.ring.has(p.Seq) {
			rec := l.ring.at(p.Seq).Record
			l.mu.RUnlock()
			return rec, nil
		}
		v := l.view(p.Seq)
		l.mu.RUnlock()
		off := p.Offset
		if p.Seq == v.seg.base {
			off = 0
		}
		rec, err := readRecordAt(v.seg, off, v.limit, l.opts.MaxBodyBytes)
		if err != nil && gone(err) && attempt == 0 {
			continue
		}
		if errors.Is(err, ErrCorrupt) && off >= 0 && off+headerSize <= v.limit {
			// Bad bytes where a record fits, not a position outside the segment: count the
			// record once, however often it is asked for.
			if _, fresh := l.noteDamage(v.seg, off, damage{counted: 1}); fresh {
				l.logger.Error("corrupt record", "segment", filepath.Base(v.seg.path),
					"offset", off, "seq", p.Seq, "err", err)
			}
		}
		return rec, err
	}
}

// readRecordAt reads and verifies the record of s at off with one pread for a small record
// and two for a large one. The body is freshly allocated.
func readRecordAt(s *segment, off, limit int64, maxBody int) (Record, error) {
	if off < 0 || off+headerSize > limit {
		return Record{}, corrupt(s, off, "no record header at offset")
	}
	f, err := s.file()
	if err != nil {
		return Record{}, err
	}
	head := make([]byte, min(512, limit-off))
	if _, err := f.ReadAt(head, off); err != nil {
		if errors.Is(err, io.EOF) {
			return Record{}, corrupt(s, off, "segment shorter than its committed size")
		}
		return Record{}, fmt.Errorf("read segment %s: %w", filepath.Base(s.path), err)
	}
	n, ok := restLen(head, maxBody)
	if !ok {
		return Record{}, corrupt(s, off, "invalid record length")
	}
	if off+int64(n) > limit {
		return Record{}, corrupt(s, off, "record past the end of the segment")
	}
	// A tight copy, since the caller may keep the body for long.
	b := make([]byte, n)
	copy(b, head)
	if n > len(head) {
		if _, err := f.ReadAt(b[len(head):], off+int64(len(head))); err != nil {
			if errors.Is(err, io.EOF) {
				return Record{}, corrupt(s, off, "segment shorter than its committed size")
			}
			return Record{}, fmt.Errorf("read segment %s: %w", filepath.Base(s.path), err)
		}
	}
	rec, ok := decodeRecord(b)
	if !ok {
		return Record{}, badChecksum(s, off)
	}
	return rec, nil
}
