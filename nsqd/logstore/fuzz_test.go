package logstore

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzRecover opens a log whose only segment holds arbitrary bytes. Open must not panic and
// must leave a consistent log: the file cut back to a prefix of the input, holding exactly
// the CRC-valid records readers return and the lone corrupt records they step over, the
// damage counted, and appends and a reopen working after it.
func FuzzRecover(f *testing.F) {
	var valid []byte
	for i := range 6 {
		r := testRecord(i)
		valid = appendRecord(valid, &r)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)-5])
	f.Add(append(bytes.Clone(valid), 0, 0, 0, 40, 1, 2, 3))
	damaged := bytes.Clone(valid)
	damaged[40] ^= 1
	f.Add(damaged)
	damaged = bytes.Clone(valid)
	damaged[3] ^= 4 // a length
	f.Add(damaged)
	damaged = bytes.Clone(valid)
	damaged[10] ^= 4
	damaged[len(damaged)-10] ^= 4
	f.Add(damaged)
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 28})
	f.Add(bytes.Repeat([]byte{0xff}, 100))

	const base = 1000
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, segName(base))
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		opts := Options{Dir: dir, MaxBodyBytes: 300, SegmentBytes: 4096}
		l, err := Open(opts)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		defer l.Close()
		if l.Head() != base {
			t.Fatalf("head %d", l.Head())
		}
		kept, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(data, kept) {
			t.Fatal("recovered file is not a prefix of the input")
		}
		r := l.NewReader(Pos{Seq: base})
		entries := readAll(t, r, 64)
		if uint64(len(entries))+r.Skipped() != l.Depth() {
			t.Fatalf("read %d records, skipped %d, depth %d", len(entries), r.Skipped(), l.Depth())
		}
		end := checkWalk(t, kept, base, entries, 300)
		if end.Seq != l.Tail() || end.Offset != int64(len(kept)) {
			t.Fatalf("records end at %+v, log at %d with %d bytes", end, l.Tail(), len(kept))
		}
		if len(entries) == 0 && r.Skipped() > 0 {
			t.Fatal("kept corrupt records and nothing valid")
		}
		wantLast := uint64(0)
		if len(entries) > 0 {
			wantLast = entries[len(entries)-1].ID
		}
		if l.LastID() != wantLast {
			t.Fatalf("last ID %d, want %d", l.LastID(), wantLast)
		}
		// Every byte of the input is accounted for: kept, cut as torn, or cut as corrupt
		// and saved aside.
		stats := l.Stats()
		saved, _ := filepath.Glob(path + ".*.corrupt")
		cut := uint64(len(data) - len(kept))
		switch {
		case len(saved) > 0:
			if len(saved) != 1 || stats.TornBytes != 0 || stats.CorruptRecords < r.Skipped()+2 {
				t.Fatalf("saved %v, skipped %d, stats %+v", saved, r.Skipped(), stats)
			}
		case stats.TornBytes != cut || stats.CorruptRecords != r.Skipped():
			t.Fatalf("cut %d bytes, skipped %d, stats %+v", cut, r.Skipped(), stats)
		}

		rec := testRecord(7)
		seq, err := l.Append([]Record{rec})
		if err != nil || seq != l.Tail()-1 || seq != base+uint64(len(entries))+r.Skipped() {
			t.Fatalf("append: seq %d, %v", seq, err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l, err = Open(opts)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer l.Close()
		r2 := l.NewReader(Pos{Seq: base})
		again := readAll(t, r2, 64)
		if len(again) != len(entries)+1 || !sameRecord(again[len(entries)].Record, rec) || again[len(entries)].Pos.Seq != seq {
			t.Fatalf("after append and reopen: %d records", len(again))
		}
		if s := l.Stats(); r2.Skipped() != r.Skipped() || s.CorruptRecords != r.Skipped() || s.TornBytes != 0 {
			t.Fatalf("after append and reopen: skipped %d, stats %+v", r2.Skipped(), s)
		}
	})
}

