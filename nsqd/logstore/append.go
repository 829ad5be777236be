package logstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
)

const (
	// batchStart is the first capacity of a batch buffer that no hot tail keeps (it is
	// reused), so that appenders joining a batch rarely make it grow.
	batchStart = 64 << 10
	// maxBatchBytes caps a gathered batch: a larger one starts the next batch instead, so
	// one write stays a sensible size and the buffer the hot tail keeps stays bounded.
	maxBatchBytes = 4 << 20
)

// batch is a group commit: the records of every Append that arrived while the previous
// write was under way, encoded back to back in buf. The first appender to join is its
// leader and writes it; the others wait on done.
type batch struct {
	buf  []byte
	n    int    // records in buf
	base uint64 // seq of the first record, set by the commit
	err  error  // result of the commit, read after done is closed
	done chan struct{}
}

// Append stores recs contiguously and returns the seq of the first.
//
// Appends that arrive while a write is under way are gathered into one batch, which the
// first of them (the leader) writes with one write call per segment it touches. Each Append
// returns once the write holding its records has reached the OS (and been fsynced, with
// FsyncAlways); its records become visible to readers at that moment, never half-written.
// If the write fails, every Append of the batch gets the error, none of its records are
// kept, and the file is cut back so later appends never follow a torn record.
//
// Append copies the bodies: the caller may reuse them once it returns.
func (l *Log) Append(recs []Record) (uint64, error) {
	size := 0
	for i := range recs {
		if len(recs[i].Body) > l.opts.MaxBodyBytes {
			return 0, fmt.Errorf("append body of %d bytes (max %d): %w", len(recs[i].Body), l.opts.MaxBodyBytes, ErrTooLarge)
		}
		size += recordSize(len(recs[i].Body))
	}
	if len(recs) == 0 {
		l.mu.RLock()
		defer l.mu.RUnlock()
		if l.closed {
			return 0, ErrClosed
		}
		return l.tail, nil
	}
	if l.dir == "" {
		return l.appendMem(recs, size)
	}

	l.qmu.Lock()
	if l.qclosed {
		l.qmu.Unlock()
		return 0, ErrClosed
	}
	b := l.pending
	lead := b == nil || len(b.buf)+size > maxBatchBytes
	if lead {
		b = &batch{done: make(chan struct{})}
		switch {
		case size <= cap(l.spare):
			b.buf, l.spare = l.spare[:0], nil
		case l.ring.enabled():
			// The hot tail keeps this buffer: size it for these records, so that a lightly
			// loaded log does not pin mostly empty buffers. Joiners make it grow.
			b.buf = make([]byte, 0, size)
		default:
			b.buf = make([]byte, 0, max(size, batchStart))
		}
		l.pending = b
	}
	first := b.n
	b.buf = slices.Grow(b.buf, size)
	for i := range recs {
		b.buf = appendRecord(b.buf, &recs[i])
	}
	b.n += len(recs)
	l.qmu.Unlock()

	if lead {
		l.lead(b)
	} else {
		<-b.done
	}
	if b.err != nil {
		return 0, b.err
	}
	return b.base + uint64(first), nil
}

// lead writes batch b once no other write is under way. Until it takes wmu the batch stays
// open, so everything that arrives meanwhile goes down in the same write.
func (l *Log) lead(b *batch) {
	l.wmu.Lock()
	l.qmu.Lock()
	if l.pending == b {
		l.pending = nil
	}
	l.qmu.Unlock()

	b.err = l.commit(b)
	close(b.done)
	if b.err == nil && !l.opts.FsyncAlways && l.opts.SyncEvery > 0 && l.w.unsynced >= l.opts.SyncEvery {
		// The appenders' records have reached the OS, which is all they wait for; a failed
		// periodic fsync is reported here and by the next Sync or Close, which retry it.
		if err := l.syncLocked(); err != nil {
			l.logger.Error("periodic fsync failed", "err", err)
		}
	}
	if !l.ring.enabled() {
		// Nothing keeps the buffer: the next batch can reuse it.
		l.qmu.Lock()
		if b.err == nil && cap(b.buf) > cap(l.spare) && cap(b.buf) <= maxBatchBytes {
			l.spare = b.buf
		}
		l.qmu.Unlock()
	}
	l.wmu.Unlock()
}

// commit writes a batch, rolling segments as needed, then publishes it. On failure nothing
// is published and the files are put back as they were. wmu is held.
func (l *Log) commit(b *batch) error {
	w := &l.w
	if w.closed {
		return ErrClosed
	}
	if err := l.repairLocked(); err != nil {
		return fmt.Errorf("append: %w", err)
	}
	b.base = w.next
	var (
		start   = w.active
		active  = w.active
		size    = w.size
		created []*segment
		sealed  []int64 // final size of start and of each created segment but the last
		run     int     // start in buf of the bytes not yet written
		runOff  = size  // file offset they go to
		seq     = b.base
	)
	buf := b.buf
	w.places = w.places[:0]
	fail := func(err error) error {
		l.undo(start, w.size, created)
		return fmt.Errorf("append: %w", err)
	}
	for off := 0; off < len(buf); {
		n := lenSize + int(binary.BigEndian.Uint32(buf[off:]))
		if size > 0 && size+int64(n) > l.opts.SegmentBytes {
			if err := l.writeAt(active, buf[run:off], runOff); err != nil {
				return fail(err)
			}
			s, err := l.roll(active, seq)
			if s != nil {
				created = append(created, s)
			}
			if err != nil {
				return fail(err)
			}
			sealed = append(sealed, size)
			active, size, run, runOff = s, 0, off, 0
		}
		p := Pos{Seq: seq, Offset: size}
		w.places = append(w.places, place{pos: p, off: off, n: n})
		size += int64(n)
		off += n
		seq++
	}
	if err := l.writeAt(active, buf[run:], runOff); err != nil {
		return fail(err)
	}
	if l.opts.FsyncAlways {
		if err := active.f.Sync(); err != nil {
			return fail(fmt.Errorf("sync segment: %w", err))
		}
		l.stats.fsyncs.Add(1)
	} else {
		w.unsynced += int64(b.n)
	}
	w.active, w.size, w.next = active, size, seq
	l.stats.records.Add(uint64(b.n))
	l.stats.batches.Add(1)
	l.stats.bytes.Add(uint64(len(buf)))
	l.publish(b, start, created, sealed, size)
	return nil
}

