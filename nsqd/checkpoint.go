package nsqd

import (
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/ternmq/tern/nsqd/logstore"
)

// A checkpoint is a channel's delivery state on disk: its cursor and every message the cursor
// has passed that is not finished, with its attempts and, for deferred and delayed-requeue
// messages, its due time. Bodies are not copied: they stay in the topic log, which keeps every
// segment at or above the channel's checkpointed low-water mark.
//
// Every channel rewrites its checkpoint once a second while it is busy, and a busy channel has
// thousands of messages in flight, so the encoding is compact: a topic fanned out to a hundred
// channels must not write more checkpoint than log. Unfinished messages are stored as runs:
// consecutive log records that share their delivery state (attempts, delivery times to the
// millisecond, due time, dead-letter reason), as messages delivered in one burst do.
//
// Layout: magic "TCKP0004"; the generation u64 (see checkpointSlots), cursor seq u64, cursor
// offset i64 and the number of runs u32, all big-endian; the runs; a CRC-32C of everything
// before it. A run is a flags byte, then varints
// (u: unsigned, s: zigzag), each delta against the previous run that has the field:
//
//	u seq - end of the previous run   s offset - previous offset   u count - 1
//	s id - seq                        u attempts
//	s first delivery ms (flag 1)      s last - first delivery ms (flag 2)
//	s due ns (flag 4)                 byte dead-letter reason (flag 8)
//
// The k-th message of a run is the log record k after the first, with id+k. The encoding is
// canonical (minimal varints, maximal runs, no flag without its field), so a file decodes to
// one state and that state encodes to the same file.
//
// Version 3 ("TCKP0003") was this without the generation, which is read as 0, as it is for
// versions 1 ("TCKP0001") and 2 ("TCKP0002"). These listed every
// message in fixed-size entries of id u64, seq u64, offset i64, timestamp i64, due i64 and
// attempts u16; version 2 added first and last delivery i64 and the dead-letter reason u8.
// Both are still read.
const (
	checkpointMagic       = "TCKP0004"
	checkpointMagicV3     = "TCKP0003"
	checkpointMagicV2     = "TCKP0002"
	checkpointMagicV1     = "TCKP0001"
	checkpointHeaderSize  = len(checkpointMagic) + 28
	checkpointHeaderV2    = len(checkpointMagic) + 20 // versions 1 to 3: no generation
	checkpointEntrySizeV2 = 8*5 + 2 + 8 + 8 + 1
	checkpointEntrySizeV1 = 8*5 + 2
	// checkpointMinRun is the fewest bytes a run takes: flags and five one-byte varints.
	checkpointMinRun = 6
)

