package nsqd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/nsqd/logstore"
)

// encodeCheckpointEntries is the checkpoint a channel with cursor cur and these unfinished
// messages, in log order, writes.
func encodeCheckpointEntries(cur logstore.Pos, entries []checkpointEntry) []byte {
	w := runEncoder{buf: appendCheckpointHeader(nil, 1, cur)}
	for _, e := range entries {
		w.add(e)
	}
	return finishCheckpoint(&w)
}

// encodeCheckpointRuns writes runs as they are, merging none.
func encodeCheckpointRuns(gen uint64, cur logstore.Pos, runs []checkpointRun) []byte {
	w := runEncoder{buf: appendCheckpointHeader(nil, gen, cur)}
	for _, r := range runs {
		w.flush()
		w.run = r
	}
	return finishCheckpoint(&w)
}

// appendLegacyEntry appends an entry as versions 1 and 2 did; ts is the record's timestamp.
func appendLegacyEntry(b []byte, e checkpointEntry, ts int64, v2 bool) []byte {
	for _, v := range []uint64{e.id, e.pos.Seq, uint64(e.pos.Offset), uint64(ts), uint64(e.due)} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	b = binary.BigEndian.AppendUint16(b, e.attempts)
	if v2 {
		b = binary.BigEndian.AppendUint64(b, uint64(e.firstDeliv))
		b = binary.BigEndian.AppendUint64(b, uint64(e.lastDeliv))
		b = append(b, e.deadReason)
	}
	return b
}

// FuzzDecodeCheckpoint feeds the checkpoint decoder arbitrary files, as a disk or a power cut
// may leave them: it must refuse anything but a well-formed checkpoint with errBadCheckpoint,
// never panic or allocate beyond what the file holds, and what it accepts must encode back
// to the same bytes.
func FuzzDecodeCheckpoint(f *testing.F) {
	ms := int64(time.Millisecond)
	valid := encodeCheckpointEntries(logstore.Pos{Seq: 12, Offset: 4096}, []checkpointEntry{
		{id: 1, pos: logstore.Pos{Seq: 3, Offset: 96}, attempts: 2, firstDeliv: 5e5 * ms, lastDeliv: 6e5 * ms},
		{id: 2, pos: logstore.Pos{Seq: 4, Offset: 192}, attempts: 2, firstDeliv: 5e5 * ms, lastDeliv: 6e5 * ms},
		{id: 7, pos: logstore.Pos{Seq: 9, Offset: 288}, due: 2e18, attempts: 1},
		{id: 8, pos: logstore.Pos{Seq: 10, Offset: 0}, attempts: 3, firstDeliv: ms, lastDeliv: ms, deadReason: reasonTimeout},
	})
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add(encodeCheckpointEntries(logstore.Pos{}, nil))
	f.Add([]byte(checkpointMagic))
	f.Add([]byte{})
	huge := bytes.Clone(valid)
	binary.BigEndian.PutUint32(huge[checkpointHeaderSize-4:], 0xffffffff)
	f.Add(huge)
	v2 := binary.BigEndian.AppendUint64([]byte(checkpointMagicV2), 12) // no generation
	v2 = binary.BigEndian.AppendUint64(v2, 0)
	v2 = binary.BigEndian.AppendUint32(v2, 1)
	f.Add(appendCheckpointSum(appendLegacyEntry(v2, checkpointEntry{id: 1, pos: logstore.Pos{Seq: 3}}, 1, true)))
	f.Fuzz(func(t *testing.T, data []byte) {
		gen, cur, runs, err := decodeCheckpoint(data)
		if err != nil {
			if !errors.Is(err, errBadCheckpoint) {
				t.Fatalf("error %v is not errBadCheckpoint", err)
			}
			if runs != nil {
				t.Fatal("runs returned with an error")
			}
			return
		}
		if len(runs)*checkpointMinRun > len(data) {
			t.Fatalf("%d runs from %d bytes", len(runs), len(data))
		}
		if string(data[:len(checkpointMagic)]) != checkpointMagic {
			return // an old version, which is read but never written
		}
		if again := encodeCheckpointRuns(gen, cur, runs); !bytes.Equal(again, data) {
			t.Fatalf("accepted %x, which encodes back as %x", data, again)
		}
	})
}

