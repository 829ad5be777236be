package nsqd

import (
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"

	"github.com/ternmq/tern/nsqd/logstore"
)

// A checkpoint is a channel's delivery state on disk: its cursor and every message the cursor
// has passed that is not finished, with its attempts and, for deferred and delayed-requeue
// messages, its due time. Bodies are not copied: they stay in the topic log, which keeps every
// segment at or above the channel's checkpointed low-water mark.
//
// Layout (big-endian): magic "TCKP0002", cursor seq u64, cursor offset i64, count u32, then
// count entries of id u64, seq u64, offset i64, timestamp i64, due i64 (0: deliver at once),
// attempts u16, first and last delivery i64 (0: never delivered), dead-letter reason u8 (0: none; else
// the message is on its way to the dead-letter topic); last, a CRC-32C of everything before
// it. Version 1 ("TCKP0001") lacks the last three and is still read.
const (
	checkpointMagic       = "TCKP0002"
	checkpointMagicV1     = "TCKP0001"
	checkpointEntrySize   = 8*5 + 2 + 8 + 8 + 1
	checkpointEntrySizeV1 = 8*5 + 2
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errBadCheckpoint means a checkpoint file is truncated or fails its checksum.
var errBadCheckpoint = errors.New("bad checkpoint")

// checkpointEntry is one unfinished message in a checkpoint.
type checkpointEntry struct {
	id         uint64
	pos        logstore.Pos
	timestamp  int64
	due        int64
	attempts   uint16
	firstDeliv int64
	lastDeliv  int64
	deadReason uint8
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
func (ch *Channel) encodeCheckpoint(force bool) (buf []byte, lowWater uint64, ok bool) {
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
	buf = appendCheckpointHeader(make([]byte, 0, len(checkpointMagic)+20+(len(ch.byID)+1)*checkpointEntrySize+4), cur)
	countAt := len(buf) - 4 // the count, filled in at the end
	count := uint32(0)
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
			e := checkpointEntry{id: p.id, pos: p.pos, timestamp: p.timestamp, attempts: p.attempts, firstDeliv: p.firstDeliv, lastDeliv: p.deliveredAt}
			if p.state == stateDying {
				e.deadReason = p.deadReason
			}
			if p.state == stateDeferred {
				e.due = p.due
			}
			buf = appendCheckpointEntry(buf, e)
			count++
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
	binary.BigEndian.PutUint32(buf[countAt:], count)
	return appendCheckpointSum(buf), lowWater, true
}

// appendCheckpointHeader appends the magic, the cursor and a count of zero.
func appendCheckpointHeader(buf []byte, cur logstore.Pos) []byte {
	buf = append(buf, checkpointMagic...)
	buf = binary.BigEndian.AppendUint64(buf, cur.Seq)
	buf = binary.BigEndian.AppendUint64(buf, uint64(cur.Offset))
	return binary.BigEndian.AppendUint32(buf, 0)
}

func appendCheckpointEntry(buf []byte, e checkpointEntry) []byte {
	buf = binary.BigEndian.AppendUint64(buf, e.id)
	buf = binary.BigEndian.AppendUint64(buf, e.pos.Seq)
	buf = binary.BigEndian.AppendUint64(buf, uint64(e.pos.Offset))
	buf = binary.BigEndian.AppendUint64(buf, uint64(e.timestamp))
	buf = binary.BigEndian.AppendUint64(buf, uint64(e.due))
	buf = binary.BigEndian.AppendUint16(buf, e.attempts)
	buf = binary.BigEndian.AppendUint64(buf, uint64(e.firstDeliv))
	buf = binary.BigEndian.AppendUint64(buf, uint64(e.lastDeliv))
	return append(buf, e.deadReason)
}

// appendCheckpointSum appends the CRC-32C of everything before it.
func appendCheckpointSum(buf []byte) []byte {
	return binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf, crcTable))
}