// Run flags: which optional fields follow.
const (
	runDelivered   = 1 << iota // first delivery (0 ms: never delivered)
	runRedelivered             // last delivery later than the first
	runDue                     // deferred until a due time
	runDying                   // on its way to the dead-letter topic, for a reason
	runFlagsAll    = runDelivered | runRedelivered | runDue | runDying
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errBadCheckpoint means a checkpoint file is truncated or fails its checksum.
var errBadCheckpoint = errors.New("bad checkpoint")

// checkpointEntry is one unfinished message in a checkpoint. Delivery times are kept to the
// millisecond, which is all a restart keeps of them.
type checkpointEntry struct {
	id         uint64
	pos        logstore.Pos
	due        int64
	attempts   uint16
	firstDeliv int64
	lastDeliv  int64
	deadReason uint8
}

// checkpointRun is n unfinished messages in consecutive log records from the first's, with
// consecutive ids, all in the first's delivery state.
type checkpointRun struct {
	checkpointEntry
	n uint64
}

// extends reports whether e is the message right after the run, in the same state.
func (r *checkpointRun) extends(e *checkpointEntry) bool {
	return e.pos.Seq == r.pos.Seq+r.n && e.id == r.id+r.n && e.attempts == r.attempts &&
		e.due == r.due && e.deadReason == r.deadReason &&
		e.firstDeliv/int64(time.Millisecond) == r.firstDeliv/int64(time.Millisecond) &&
		e.lastDeliv/int64(time.Millisecond) == r.lastDeliv/int64(time.Millisecond)
}

// runEncoder appends runs to a checkpoint, merging consecutive messages in one state.
type runEncoder struct {
	buf   []byte
	count uint32
	run   checkpointRun // open while n > 0
	// What the next run's deltas are against.
	end     uint64
	offset  int64
	firstMs int64
	due     int64
}

func (w *runEncoder) add(e checkpointEntry) {
	if w.run.n > 0 && w.run.extends(&e) {
		w.run.n++
		return
	}
	w.flush()
	w.run = checkpointRun{checkpointEntry: e, n: 1}
}

// flush appends the open run, if any.
func (w *runEncoder) flush() {
	r := &w.run
	if r.n == 0 {
		return
	}
	firstMs, lastMs := r.firstDeliv/int64(time.Millisecond), r.lastDeliv/int64(time.Millisecond)
	var flags byte
	if firstMs != 0 {
		flags |= runDelivered
	}
	if lastMs != firstMs {
		flags |= runRedelivered
	}
	if r.due != 0 {
		flags |= runDue
	}
	if r.deadReason != reasonNone {
		flags |= runDying
	}
	b := append(w.buf, flags)
	b = binary.AppendUvarint(b, r.pos.Seq-w.end)
	b = binary.AppendVarint(b, r.pos.Offset-w.offset)
	b = binary.AppendUvarint(b, r.n-1)
	b = binary.AppendVarint(b, int64(r.id-r.pos.Seq))
	b = binary.AppendUvarint(b, uint64(r.attempts))
	if flags&runDelivered != 0 {
		b = binary.AppendVarint(b, firstMs-w.firstMs)
		w.firstMs = firstMs
	}
	if flags&runRedelivered != 0 {
		b = binary.AppendVarint(b, lastMs-firstMs)
	}
	if flags&runDue != 0 {
		b = binary.AppendVarint(b, r.due-w.due)
		w.due = r.due
	}
	if flags&runDying != 0 {
		b = append(b, r.deadReason)
	}
	w.buf = b
	w.count++
	w.end, w.offset = r.pos.Seq+r.n, r.pos.Offset
	r.n = 0
}

// encodeCheckpoint serialises the channel's state and returns it with the low-water mark it
// records, or ok false when nothing changed since the last checkpoint (unless force).
//
// The pending set can be large (a hundred thousand deferred messages), so it is encoded a
// chunk at a time, releasing the lock in between, and a checkpoint is never a long hold of
// the lock FINs and the scheduler need. That is consistent because of what a checkpoint
// promises: every message not finished when the encoding began is in it, or at or after its
// cursor. The cursor is taken first; messages the cursor passes later are not needed; a
// message finished during the encoding may or may not be included (a duplicate delivery
// after a crash, never a loss); and pending messages never move in the order, which is
// sorted by log position, so each chunk resumes after the last position encoded.
func (ch *Channel) encodeCheckpoint(force bool, gen uint64) (buf []byte, lowWater uint64, ok bool) {
	ch.mu.Lock()
	if !force && (!ch.dirty || ch.exiting) {
		// An exiting channel is being deleted (its file must stay gone) or closed for
		// shutdown, which writes its final checkpoint with force.
		ch.mu.Unlock()
		return nil, 0, false
	}
	cur := ch.cursor
	lowWater = ch.lowWaterLocked()
	ch.dirty = false
	w := runEncoder{buf: appendCheckpointHeader(make([]byte, 0, 256), gen, cur)}
	i := ch.orderAt
	for {
		n := 0
		for ; i < len(ch.order) && n < checkpointChunk; i++ {
			p := ch.order[i]
			if p.state == stateDone {
				continue
			}
			if p.pos.Seq >= cur.Seq {
				i = len(ch.order) // read after the encoding began: the cursor covers it
				break
			}
			if p.injected {
				continue // kept in the redrive file
			}
			e := checkpointEntry{id: p.id, pos: p.pos, attempts: p.attempts, firstDeliv: p.firstDeliv, lastDeliv: p.deliveredAt}
			if p.state == stateDying {
				e.deadReason = p.deadReason
			}
			if p.state == stateDeferred {
				e.due = p.due
			}
			w.add(e)
			n++
		}
		if i >= len(ch.order) {
			break
		}
		last := ch.order[i-1].pos.Seq
		ch.mu.Unlock()
		ch.mu.Lock()
		// The order may have been compacted meanwhile: find the first message after last.
		i = ch.orderAt + sort.Search(len(ch.order)-ch.orderAt, func(j int) bool {
			return ch.order[ch.orderAt+j].pos.Seq > last
		})
	}
	ch.mu.Unlock()
	return finishCheckpoint(&w), lowWater, true
}

// appendCheckpointHeader appends the magic, the generation, the cursor and a count of zero.
func appendCheckpointHeader(buf []byte, gen uint64, cur logstore.Pos) []byte {
	buf = append(buf, checkpointMagic...)
	buf = binary.BigEndian.AppendUint64(buf, gen)
	buf = binary.BigEndian.AppendUint64(buf, cur.Seq)
	buf = binary.BigEndian.AppendUint64(buf, uint64(cur.Offset))
	return binary.BigEndian.AppendUint32(buf, 0)
}

// finishCheckpoint flushes w's last run, fills in the count and appends the checksum.
func finishCheckpoint(w *runEncoder) []byte {
	w.flush()
	binary.BigEndian.PutUint32(w.buf[checkpointHeaderSize-4:], w.count)
	return appendCheckpointSum(w.buf)
}

// appendCheckpointSum appends the CRC-32C of everything before it.
func appendCheckpointSum(buf []byte) []byte {
	return binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf, crcTable))
}

