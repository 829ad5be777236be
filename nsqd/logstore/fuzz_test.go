package logstore

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzRecover opens a log whose only segment holds arbitrary bytes. Open must not panic and
// must leave a consistent log: the file cut back to a prefix of the input, holding exactly
// the CRC-valid records readers return, and appends working after it.
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
		entries := readAll(t, l.NewReader(Pos{}), 64)
		if uint64(len(entries)) != l.Depth() {
			t.Fatalf("read %d records, depth %d", len(entries), l.Depth())
		}
		var off int64
		for i, e := range entries {
			if e.Pos != (Pos{Seq: base + uint64(i), Offset: off}) {
				t.Fatalf("entry %d at %+v, want offset %d", i, e.Pos, off)
			}
			enc := appendRecord(nil, &e.Record)
			if !bytes.Equal(enc, kept[off:off+int64(len(enc))]) {
				t.Fatalf("entry %d does not re-encode to the bytes on disk", i)
			}
			off += int64(len(enc))
		}
		if off != int64(len(kept)) {
			t.Fatalf("records take %d bytes, file has %d", off, len(kept))
		}
		wantLast := uint64(0)
		if len(entries) > 0 {
			wantLast = entries[len(entries)-1].ID
		}
		if l.LastID() != wantLast {
			t.Fatalf("last ID %d, want %d", l.LastID(), wantLast)
		}

		r := testRecord(7)
		seq, err := l.Append([]Record{r})
		if err != nil || seq != base+uint64(len(entries)) {
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
		again := readAll(t, l.NewReader(Pos{}), 64)
		if len(again) != len(entries)+1 || !sameRecord(again[len(entries)].Record, r) {
			t.Fatalf("after append and reopen: %d records", len(again))
		}
	})
}