func TestCheckpointRoundTrip(t *testing.T) {
	ms := int64(time.Millisecond)
	cur := logstore.Pos{Seq: 1 << 40, Offset: 1 << 20}
	entries := []checkpointEntry{
		{id: 5, pos: logstore.Pos{Seq: 1}, attempts: 65535},
		{id: 6, pos: logstore.Pos{Seq: 39, Offset: 1<<20 - 64}, due: 1 << 62, attempts: 1,
			firstDeliv: 77 * ms, lastDeliv: 88 * ms, deadReason: reasonTimeout},
		{id: 1, pos: logstore.Pos{Seq: 40}, due: -5, attempts: 0, firstDeliv: -ms, lastDeliv: -2 * ms},
		{id: 1<<64 - 1, pos: logstore.Pos{Seq: 1<<40 - 1, Offset: -1}, attempts: 7, lastDeliv: 3 * ms},
	}
	gen, gotCur, got, err := decodeCheckpoint(encodeCheckpointEntries(cur, entries))
	if err != nil || gen != 1 || gotCur != cur || len(got) != len(entries) {
		t.Fatalf("round trip: %v %v %v", gotCur, got, err)
	}
	for i, r := range got {
		if r.n != 1 || r.checkpointEntry != entries[i] {
			t.Errorf("run %d: %+v, want %+v", i, r, entries[i])
		}
	}
}

// TestCheckpointRuns checks that messages delivered in bursts take a few bytes between them,
// even with every tenth one finished (a version 2 entry took 59), and that delivery times are
// kept to the millisecond.
func TestCheckpointRuns(t *testing.T) {
	base := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC).UnixNano()
	var entries []checkpointEntry
	for i := range 2500 {
		if i%10 == 9 {
			continue // finished
		}
		at := base + int64(i/100)*int64(time.Millisecond) + int64(i%100)*1000 // 100 a millisecond
		entries = append(entries, checkpointEntry{id: uint64(i) + 100, pos: logstore.Pos{Seq: uint64(i), Offset: int64(i) * 130},
			attempts: 1, firstDeliv: at, lastDeliv: at})
	}
	buf := encodeCheckpointEntries(logstore.Pos{Seq: 3000}, entries)
	if perMsg := float64(len(buf)) / float64(len(entries)); perMsg > 1.5 {
		t.Errorf("%d bytes for %d messages in flight: %.2f a message", len(buf), len(entries), perMsg)
	}
	_, _, runs, err := decodeCheckpoint(buf)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	for _, r := range runs {
		for k := range r.n {
			e := entries[i]
			i++
			ms := e.firstDeliv / int64(time.Millisecond) * int64(time.Millisecond)
			if r.pos.Seq+k != e.pos.Seq || r.id+k != e.id || r.attempts != 1 || r.firstDeliv != ms || r.lastDeliv != ms {
				t.Fatalf("message %d of run %+v does not match %+v", k, r, e)
			}
		}
	}
	if i != len(entries) {
		t.Fatalf("runs hold %d messages, want %d", i, len(entries))
	}
}

// TestCheckpointVersion1 reads a checkpoint written before the first delivery time and the
// dead-letter reason were kept.
func TestCheckpointVersion1(t *testing.T) {
	b := []byte(checkpointMagicV1)
	b = binary.BigEndian.AppendUint64(b, 7)  // cursor seq
	b = binary.BigEndian.AppendUint64(b, 90) // cursor offset
	b = binary.BigEndian.AppendUint32(b, 1)
	want := checkpointEntry{id: 42, pos: logstore.Pos{Seq: 3, Offset: 60}, due: 2000, attempts: 4}
	b = appendCheckpointSum(appendLegacyEntry(b, want, 1000, false))
	gen, cur, runs, err := decodeCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	if gen != 0 || cur != (logstore.Pos{Seq: 7, Offset: 90}) || len(runs) != 1 || runs[0] != (checkpointRun{want, 1}) {
		t.Errorf("decoded %+v %+v", cur, runs)
	}
}