// decodeCheckpoint returns a checkpoint's generation, cursor and runs. Its allocation is
// bounded by the file's size, whatever the file says.
func decodeCheckpoint(buf []byte) (gen uint64, cur logstore.Pos, runs []checkpointRun, err error) {
	if len(buf) < checkpointHeaderV2+4 {
		return 0, logstore.Pos{}, nil, errBadCheckpoint
	}
	body, sum := buf[:len(buf)-4], binary.BigEndian.Uint32(buf[len(buf)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return 0, logstore.Pos{}, nil, errBadCheckpoint
	}
	magic, b := string(buf[:len(checkpointMagic)]), body[len(checkpointMagic):]
	if magic == checkpointMagic {
		if len(b) < 28 {
			return 0, logstore.Pos{}, nil, errBadCheckpoint
		}
		gen, b = binary.BigEndian.Uint64(b), b[8:]
	}
	cur = logstore.Pos{Seq: binary.BigEndian.Uint64(b), Offset: int64(binary.BigEndian.Uint64(b[8:]))}
	n := int(binary.BigEndian.Uint32(b[16:]))
	b = b[20:]
	switch magic {
	case checkpointMagic, checkpointMagicV3:
		runs, err = decodeRuns(b, n, cur)
	case checkpointMagicV2:
		runs, err = decodeEntries(b, n, checkpointEntrySizeV2)
	case checkpointMagicV1:
		runs, err = decodeEntries(b, n, checkpointEntrySizeV1)
	default:
		err = errBadCheckpoint
	}
	if err != nil {
		return 0, logstore.Pos{}, nil, err
	}
	return gen, cur, runs, nil
}

// decodeRuns reads n runs, refusing anything the encoder would not have written.
func decodeRuns(b []byte, n int, cur logstore.Pos) ([]checkpointRun, error) {
	if n > len(b)/checkpointMinRun {
		return nil, errBadCheckpoint
	}
	runs := make([]checkpointRun, 0, n)
	d := varintReader{b: b}
	var w runEncoder // the deltas' bases, as the encoder kept them
	const maxMs = math.MaxInt64 / int64(time.Millisecond)
	for range n {
		flags := d.byte()
		var r checkpointRun
		r.pos.Seq = w.end + d.uvarint()
		r.pos.Offset = w.offset + d.varint()
		r.n = d.uvarint() + 1
		r.id = r.pos.Seq + uint64(d.varint())
		attempts := d.uvarint()
		r.attempts = uint16(attempts)
		firstMs, lastMs := int64(0), int64(0)
		if flags&runDelivered != 0 {
			firstMs = w.firstMs + d.varint()
			lastMs = firstMs
			w.firstMs = firstMs
		}
		if flags&runRedelivered != 0 {
			lastMs = firstMs + d.varint()
		}
		if flags&runDue != 0 {
			r.due = w.due + d.varint()
			w.due = r.due
		}
		if flags&runDying != 0 {
			r.deadReason = d.byte()
		}
		r.firstDeliv, r.lastDeliv = firstMs*int64(time.Millisecond), lastMs*int64(time.Millisecond)
		end := r.pos.Seq + r.n
		if d.bad || flags&^runFlagsAll != 0 || attempts > math.MaxUint16 ||
			r.pos.Seq < w.end || end <= r.pos.Seq || end > cur.Seq ||
			(flags&runDelivered != 0) != (firstMs != 0) || (flags&runRedelivered != 0) != (lastMs != firstMs) ||
			firstMs < -maxMs || firstMs > maxMs || lastMs < -maxMs || lastMs > maxMs ||
			(flags&runDue != 0) != (r.due != 0) || (flags&runDying != 0) != (r.deadReason != reasonNone) ||
			len(runs) > 0 && runs[len(runs)-1].extends(&r.checkpointEntry) {
			return nil, errBadCheckpoint
		}
		runs = append(runs, r)
		w.end, w.offset = end, r.pos.Offset
	}
	if len(d.b) != 0 {
		return nil, errBadCheckpoint
	}
	return runs, nil
}

// decodeEntries reads the n fixed-size entries of versions 1 and 2, one run each.
func decodeEntries(b []byte, n, size int) ([]checkpointRun, error) {
	if len(b) != n*size {
		return nil, errBadCheckpoint
	}
	runs := make([]checkpointRun, n)
	for i := range runs {
		e := b[i*size:]
		// The timestamp at e[24:] is the record's own, which a restore reads from the log.
		runs[i] = checkpointRun{n: 1, checkpointEntry: checkpointEntry{
			id:       binary.BigEndian.Uint64(e),
			pos:      logstore.Pos{Seq: binary.BigEndian.Uint64(e[8:]), Offset: int64(binary.BigEndian.Uint64(e[16:]))},
			due:      int64(binary.BigEndian.Uint64(e[32:])),
			attempts: binary.BigEndian.Uint16(e[40:]),
		}}
		if size == checkpointEntrySizeV2 {
			runs[i].firstDeliv = int64(binary.BigEndian.Uint64(e[42:]))
			runs[i].lastDeliv = int64(binary.BigEndian.Uint64(e[50:]))
			runs[i].deadReason = e[58]
		}
	}
	return runs, nil
}

// varintReader reads the fields of runs; bad is set, and zeros returned, once anything is
// truncated, overlong or not minimally encoded.
type varintReader struct {
	b   []byte
	bad bool
}

func (d *varintReader) byte() byte {
	if len(d.b) == 0 {
		d.bad = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *varintReader) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 || n != uvarintLen(v) {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *varintReader) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 || n != uvarintLen(uint64(v)<<1^uint64(v>>63)) {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

// uvarintLen is the length of v's minimal encoding: seven bits a byte.
func uvarintLen(v uint64) int {
	return max(1, (bits.Len64(v)+6)/7)
}

// checkpointSlots are the two files of a channel's checkpoint, <channel>.ckpt and
// <channel>.ckpt.1. Each is rewritten in place, never replaced: a busy channel checkpoints
// once a second, and a new file a second costs a page written to disk every time (the
// kernel writes a renamed-over file out at once), where a page rewritten in place is
// written out once per writeback period. A write in place can be cut short (a kill during
// the write, a power cut before it reached the disk), so the slots take turns: unsynced
// checkpoints overwrite the scratch slot, while the other keeps the last fsynced one, which
// retention trusts when it deletes segments. A synced write to the scratch slot makes it
// the synced one. A restart reads both and takes the readable one of the higher generation.
func checkpointSlots(path string) [2]string { return [2]string{path, path + ".1"} }

// checkpoint writes the channel's state under path (see checkpointSlots) if it changed since
// the last checkpoint, or always with force. With sync the newest checkpoint is fsynced,
// written now or before, which the topic asks for before it deletes log segments on the
// strength of it. The caller holds the topic's diskMu.
func (ch *Channel) checkpoint(path string, force, sync bool) error {
	slots := checkpointSlots(path)
	slot := slots[ch.ckptScratch]
	buf, lowWater, ok := ch.encodeCheckpoint(force, ch.ckptGen+1)
	if !ok {
		if sync && ch.ckptPending {
			if err := syncFile(slots[ch.ckptPendSlot], ch.ckptNewFile); err != nil {
				return fmt.Errorf("checkpoint channel %s: %w", ch, err)
			}
			// The slot just synced is kept; the other takes the unsynced writes.
			ch.ckptScratch = 1 - ch.ckptPendSlot
			ch.ckptPending, ch.ckptNewFile = false, false
			ch.mu.Lock()
			ch.ckptSyncedLowWater = ch.ckptLowWater
			ch.mu.Unlock()
		}
		return nil
	}
	created, err := writeFileInPlace(slot, buf, sync)
	if err != nil {
		ch.mu.Lock()
		ch.dirty = true
		ch.mu.Unlock()
		return fmt.Errorf("checkpoint channel %s: %w", ch, err)
	}
	ch.ckptGen++
	if sync {
		ch.ckptPending, ch.ckptNewFile = false, false
		ch.ckptScratch ^= 1
	} else {
		ch.ckptPending, ch.ckptPendSlot, ch.ckptNewFile = true, ch.ckptScratch, ch.ckptNewFile || created
	}
	ch.mu.Lock()
	ch.ckptLowWater = lowWater
	if sync {
		ch.ckptSyncedLowWater = lowWater
	}
	ch.mu.Unlock()
	return nil
}

// writeFileInPlace writes data over the start of path, creating it if need be, and cuts
// what follows. A write cut short leaves old and new bytes mixed, which the checksum
// refuses. With sync the file is fsynced, and its directory too if it was created.
func writeFileInPlace(path string, data []byte, sync bool) (created bool, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		created = true
	}
	if err != nil {
		return false, err
	}
	if _, err = f.WriteAt(data, 0); err == nil {
		err = f.Truncate(int64(len(data)))
	}
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && sync && created {
		err = syncDir(filepath.Dir(path))
	}
	return created, err
}

// syncFile fsyncs path, and its directory with dir.
func syncFile(path string, dir bool) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && dir {
		err = syncDir(filepath.Dir(path))
	}
	return err
}

// checkpointedLowWater is the low-water mark of the newest checkpoint known to be on disk:
// retention deletes no segment at or above it.
func (ch *Channel) checkpointedLowWater() uint64 {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.ckptSyncedLowWater
}

// restoreGap is how many records a restore reads over between two runs rather than start a
// new reader.
const restoreGap = 256

// restore rebuilds the delivery state recorded in a checkpoint: unfinished messages are read
// back from the log; deferred ones wait for their original due time, the others are ready at
// once with their attempts kept. A message the log no longer holds, or holds with another id,
// is counted lost.
//
// The records are read from the log first, with no lock held (the channel is not reachable
// yet anyway), then the state is built under the lock.
func (ch *Channel) restore(runs []checkpointRun, now int64) (lost uint64) {
	type found struct {
		entry logstore.Entry
		run   *checkpointRun
	}
	var (
		recs []found
		r    *logstore.Reader // shared by the runs, which are in log order
		ents []logstore.Entry
	)
	defer func() {
		if r != nil {
			_ = r.Close()
		}
	}()
	for i := range runs {
		run := &runs[i]
		if run.n == 1 { // a deferred message, usually: no reader needed
			rec, err := ch.topic.log.ReadAt(run.pos)
			if err != nil || rec.ID != run.id {
				lost++
				continue
			}
			recs = append(recs, found{logstore.Entry{Pos: run.pos, Record: rec}, run})
			continue
		}
		seq, end := run.pos.Seq, run.pos.Seq+run.n
		// Runs split by a few finished messages share a reader, which reads on over the
		// gap; a reader of its own reads a chunk, 64 KiB, however short its run.
		if r == nil || r.Pos().Seq > seq || seq-r.Pos().Seq > restoreGap {
			if r != nil {
				_ = r.Close()
			}
			r = ch.topic.log.NewReader(run.pos)
		}
		var err error
		for r.Pos().Seq < seq && err == nil {
			ents, err = r.ReadBelow(ents[:0], int(seq-r.Pos().Seq), seq)
			if len(ents) == 0 {
				break
			}
		}
		for seq < end && err == nil {
			// ReadBelow never returns a record past the run, whatever it steps over.
			if ents, err = r.ReadBelow(ents[:0], int(min(end-seq, 256)), end); len(ents) == 0 {
				break
			}
			for _, e := range ents {
				lost += e.Pos.Seq - seq // below the log's head, or skipped as corrupt
				seq = e.Pos.Seq + 1
				if e.ID != run.id+(e.Pos.Seq-run.pos.Seq) {
					lost++
					continue
				}
				recs = append(recs, found{e, run})
			}
		}
		if seq < end {
			lost += end - seq
		}
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for i := range recs {
		r := recs[i].run
		p := ch.newPending(&recs[i].entry)
		p.attempts = r.attempts
		p.firstDeliv = r.firstDeliv
		p.deliveredAt = r.lastDeliv
		ch.order = append(ch.order, p)
		ch.byID[p.id] = p
		if r.deadReason != reasonNone {
			ch.dieLocked(p, r.deadReason) // it was on its way: finish the move
			continue
		}
		if r.due > now {
			p.state = stateDeferred
			p.due = r.due
			p.detachBody(r.due - now)
			heap.Push(&ch.timers, p)
			ch.deferred++
			continue
		}
		p.state = stateReady
		ch.pushReady(p)
	}
	if len(runs) > 0 {
		ch.ckptLowWater = runs[0].pos.Seq
		// Trusted once fsynced: retention asks for that first (see restoreChannel).
		ch.ckptSyncedLowWater = runs[0].pos.Seq
	}
	ch.scheduleLocked()
	return lost
}

// writeFileAtomic replaces path with data through a temporary file and a rename, so a crash
// leaves either the old or the new content.
func writeFileAtomic(path string, data []byte, sync bool) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if sync {
		return syncDir(filepath.Dir(path))
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