// writeAt writes a run of records to s at off.
func (l *Log) writeAt(s *segment, p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	var err error
	if l.hooks.writeAt != nil {
		_, err = l.hooks.writeAt(s.f, p, off)
	} else {
		_, err = s.f.WriteAt(p, off)
	}
	if err != nil {
		return fmt.Errorf("write segment: %w", err)
	}
	return nil
}

// roll seals full and creates the segment that starts at base. The sealed segment is
// fsynced now, once, so that Sync and Close only ever have the active segment to sync, and
// the directory is fsynced so the new file survives a power loss.
func (l *Log) roll(full *segment, base uint64) (*segment, error) {
	if err := full.f.Sync(); err != nil {
		return nil, fmt.Errorf("sync sealed segment: %w", err)
	}
	l.stats.fsyncs.Add(1)
	s, err := createSegment(l.dir, base)
	if err != nil {
		return nil, err
	}
	if err := syncDir(l.dir); err != nil {
		return s, err
	}
	return s, nil
}

// undo puts the files back as they were before a failed commit: the segments it created
// are removed and the one it started in is cut back to size. What cannot be undone now is
// kept in w.repair and retried before anything else is written.
func (l *Log) undo(start *segment, size int64, created []*segment) {
	for _, s := range created {
		_ = s.close()
	}
	l.w.repair = &repair{seg: start, size: size, created: created}
	if err := l.repairLocked(); err != nil {
		l.logger.Error("cannot undo a failed append yet; appends fail until it can", "err", err)
	}
}

// repairLocked finishes undoing a failed write, if one is pending. wmu is held.
func (l *Log) repairLocked() error {
	r := l.w.repair
	if r == nil {
		return nil
	}
	for len(r.created) > 0 {
		if err := os.Remove(r.created[0].path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove segment of failed write: %w", err)
		}
		r.created = r.created[1:]
	}
	var err error
	if l.hooks.truncate != nil {
		err = l.hooks.truncate(r.seg.f, r.size)
	} else {
		err = r.seg.f.Truncate(r.size)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cut back failed write: %w", err)
	}
	l.w.repair = nil
	return nil
}

// publish makes a written batch visible: new segments, sizes, tail, last ID and the hot
// tail all change at once under mu.
func (l *Log) publish(b *batch, start *segment, created []*segment, sealed []int64, size int64) {
	buf := b.buf
	if waste := cap(buf) - len(buf); l.ring.enabled() && waste > len(buf) && waste > 4<<10 {
		// A lightly loaded batch can be mostly empty capacity; the hot tail would keep all
		// of it alive, so it keeps a tight copy instead.
		buf = slices.Clone(buf)
	}
	places := l.w.places
	last := places[len(places)-1]
	lastID := binary.BigEndian.Uint64(buf[last.off+crcFrom:])

	l.mu.Lock()
	defer l.mu.Unlock()
	if len(created) > 0 {
		segs := make([]*segment, 0, len(l.segs)+len(created))
		l.segs = append(append(segs, l.segs...), created...)
		start.size = sealed[0]
		for i, s := range created[:len(created)-1] {
			s.size = sealed[i+1]
		}
	}
	l.segs[len(l.segs)-1].size = size
	l.diskBytes += int64(len(b.buf))
	l.tail = b.base + uint64(b.n)
	l.lastID = lastID
	if l.ring.enabled() {
		for _, p := range places {
			l.ring.push(Entry{Pos: p.pos, Record: decodeTrusted(buf[p.off : p.off+p.n])})
		}
		l.ring.settle()
	}
}

// appendMem is Append for a memory-only log: the bodies are copied into one buffer and the
// records go straight into the ring.
func (l *Log) appendMem(recs []Record, size int) (uint64, error) {
	bodies := make([]byte, 0, size-len(recs)*headerSize)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	first := l.tail
	for i := range recs {
		r := recs[i]
		at := len(bodies)
		bodies = append(bodies, r.Body...)
		r.Body = bodies[at:len(bodies):len(bodies)]
		l.ring.push(Entry{Pos: Pos{Seq: l.tail}, Record: r})
		l.tail++
	}
	l.ring.settle()
	l.head = l.ring.head
	l.lastID = recs[len(recs)-1].ID
	l.stats.records.Add(uint64(len(recs)))
	l.stats.batches.Add(1)
	l.stats.bytes.Add(uint64(size))
	return first, nil
}