// TestCheckpointVersion2 reads a checkpoint of fixed-size entries with delivery times.
func TestCheckpointVersion2(t *testing.T) {
	b := []byte(checkpointMagicV2)
	b = binary.BigEndian.AppendUint64(b, 7)
	b = binary.BigEndian.AppendUint64(b, 90)
	b = binary.BigEndian.AppendUint32(b, 2)
	want := []checkpointEntry{
		{id: 42, pos: logstore.Pos{Seq: 3, Offset: 60}, attempts: 4, firstDeliv: 11, lastDeliv: 12, deadReason: reasonRequeue},
		{id: 43, pos: logstore.Pos{Seq: 4, Offset: 120}, attempts: 4, firstDeliv: 11, lastDeliv: 12, deadReason: reasonRequeue},
	}
	for _, e := range want {
		b = appendLegacyEntry(b, e, 1000, true)
	}
	gen, cur, runs, err := decodeCheckpoint(appendCheckpointSum(b))
	if err != nil {
		t.Fatal(err)
	}
	if gen != 0 || cur != (logstore.Pos{Seq: 7, Offset: 90}) || len(runs) != 2 || runs[0] != (checkpointRun{want[0], 1}) || runs[1] != (checkpointRun{want[1], 1}) {
		t.Errorf("decoded %+v %+v", cur, runs)
	}
}

// TestCheckpointRestoresRuns restores the runs of a checkpoint into a fresh channel: messages
// in flight across many log segments come back, and a run the log does not hold in full, or
// holds with other ids, counts what is missing as lost.
func TestCheckpointRestoresRuns(t *testing.T) {
	ch := newTestChannel(t, func(o *Options) { o.MaxBytesPerFile = 1024 })
	for b := range 20 {
		ch.publish(t, fmt.Sprint("b", b), 10)
	}
	if segs := len(ch.t.log.Segments()); segs < 5 {
		t.Fatalf("the log has %d segments; the test wants runs to cross segments", segs)
	}
	_, a := ch.subscribe(t, "a", 1000)
	want := ch.drain(a)
	if len(want) != 200 {
		t.Fatalf("%d messages in flight, want 200", len(want))
	}
	buf, _, _ := ch.encodeCheckpoint(true, 1)
	_, _, runs, err := decodeCheckpoint(buf)
	if err != nil {
		t.Fatal(err)
	}
	restoreInto := func(name string, runs []checkpointRun) (testChannel, uint64) {
		c, err := ch.t.getOrCreateChannel(name)
		if err != nil {
			t.Fatal(err)
		}
		return testChannel{Channel: c, t: ch.t, sched: ch.sched}, c.restore(runs, time.Now().UnixNano())
	}

	restored, lost := restoreInto("restored", runs)
	_, b := restored.subscribe(t, "b", 1000)
	if got := restored.drain(b); lost != 0 || !slices.Equal(got, want) {
		t.Fatalf("restored %d messages (%d lost) from %d runs, want the %d in flight", len(got), lost, len(runs), len(want))
	}

	past := slices.Clone(runs)
	past[len(past)-1].n += 5 // beyond the log's tail
	if _, lost := restoreInto("past", past); lost != 5 {
		t.Errorf("a run 5 past the log: %d lost, want 5", lost)
	}
	other := slices.Clone(runs)
	other[0].id++
	if _, lost := restoreInto("other", other); lost != other[0].n {
		t.Errorf("a run of other ids: %d lost, want %d", lost, other[0].n)
	}
}