func decodeCheckpoint(buf []byte) (logstore.Pos, []checkpointEntry, error) {
	head := len(checkpointMagic) + 20
	if len(buf) < head+4 {
		return logstore.Pos{}, nil, errBadCheckpoint
	}
	entrySize := checkpointEntrySize
	switch string(buf[:len(checkpointMagic)]) {
	case checkpointMagic:
	case checkpointMagicV1:
		entrySize = checkpointEntrySizeV1
	default:
		return logstore.Pos{}, nil, errBadCheckpoint
	}
	body, sum := buf[:len(buf)-4], binary.BigEndian.Uint32(buf[len(buf)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return logstore.Pos{}, nil, errBadCheckpoint
	}
	b := body[len(checkpointMagic):]
	cur := logstore.Pos{Seq: binary.BigEndian.Uint64(b), Offset: int64(binary.BigEndian.Uint64(b[8:]))}
	n := int(binary.BigEndian.Uint32(b[16:]))
	b = b[20:]
	if len(b) != n*entrySize {
		return logstore.Pos{}, nil, errBadCheckpoint
	}
	entries := make([]checkpointEntry, n)
	for i := range entries {
		e := b[i*entrySize:]
		entries[i] = checkpointEntry{
			id:        binary.BigEndian.Uint64(e),
			pos:       logstore.Pos{Seq: binary.BigEndian.Uint64(e[8:]), Offset: int64(binary.BigEndian.Uint64(e[16:]))},
			timestamp: int64(binary.BigEndian.Uint64(e[24:])),
			due:       int64(binary.BigEndian.Uint64(e[32:])),
			attempts:  binary.BigEndian.Uint16(e[40:]),
		}
		if entrySize == checkpointEntrySize {
			entries[i].firstDeliv = int64(binary.BigEndian.Uint64(e[42:]))
			entries[i].lastDeliv = int64(binary.BigEndian.Uint64(e[50:]))
			entries[i].deadReason = e[58]
		}
	}
	return cur, entries, nil
}

// checkpoint writes the channel's state to path if it changed since the last checkpoint (or
// always, with force). With sync the file and its directory are fsynced, which the topic asks
// for before it deletes log segments on the strength of this checkpoint.
func (ch *Channel) checkpoint(path string, force, sync bool) error {
	buf, lowWater, ok := ch.encodeCheckpoint(force)
	if !ok {
		return nil
	}
	if err := writeFileAtomic(path, buf, sync); err != nil {
		ch.mu.Lock()
		ch.dirty = true
		ch.mu.Unlock()
		return fmt.Errorf("checkpoint channel %s: %w", ch, err)
	}
	ch.mu.Lock()
	ch.ckptLowWater = lowWater
	ch.mu.Unlock()
	return nil
}

// checkpointedLowWater is the low-water mark the newest checkpoint on disk records.
func (ch *Channel) checkpointedLowWater() uint64 {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.ckptLowWater
}

// restore rebuilds the delivery state recorded in a checkpoint: unfinished messages are read
// back from the log; deferred ones wait for their original due time, the others are ready at
// once with their attempts kept.
//
// The records are read from the log first, with no lock held (the channel is not reachable
// yet anyway), then the state is built under the lock.
func (ch *Channel) restore(entries []checkpointEntry, now int64) (lost int) {
	recs := make([]logstore.Record, len(entries))
	found := make([]bool, len(entries))
	for i, e := range entries {
		rec, err := ch.topic.log.ReadAt(e.pos)
		if err != nil || rec.ID != e.id {
			lost++
			continue
		}
		recs[i], found[i] = rec, true
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for i, e := range entries {
		if !found[i] {
			continue
		}
		p := ch.newPending(&logstore.Entry{Pos: e.pos, Record: recs[i]})
		p.timestamp = e.timestamp
		p.attempts = e.attempts
		p.firstDeliv = e.firstDeliv
		p.deliveredAt = e.lastDeliv
		ch.order = append(ch.order, p)
		ch.byID[p.id] = p
		if e.deadReason != reasonNone {
			ch.dieLocked(p, e.deadReason) // it was on its way: finish the move
			continue
		}
		if e.due > now {
			p.state = stateDeferred
			p.due = e.due
			heap.Push(&ch.timers, p)
			ch.deferred++
			continue
		}
		p.state = stateReady
		ch.pushReady(p)
	}
	if len(entries) > 0 {
		ch.ckptLowWater = entries[0].pos.Seq
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