// checkWalk checks the entries a reader returned from a segment that starts at seq base and
// holds data: each starts where the previous one ended (with the seq after it), or one lone
// corrupt record later, and re-encodes to the bytes it was read from. It returns the
// position after the last entry.
func checkWalk(t *testing.T, data []byte, base uint64, entries []Entry, maxBody int) Pos {
	t.Helper()
	cur := Pos{Seq: base}
	for _, e := range entries {
		switch e.Pos.Seq {
		case cur.Seq:
		case cur.Seq + 1:
			n, ok := restLen(data[cur.Offset:], maxBody)
			if !ok || cur.Offset+int64(n) != e.Pos.Offset {
				t.Fatalf("skipped one record at %+v, next entry at %+v", cur, e.Pos)
			}
			if _, ok := decodeRecord(data[cur.Offset:e.Pos.Offset]); ok {
				t.Fatalf("skipped a valid record at %+v", cur)
			}
		default:
			t.Fatalf("entry at %+v after %+v", e.Pos, cur)
		}
		if e.Pos.Seq == base && e.Pos.Offset != 0 || e.Pos.Seq != base && e.Pos.Offset < cur.Offset {
			t.Fatalf("entry at %+v after %+v", e.Pos, cur)
		}
		enc := appendRecord(nil, &e.Record)
		if end := e.Pos.Offset + int64(len(enc)); end > int64(len(data)) || !bytes.Equal(enc, data[e.Pos.Offset:end]) {
			t.Fatalf("entry at %+v does not re-encode to the bytes on disk", e.Pos)
		}
		cur = Pos{Seq: e.Pos.Seq + 1, Offset: e.Pos.Offset + int64(len(enc))}
	}
	return cur
}

// FuzzReadSealed gives a log a sealed segment of arbitrary bytes that should hold k+1 records,
// followed by an active segment holding one. Readers must not panic or get stuck; they must
// return only records stored intact at the positions they give, skip nothing but a lone
// corrupt record or the rest of the segment, and account for every seq. A second reader must
// agree with the first, and the damage is counted once.
func FuzzReadSealed(f *testing.F) {
	var valid []byte
	for i := range 6 {
		r := testRecord(i)
		valid = appendRecord(valid, &r)
	}
	f.Add(valid, uint8(5)) // k is the records less one
	f.Add(valid, uint8(4))
	f.Add(valid, uint8(9))
	f.Add(valid[:len(valid)-5], uint8(5))
	damaged := bytes.Clone(valid)
	damaged[40] ^= 1
	f.Add(damaged, uint8(5))
	damaged = bytes.Clone(valid)
	damaged[len(damaged)-1] ^= 1
	f.Add(damaged, uint8(5))
	damaged = bytes.Clone(valid)
	damaged[30] ^= 0x10
	damaged[len(valid)/2] ^= 0x40
	f.Add(damaged, uint8(5))
	f.Add([]byte{}, uint8(0))
	f.Add(bytes.Repeat([]byte{0xff}, 100), uint8(3))

	const base = 500
	f.Fuzz(func(t *testing.T, data []byte, k uint8) {
		dir := t.TempDir()
		next := base + 1 + uint64(k%64)
		must(t, os.WriteFile(filepath.Join(dir, segName(base)), data, 0o644))
		last := testRecord(1000)
		must(t, os.WriteFile(filepath.Join(dir, segName(next)), appendRecord(nil, &last), 0o644))
		l, err := Open(Options{Dir: dir, MaxBodyBytes: 300, SegmentBytes: 4096})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		defer l.Close()

		r := l.NewReader(l.HeadPos())
		entries := readAll(t, r, 3)
		if uint64(len(entries))+r.Skipped() != next+1-base {
			t.Fatalf("read %d, skipped %d, of %d records", len(entries), r.Skipped(), next+1-base)
		}
		if len(entries) == 0 || entries[len(entries)-1].Pos.Seq != next || !sameRecord(entries[len(entries)-1].Record, last) {
			t.Fatal("the active segment's record is missing")
		}
		checkWalk(t, data, base, entries[:len(entries)-1], 300)
		counted := l.Stats().CorruptRecords
		if counted != r.Skipped() {
			t.Fatalf("counted %d corrupt records, reader skipped %d", counted, r.Skipped())
		}

		r2 := l.NewReader(l.HeadPos())
		again := readAll(t, r2, 64)
		if r2.Skipped() != r.Skipped() || len(again) != len(entries) {
			t.Fatalf("second reader: read %d, skipped %d; first %d, %d", len(again), r2.Skipped(), len(entries), r.Skipped())
		}
		for i, e := range again {
			if e.Pos != entries[i].Pos || !sameRecord(e.Record, entries[i].Record) {
				t.Fatalf("second reader: entry %d at %+v, first at %+v", i, e.Pos, entries[i].Pos)
			}
			if rec, err := l.ReadAt(e.Pos); err != nil || !sameRecord(rec, e.Record) {
				t.Fatalf("read at %+v: %v", e.Pos, err)
			}
		}
		if got := l.Stats().CorruptRecords; got != counted {
			t.Fatalf("counted %d corrupt records after the second reader, %d before", got, counted)
		}
	})
}