// TestCheckpointSlots follows a channel's checkpoint files: unsynced checkpoints overwrite
// the scratch slot in place, a synced one makes it the slot retention trusts, and a restart
// takes the readable slot of the higher generation, falling back to the other when a write
// was cut short.
func TestCheckpointSlots(t *testing.T) {
	ch := newTestChannel(t, nil)
	ch.publish(t, "m", 10)
	_, a := ch.subscribe(t, "a", 5)
	ch.drain(a)
	path := ch.t.checkpointPath(ch.name)
	slots := checkpointSlots(path)
	gens := func() [2]int64 {
		t.Helper()
		var g [2]int64
		for i, p := range slots {
			g[i] = -1
			if b, err := os.ReadFile(p); err == nil {
				gen, _, _, err := decodeCheckpoint(b)
				if err != nil {
					t.Fatalf("%s: %v", p, err)
				}
				g[i] = int64(gen)
			}
		}
		return g
	}
	write := func(sync bool) {
		t.Helper()
		if err := ch.checkpoint(path, true, sync); err != nil {
			t.Fatal(err)
		}
	}
	first := gens()[0] // the channel's creation wrote one
	for range 3 {
		write(false)
	}
	if g := gens(); g != [2]int64{first + 3, -1} {
		t.Fatalf("after 3 unsynced checkpoints the slots hold generations %v, want [%d -1]", g, first+3)
	}
	write(true)
	write(false)
	if g := gens(); g != [2]int64{first + 4, first + 5} {
		t.Fatalf("after a synced and an unsynced checkpoint: %v, want [%d %d]", g, first+4, first+5)
	}
	// Nothing changed, but the newest is not synced: a sync request syncs it and flips.
	if err := ch.checkpoint(path, false, true); err != nil || ch.ckptScratch != 0 || ch.ckptPending {
		t.Fatalf("sync of the pending slot: %v, scratch %d, pending %v", err, ch.ckptScratch, ch.ckptPending)
	}
	if ck, err := ch.t.readCheckpoint(ch.name); err != nil || ck.slot != 1 || ck.gen != uint64(first+5) {
		t.Fatalf("restart reads slot %d generation %d (%v), want slot 1 generation %d", ck.slot, ck.gen, err, first+5)
	}
	// A write cut short in slot 1: the restart falls back to slot 0.
	b, _ := os.ReadFile(slots[1])
	if err := os.WriteFile(slots[1], b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if ck, err := ch.t.readCheckpoint(ch.name); err != nil || ck.slot != 0 || ck.gen != uint64(first+4) || len(ck.bad) != 0 {
		t.Fatalf("with slot 1 torn, restart reads slot %d generation %d (bad %v, %v), want slot 0 generation %d", ck.slot, ck.gen, ck.bad, err, first+4)
	}
}

// flipInLog flips a bit in the last byte of body where the log's segments hold it.
func flipInLog(t *testing.T, dir, body string) {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(dir, "log", "*.seg"))
	for _, seg := range segs {
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		if at := strings.Index(string(b), body); at >= 0 {
			b[at+len(body)-1] ^= 0x04
			if err := os.WriteFile(seg, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("%q not in the log", body)
}

// TestCheckpointRestoreOverDamage restores runs of which one holds a damaged record: the
// restore steps over it, and never brings back a record outside the runs, whether a
// finished message or one of the next run (which had it twice, and made the next
// checkpoint unreadable).
func TestCheckpointRestoreOverDamage(t *testing.T) {
	for _, tc := range []struct {
		name string
		gap  func(ch testChannel, sub *subscription, id uint64) // what becomes of the message at seq 10
	}{
		{"finished", func(ch testChannel, sub *subscription, id uint64) {
			if err := ch.finish(sub, id); err != nil {
				t.Fatal(err)
			}
		}},
		{"redelivered", func(ch testChannel, sub *subscription, id uint64) {
			if err := ch.requeue(sub, id, 0, time.Now().UnixNano()); err != nil {
				t.Fatal(err)
			}
			ch.drain(sub) // attempts 2: a run of its own
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := newTestChannel(t, func(o *Options) { o.MaxBytesPerFile = 1024 })
			ch.publish(t, "m", 30)
			_, a := ch.subscribe(t, "a", 1000)
			if got := ch.drain(a); len(got) != 30 {
				t.Fatalf("%d in flight, want 30", len(got))
			}
			ch.mu.Lock()
			id := ch.order[ch.orderAt+10].id
			ch.mu.Unlock()
			tc.gap(ch, a, id)
			buf, _, _ := ch.encodeCheckpoint(true, 1)
			_, _, runs, err := decodeCheckpoint(buf)
			if err != nil {
				t.Fatal(err)
			}
			ch.t.log.DropHot(1 << 62) // read from the segments
			flipInLog(t, ch.t.dir, "m-5")

			c, err := ch.t.getOrCreateChannel("restored")
			if err != nil {
				t.Fatal(err)
			}
			lost := c.restore(runs, time.Now().UnixNano())
			rc := testChannel{Channel: c, t: ch.t, sched: ch.sched}
			_, b := rc.subscribe(t, "b", 1000)
			got := rc.drain(b)
			want := 29
			if tc.name == "finished" {
				want = 28
			}
			seen := map[string]bool{}
			for _, g := range got {
				if seen[g] || g == "m-5" || (tc.name == "finished" && g == "m-10") {
					t.Errorf("%s restored wrongly (delivered: %v)", g, got)
				}
				seen[g] = true
			}
			if len(got) != want || lost != 1 {
				t.Errorf("restored %d with %d lost, want %d and 1", len(got), lost, want)
			}
			c.mu.Lock()
			c.dirty = true
			c.mu.Unlock()
			again, _, _ := c.encodeCheckpoint(true, 2)
			if _, _, _, err := decodeCheckpoint(again); err != nil {
				t.Errorf("the restored channel's checkpoint does not decode: %v", err)
			}
		})
	}
}
