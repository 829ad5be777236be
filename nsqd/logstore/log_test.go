package logstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"disk with hot tail", Options{MemRecords: 1000}},
		{"disk without hot tail", Options{}},
		{"disk with small hot tail", Options{MemRecords: 17}},
		{"hot tail bounded by bytes", Options{MemRecords: 1000, MemBytes: 2000}},
		{"memory only", Options{MemRecords: 1000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			if tt.name != "memory only" {
				opts.Dir = t.TempDir()
			}
			l := openLog(t, opts)
			n := 0
			for _, size := range []int{1, 7, 50, 1, 0, 100, 3} {
				mustAppend(t, l, testRecords(n, size), uint64(n))
				n += size
			}
			if l.Head() != 0 || l.Tail() != uint64(n) || l.Depth() != uint64(n) {
				t.Fatalf("head %d tail %d depth %d, want 0 %d %d", l.Head(), l.Tail(), l.Depth(), n, n)
			}
			if got, want := l.LastID(), testRecord(n-1).ID; got != want {
				t.Fatalf("last ID %d, want %d", got, want)
			}
			if l.Size() <= 0 {
				t.Fatalf("size %d", l.Size())
			}
			for _, batch := range []int{1, 13, 1000} {
				r := l.NewReader(l.HeadPos())
				entries := readAll(t, r, batch)
				if len(entries) != n {
					t.Fatalf("batch %d: read %d records, want %d", batch, len(entries), n)
				}
				checkEntries(t, entries, 0, 0)
				if r.Pos() != l.TailPos() || r.Skipped() != 0 {
					t.Fatalf("reader at %+v skipped %d, want %+v and 0", r.Pos(), r.Skipped(), l.TailPos())
				}
				must(t, r.Close())
			}
		})
	}
}

func TestBodiesAreCappedAndStable(t *testing.T) {
	for _, mem := range []int{0, 100} {
		t.Run(fmt.Sprintf("mem=%d", mem), func(t *testing.T) {
			l := openLog(t, Options{Dir: t.TempDir(), MemRecords: mem})
			mustAppend(t, l, testRecords(1, 10), 0)
			r := l.NewReader(l.HeadPos())
			entries := readAll(t, r, 3)
			// A caller appending to a body must not write over the next record.
			_ = append(entries[0].Body, "overwrite"...)
			mustAppend(t, l, testRecords(11, 10), 10)
			entries = append(entries, readAll(t, r, 100)...)
			checkEntries(t, entries, 0, 1)
		})
	}
}

func TestEmptyAppend(t *testing.T) {
	l := openLog(t, Options{Dir: t.TempDir()})
	mustAppend(t, l, testRecords(0, 3), 0)
	mustAppend(t, l, nil, 3)
	if l.Tail() != 3 {
		t.Fatalf("tail %d, want 3", l.Tail())
	}
}

func TestTooLarge(t *testing.T) {
	l := openLog(t, Options{Dir: t.TempDir(), MaxBodyBytes: 10})
	_, err := l.Append([]Record{{Body: make([]byte, 10)}, {Body: make([]byte, 11)}})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("append: %v, want ErrTooLarge", err)
	}
	if l.Tail() != 0 {
		t.Fatalf("tail %d after rejected append", l.Tail())
	}
	mustAppend(t, l, []Record{{Body: make([]byte, 10)}}, 0)
}

func TestSegmentRoll(t *testing.T) {
	dir := t.TempDir()
	const segBytes = 600
	l := openLog(t, Options{Dir: dir, SegmentBytes: segBytes})
	n := 0
	for _, size := range []int{3, 20, 1, 40, 9} {
		mustAppend(t, l, testRecords(n, size), uint64(n))
		n += size
	}
	big := Record{ID: 999, Body: make([]byte, 2*segBytes)}
	mustAppend(t, l, []Record{big}, uint64(n))
	mustAppend(t, l, testRecords(n+1, 5), uint64(n+1))

	entries := readAll(t, l.NewReader(l.HeadPos()), 7)
	if len(entries) != n+6 {
		t.Fatalf("read %d records, want %d", len(entries), n+6)
	}
	checkEntries(t, entries[:n], 0, 0)
	checkEntries(t, entries[n+1:], uint64(n+1), n+1)
	if !sameRecord(entries[n].Record, big) {
		t.Fatal("big record differs")
	}

	// Every segment starts exactly at a record with offset 0, holds records up to the next
	// base, and stays within SegmentBytes unless it holds a single record.
	files := segFiles(t, dir)
	if len(files) < 4 {
		t.Fatalf("only %d segments: %v", len(files), files)
	}
	var starts []string
	for _, e := range entries {
		if e.Pos.Offset == 0 {
			starts = append(starts, segName(e.Pos.Seq))
		}
	}
	if fmt.Sprint(starts) != fmt.Sprint(files) {
		t.Fatalf("segments %v, records at offset 0 %v", files, starts)
	}
	for _, f := range files {
		info, err := os.Stat(filepath.Join(dir, f))
		must(t, err)
		base, _ := parseSegName(f)
		if info.Size() > segBytes && base != uint64(n) {
			t.Fatalf("segment %s has %d bytes", f, info.Size())
		}
	}
	if want := segName(uint64(n)); !contains(files, want) {
		t.Fatalf("big record has no segment of its own: %v", files)
	}
	var total int64
	for _, f := range files {
		info, _ := os.Stat(filepath.Join(dir, f))
		total += info.Size()
	}
	if l.Size() != total {
		t.Fatalf("size %d, files hold %d", l.Size(), total)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestPosRuleAcrossRoll(t *testing.T) {
	for _, mem := range []int{0, 100} {
		t.Run(fmt.Sprintf("mem=%d", mem), func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, Options{Dir: dir, SegmentBytes: 300, MemRecords: mem})
			mustAppend(t, l, testRecords(0, 2), 0)
			at := l.TailPos()
			if at.Offset == 0 {
				t.Fatalf("tail pos %+v should have an offset", at)
			}
			parked := l.NewReader(at)
			if got, err := parked.Read(nil, 10); err != nil || len(got) != 0 {
				t.Fatalf("read at tail: %d records, %v", len(got), err)
			}
			// This record cannot fit the active segment: the log rolls, and the new segment's
			// base is the seq of the old tail position.
			big := Record{ID: 77, Body: make([]byte, 280)}
			mustAppend(t, l, []Record{big}, 2)
			if !contains(segFiles(t, dir), segName(2)) {
				t.Fatalf("no roll: %v", segFiles(t, dir))
			}
			for name, r := range map[string]*Reader{"parked": parked, "new": l.NewReader(at)} {
				got, err := r.Read(nil, 10)
				if err != nil || len(got) != 1 || !sameRecord(got[0].Record, big) {
					t.Fatalf("%s reader: %d records, %v", name, len(got), err)
				}
				if got[0].Pos != (Pos{Seq: 2}) {
					t.Fatalf("%s reader: pos %+v", name, got[0].Pos)
				}
			}
			for _, p := range []Pos{at, {Seq: 2, Offset: 12345}} {
				rec, err := l.ReadAt(p)
				if err != nil || !sameRecord(rec, big) {
					t.Fatalf("read at %+v: %v", p, err)
				}
			}
		})
	}
}

func TestReadAt(t *testing.T) {
	for _, mem := range []int{0, 20} {
		t.Run(fmt.Sprintf("mem=%d", mem), func(t *testing.T) {
			l := openLog(t, Options{Dir: t.TempDir(), SegmentBytes: 1000, MemRecords: mem})
			mustAppend(t, l, testRecords(0, 60), 0)
			mustAppend(t, l, []Record{{ID: 5000, Body: make([]byte, 3000)}}, 60)
			entries := readAll(t, l.NewReader(l.HeadPos()), 1000)
			for i, e := range entries {
				rec, err := l.ReadAt(e.Pos)
				if err != nil {
					t.Fatalf("read at %+v: %v", e.Pos, err)
				}
				if !sameRecord(rec, e.Record) {
					t.Fatalf("read at %+v: record %d differs", e.Pos, i)
				}
			}
			if _, err := l.ReadAt(l.TailPos()); !errors.Is(err, ErrNotFound) {
				t.Fatalf("read at tail: %v, want ErrNotFound", err)
			}
			if mem == 0 {
				bad := entries[5].Pos
				bad.Offset++
				if _, err := l.ReadAt(bad); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("read at %+v: %v, want ErrCorrupt", bad, err)
				}
				bad.Offset = 1 << 40
				if _, err := l.ReadAt(bad); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("read at %+v: %v, want ErrCorrupt", bad, err)
				}
			}
			must(t, l.Close())
			if _, err := l.ReadAt(entries[0].Pos); !errors.Is(err, ErrClosed) {
				t.Fatalf("read after close: %v", err)
			}
		})
	}
}

func TestTruncateFront(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, Options{Dir: dir, SegmentBytes: 400, MemRecords: 10})
	mustAppend(t, l, testRecords(0, 100), 0)
	before := segFiles(t, dir)
	sizeBefore := l.Size()
	behind := l.NewReader(l.HeadPos())
	if _, err := behind.Read(nil, 3); err != nil {
		t.Fatal(err)
	}

	// The segments to go are those whose next base is <= 50.
	var want int
	var head uint64
	for i := 0; i+1 < len(before); i++ {
		next, _ := parseSegName(before[i+1])
		if next <= 50 {
			want++
			head = next
		}
	}
	removed, err := l.TruncateFront(50)
	must(t, err)
	if removed != want || l.Head() != head || want == 0 {
		t.Fatalf("removed %d head %d, want %d %d", removed, l.Head(), want, head)
	}
	if got := segFiles(t, dir); len(got) != len(before)-want || got[0] != segName(head) {
		t.Fatalf("files %v after removing %d of %v", got, want, before)
	}
	if l.Size() >= sizeBefore || l.Depth() != 100-head {
		t.Fatalf("size %d (was %d) depth %d", l.Size(), sizeBefore, l.Depth())
	}
	entries := readAll(t, behind, 7)
	if behind.Skipped() != head-3 {
		t.Fatalf("skipped %d, want %d", behind.Skipped(), head-3)
	}
	checkEntries(t, entries, head, int(head))
	if _, err := l.ReadAt(Pos{Seq: head - 1}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("read below head: %v", err)
	}

	// Never the active segment, even when asked for everything.
	_, err = l.TruncateFront(1 << 60)
	must(t, err)
	files := segFiles(t, dir)
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	active, _ := parseSegName(files[0])
	if l.Head() != active || l.Tail() != 100 {
		t.Fatalf("head %d tail %d, active base %d", l.Head(), l.Tail(), active)
	}
	if n, err := l.TruncateFront(1 << 60); n != 0 || err != nil {
		t.Fatalf("second truncate: %d %v", n, err)
	}
	must(t, l.Close())
	l = openLog(t, Options{Dir: dir})
	if l.Head() != active || l.Tail() != 100 {
		t.Fatalf("reopened head %d tail %d, want %d 100", l.Head(), l.Tail(), active)
	}
	checkEntries(t, readAll(t, l.NewReader(l.HeadPos()), 100), active, int(active))
}

func TestTruncateFrontMemory(t *testing.T) {
	l := openLog(t, Options{MemRecords: 100})
	mustAppend(t, l, testRecords(0, 20), 0)
	n, err := l.TruncateFront(8)
	if n != 0 || err != nil || l.Head() != 8 || l.Depth() != 12 {
		t.Fatalf("truncate: %d %v head %d depth %d", n, err, l.Head(), l.Depth())
	}
	r := l.NewReader(Pos{})
	checkEntries(t, readAll(t, r, 5), 8, 8)
	if r.Skipped() != 8 {
		t.Fatalf("skipped %d", r.Skipped())
	}
}

func TestEmpty(t *testing.T) {
	tests := []struct {
		name string
		mem  bool
	}{{"disk", false}, {"memory", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := Options{SegmentBytes: 500, MemRecords: 10}
			if !tt.mem {
				opts.Dir = t.TempDir()
			}
			l := openLog(t, opts)
			mustAppend(t, l, testRecords(0, 30), 0)
			r := l.NewReader(l.HeadPos())
			if _, err := r.Read(nil, 25); err != nil {
				t.Fatal(err)
			}
			at := r.Pos().Seq
			must(t, l.Empty())
			if l.Head() != 30 || l.Tail() != 30 || l.Depth() != 0 || l.Size() != 0 {
				t.Fatalf("after empty: head %d tail %d depth %d size %d", l.Head(), l.Tail(), l.Depth(), l.Size())
			}
			if got := readAll(t, r, 10); len(got) != 0 || r.Skipped() != 30-at {
				t.Fatalf("reader got %d, skipped %d, want 0 and %d", len(got), r.Skipped(), 30-at)
			}
			must(t, l.Empty()) // already empty
			mustAppend(t, l, testRecords(30, 4), 30)
			checkEntries(t, readAll(t, r, 10), 30, 30)
			if tt.mem {
				return
			}
			if files := segFiles(t, opts.Dir); len(files) != 1 || files[0] != segName(30) {
				t.Fatalf("files %v", files)
			}
			must(t, l.Empty())
			must(t, l.Close())
			l = openLog(t, opts)
			if l.Head() != 34 || l.Tail() != 34 {
				t.Fatalf("reopened head %d tail %d, want 34 34", l.Head(), l.Tail())
			}
		})
	}
}

func TestMemoryOverflow(t *testing.T) {
	l := openLog(t, Options{MemRecords: 10})
	for i := 0; i < 25; i += 5 {
		mustAppend(t, l, testRecords(i, 5), uint64(i))
	}
	if l.Head() != 15 || l.Tail() != 25 || l.Depth() != 10 {
		t.Fatalf("head %d tail %d depth %d", l.Head(), l.Tail(), l.Depth())
	}
	var want int64
	for i := 15; i < 25; i++ {
		want += int64(recordSize(len(testRecord(i).Body)))
	}
	if l.Size() != want {
		t.Fatalf("size %d, want %d", l.Size(), want)
	}
	r := l.NewReader(Pos{})
	checkEntries(t, readAll(t, r, 4), 15, 15)
	if r.Skipped() != 15 {
		t.Fatalf("skipped %d", r.Skipped())
	}

	// The byte budget bounds it too.
	small := openLog(t, Options{MemRecords: 1000, MemBytes: 300})
	for i := range 50 {
		mustAppend(t, small, testRecords(i, 1), uint64(i))
		if small.Size() > 300 {
			t.Fatalf("size %d over the budget", small.Size())
		}
	}
	if small.Tail() != 50 || small.Depth() == 0 {
		t.Fatalf("tail %d depth %d", small.Tail(), small.Depth())
	}
	checkEntries(t, readAll(t, small.NewReader(small.HeadPos()), 10), small.Head(), int(small.Head()))
}

func TestMemoryBoundAtLeastOne(t *testing.T) {
	l := openLog(t, Options{})
	mustAppend(t, l, testRecords(0, 3), 0)
	if l.Depth() != 1 || l.Head() != 2 {
		t.Fatalf("depth %d head %d", l.Depth(), l.Head())
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 700, MemRecords: 50}
	l := openLog(t, opts)
	mustAppend(t, l, testRecords(0, 40), 0)
	mustAppend(t, l, testRecords(40, 3), 40)
	head, tail, tailPos, lastID, size := l.Head(), l.Tail(), l.TailPos(), l.LastID(), l.Size()
	must(t, l.Close())

	for _, call := range []struct {
		name string
		err  error
	}{
		{"append", func() error { _, err := l.Append(testRecords(0, 1)); return err }()},
		{"sync", l.Sync()},
		{"empty", l.Empty()},
		{"truncate", func() error { _, err := l.TruncateFront(5); return err }()},
		{"close", l.Close()},
		{"read", func() error { _, err := l.NewReader(Pos{}).Read(nil, 1); return err }()},
	} {
		if !errors.Is(call.err, ErrClosed) {
			t.Fatalf("%s after close: %v, want ErrClosed", call.name, call.err)
		}
	}

	l = openLog(t, opts)
	if l.Head() != head || l.Tail() != tail || l.TailPos() != tailPos || l.LastID() != lastID || l.Size() != size {
		t.Fatalf("reopened %d %d %+v %d %d, want %d %d %+v %d %d", l.Head(), l.Tail(), l.TailPos(), l.LastID(), l.Size(),
			head, tail, tailPos, lastID, size)
	}
	mustAppend(t, l, testRecords(43, 7), 43)
	checkEntries(t, readAll(t, l.NewReader(l.HeadPos()), 9), 0, 0)
	must(t, l.Close())

	// A crash right after a roll leaves an empty last segment: LastID comes from before it.
	must(t, os.WriteFile(filepath.Join(dir, segName(50)), nil, 0o644))
	l = openLog(t, opts)
	if l.Tail() != 50 || l.LastID() != testRecord(49).ID {
		t.Fatalf("tail %d last ID %d", l.Tail(), l.LastID())
	}
	mustAppend(t, l, testRecords(50, 2), 50)
	checkEntries(t, readAll(t, l.NewReader(l.HeadPos()), 9), 0, 0)
}

func TestDelete(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "topic")
	l := openLog(t, Options{Dir: dir})
	mustAppend(t, l, testRecords(0, 5), 0)
	must(t, l.Delete())
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dir still there: %v", err)
	}
	if _, err := l.Append(testRecords(0, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after delete: %v", err)
	}
	must(t, l.Delete())
}

func TestReaderPastTail(t *testing.T) {
	l := openLog(t, Options{Dir: t.TempDir()})
	mustAppend(t, l, testRecords(0, 5), 0)
	r := l.NewReader(Pos{Seq: 100, Offset: 1 << 20})
	if r.Pos() != l.TailPos() {
		t.Fatalf("reader at %+v, want tail %+v", r.Pos(), l.TailPos())
	}
	mustAppend(t, l, testRecords(5, 2), 5)
	checkEntries(t, readAll(t, r, 10), 5, 5)
}

// TestGroupCommit holds the write lock so appenders pile up, then checks that one write
// carried all of them.
func TestGroupCommit(t *testing.T) {
	l := openLog(t, Options{Dir: t.TempDir(), MemRecords: 100})
	mustAppend(t, l, testRecords(0, 1), 0)
	before := l.Stats()

	const appenders, each = 8, 5
	l.wmu.Lock()
	var wg sync.WaitGroup
	seqs := make([]uint64, appenders)
	errs := make([]error, appenders)
	for g := range appenders {
		wg.Go(func() {
			seqs[g], errs[g] = l.Append(testRecords(1+g*each, each))
		})
	}
	waitFor(t, "appenders to gather", func() bool {
		l.qmu.Lock()
		defer l.qmu.Unlock()
		return l.pending != nil && l.pending.n == appenders*each
	})
	l.wmu.Unlock()
	wg.Wait()

	after := l.Stats()
	if after.Batches-before.Batches != 1 || after.Records-before.Records != appenders*each {
		t.Fatalf("stats before %+v after %+v: want one batch of %d records", before, after, appenders*each)
	}
	seen := make(map[uint64]bool)
	for g := range appenders {
		if errs[g] != nil {
			t.Fatalf("appender %d: %v", g, errs[g])
		}
		if seqs[g] < 1 || seqs[g] > appenders*each-each+1 || (seqs[g]-1)%each != 0 || seen[seqs[g]] {
			t.Fatalf("appender %d got seq %d", g, seqs[g])
		}
		seen[seqs[g]] = true
		for i := range each {
			// All in the hot tail, where a seq alone finds a record.
			rec, err := l.ReadAt(Pos{Seq: seqs[g] + uint64(i)})
			if err != nil {
				t.Fatal(err)
			}
			checkRecord(t, rec, 1+g*each+i)
		}
	}
	entries := readAll(t, l.NewReader(l.HeadPos()), 100)
	if len(entries) != 1+appenders*each {
		t.Fatalf("read %d records", len(entries))
	}
}

// TestConcurrentAppendRead has writers append while readers tail the log; every record must
// be read exactly once by each reader, in an order consistent with each writer's appends.
func TestConcurrentAppendRead(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"disk, hot tail", Options{SegmentBytes: 4 << 10, MemRecords: 64}},
		{"disk, no hot tail", Options{SegmentBytes: 4 << 10}},
		{"disk, big hot tail", Options{SegmentBytes: 64 << 10, MemRecords: 1 << 16}},
		{"fsync always", Options{SegmentBytes: 16 << 10, MemRecords: 64, FsyncAlways: true}},
		{"memory", Options{MemRecords: 1 << 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			if tt.name != "memory" {
				opts.Dir = t.TempDir()
			}
			writers, appends := 8, 150
			if opts.FsyncAlways {
				appends = 20
			}
			l := openLog(t, opts)
			total := 0
			for g := range writers {
				for k := range appends {
					total += 1 + (g+k)%8
				}
			}

			var wg sync.WaitGroup
			results := make([][]Entry, 3)
			readErrs := make([]error, 3)
			for i := range results {
				wg.Go(func() {
					r := l.NewReader(Pos{})
					defer r.Close()
					var got []Entry
					for len(got) < total {
						var err error
						n := len(got)
						if got, err = r.Read(got, 1+i*50); err != nil {
							readErrs[i] = err
							return
						}
						if len(got) == n {
							runtime.Gosched() // at the tail: let the writers run
						}
					}
					results[i] = got
				})
			}
			appendErrs := make([]error, writers)
			for g := range writers {
				wg.Go(func() {
					for k := range appends {
						n := 1 + (g+k)%8
						recs := make([]Record, n)
						for j := range recs {
							recs[j] = concRecord(g, k, j)
						}
						if _, err := l.Append(recs); err != nil {
							appendErrs[g] = err
							return
						}
					}
				})
			}
			wg.Wait()
			for _, err := range append(appendErrs, readErrs...) {
				if err != nil {
					t.Fatal(err)
				}
			}
			if l.Tail() != uint64(total) {
				t.Fatalf("tail %d, want %d", l.Tail(), total)
			}
			for i, got := range results {
				checkConcurrent(t, fmt.Sprintf("reader %d", i), got, writers, total)
			}
			if opts.Dir != "" {
				must(t, l.Close())
				l = openLog(t, Options{Dir: opts.Dir})
				checkConcurrent(t, "after reopen", readAll(t, l.NewReader(Pos{}), 1000), writers, total)
			}
		})
	}
}

// concRecord is record j of append k by writer g; its ID says which.
func concRecord(g, k, j int) Record {
	id := uint64(g)<<40 | uint64(k)<<8 | uint64(j)
	body := make([]byte, (g*7+k*3+j)%70)
	for i := range body {
		body[i] = byte(id>>8) ^ byte(i)
	}
	return Record{ID: id, Timestamp: int64(id), Body: body}
}

func checkConcurrent(t *testing.T, who string, got []Entry, writers, total int) {
	t.Helper()
	if len(got) != total {
		t.Fatalf("%s: read %d records, want %d", who, len(got), total)
	}
	last := make([]int64, writers)
	for i := range last {
		last[i] = -1
	}
	for i, e := range got {
		if e.Pos.Seq != uint64(i) {
			t.Fatalf("%s: entry %d has seq %d", who, i, e.Pos.Seq)
		}
		g, k, j := int(e.ID>>40), int(e.ID>>8&(1<<32-1)), int(e.ID&0xff)
		if want := concRecord(g, k, j); !sameRecord(e.Record, want) {
			t.Fatalf("%s: seq %d: record differs from writer %d append %d record %d", who, i, g, k, j)
		}
		// Within a writer, order is (append, record) and nothing repeats or is missing.
		at := int64(k)<<8 | int64(j)
		if at <= last[g] {
			t.Fatalf("%s: seq %d: writer %d out of order", who, i, g)
		}
		if j > 0 && last[g] != at-1 {
			t.Fatalf("%s: seq %d: append split", who, i)
		}
		last[g] = at
	}
}

func TestFsyncModes(t *testing.T) {
	t.Run("always", func(t *testing.T) {
		l := openLog(t, Options{Dir: t.TempDir(), FsyncAlways: true})
		for i := range 5 {
			mustAppend(t, l, testRecords(i, 1), uint64(i))
		}
		if s := l.Stats(); s.Fsyncs < s.Batches || s.Batches != 5 {
			t.Fatalf("stats %+v", s)
		}
	})
	t.Run("every", func(t *testing.T) {
		l := openLog(t, Options{Dir: t.TempDir(), SyncEvery: 10})
		for i := range 25 {
			mustAppend(t, l, testRecords(i, 1), uint64(i))
		}
		if s := l.Stats(); s.Fsyncs != 2 {
			t.Fatalf("stats %+v, want 2 fsyncs", s)
		}
		must(t, l.Sync())
		must(t, l.Sync()) // nothing unsynced: no fsync
		if s := l.Stats(); s.Fsyncs != 3 {
			t.Fatalf("stats %+v, want 3 fsyncs", s)
		}
	})
}

// TestAppendFailure injects write and truncate failures: the whole batch fails, nothing of
// it is kept, and the log goes on once the disk recovers.
func TestAppendFailure(t *testing.T) {
	enospc := &os.PathError{Op: "write", Err: syscall.ENOSPC}
	tests := []struct {
		name         string
		failWrite    int // which write of the batch fails (1 = first)
		failTruncate bool
	}{
		{"first write torn", 1, false},
		{"write after a roll", 2, false},
		{"truncate fails too", 1, true},
		{"roll and truncate fail", 2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, Options{Dir: dir, SegmentBytes: 1000, MemRecords: 10})
			mustAppend(t, l, testRecords(0, 5), 0)
			tailPos, size, files := l.TailPos(), l.Size(), segFiles(t, dir)

			writes := 0
			l.hooks.writeAt = func(f *os.File, b []byte, off int64) (int, error) {
				writes++
				if writes < tt.failWrite {
					return f.WriteAt(b, off)
				}
				n, _ := f.WriteAt(b[:len(b)/2], off) // a torn write: half of it lands
				return n, enospc
			}
			truncFails := 0
			if tt.failTruncate {
				l.hooks.truncate = func(f *os.File, size int64) error {
					truncFails++
					return enospc
				}
			}
			// Three appenders in one batch, large enough to roll.
			l.wmu.Lock()
			var wg sync.WaitGroup
			errs := make([]error, 3)
			for g := range errs {
				wg.Go(func() { _, errs[g] = l.Append(testRecords(100+g*20, 20)) })
			}
			waitFor(t, "batch", func() bool {
				l.qmu.Lock()
				defer l.qmu.Unlock()
				return l.pending != nil && l.pending.n == 60
			})
			l.wmu.Unlock()
			wg.Wait()
			for g, err := range errs {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("appender %d: %v, want ENOSPC", g, err)
				}
			}
			if l.TailPos() != tailPos || l.Size() != size {
				t.Fatalf("tail %+v size %d after failure, want %+v %d", l.TailPos(), l.Size(), tailPos, size)
			}
			if got := diskSize(t, dir); got != size && !tt.failTruncate {
				t.Fatalf("files hold %d bytes after the failed write was undone, want %d", got, size)
			}
			l.hooks.writeAt = nil
			if tt.failTruncate {
				if _, err := l.Append(testRecords(5, 1)); !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("append with repair pending: %v", err)
				}
				l.hooks.truncate = nil
			}
			if got := segFiles(t, dir); fmt.Sprint(got) != fmt.Sprint(files) {
				t.Fatalf("files %v, want %v", got, files)
			}
			mustAppend(t, l, testRecords(5, 5), 5)
			if got := diskSize(t, dir); got != l.Size() {
				t.Fatalf("files hold %d bytes, log %d", got, l.Size())
			}
			checkEntries(t, readAll(t, l.NewReader(Pos{}), 3), 0, 0)
			must(t, l.Close())
			l = openLog(t, Options{Dir: dir})
			if l.Tail() != 10 {
				t.Fatalf("reopened tail %d, want 10", l.Tail())
			}
			checkEntries(t, readAll(t, l.NewReader(Pos{}), 3), 0, 0)
		})
	}
}

// TestConcurrentRetention runs appenders, tailing readers, TruncateFront and Empty all at
// once: readers never see a record out of order or damaged, and every record is either
// read or counted as skipped.
func TestConcurrentRetention(t *testing.T) {
	for _, mem := range []int{0, 32} {
		t.Run(fmt.Sprintf("mem=%d", mem), func(t *testing.T) {
			l := openLog(t, Options{Dir: t.TempDir(), SegmentBytes: 2048, MemRecords: mem})
			var writers, others sync.WaitGroup
			var done atomic.Bool
			errs := make(chan error, 16)
			for g := range 4 {
				writers.Go(func() {
					for k := range 300 {
						recs := make([]Record, 1+(g+k)%5)
						for j := range recs {
							recs[j] = concRecord(g, k, j)
						}
						if _, err := l.Append(recs); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			others.Go(func() {
				for i := 0; !done.Load(); i++ {
					var err error
					if i%40 == 39 {
						err = l.Empty()
					} else if tail := l.Tail(); tail > 30 {
						_, err = l.TruncateFront(tail - 30)
					}
					if err != nil {
						errs <- err
						return
					}
					runtime.Gosched()
				}
			})
			for i := range 3 {
				others.Go(func() {
					r := l.NewReader(Pos{})
					var read, next uint64 // next: lowest seq the next entry may have
					var buf []Entry
					for {
						finished := done.Load()
						skipped, from := r.Skipped(), r.Pos().Seq
						var err error
						buf, err = r.Read(buf[:0], 1+i*40)
						if err != nil {
							errs <- err
							return
						}
						// The reader moved by exactly what it returned and what it skipped.
						if moved := r.Pos().Seq - from; moved != uint64(len(buf))+r.Skipped()-skipped {
							errs <- fmt.Errorf("reader %d: moved %d, read %d, skipped %d", i, moved, len(buf), r.Skipped()-skipped)
							return
						}
						for _, e := range buf {
							g, k, j := int(e.ID>>40), int(e.ID>>8&(1<<32-1)), int(e.ID&0xff)
							if e.Pos.Seq < next || !sameRecord(e.Record, concRecord(g, k, j)) {
								errs <- fmt.Errorf("reader %d: bad entry at seq %d (expected >= %d)", i, e.Pos.Seq, next)
								return
							}
							next = e.Pos.Seq + 1
						}
						read += uint64(len(buf))
						if finished && len(buf) == 0 {
							if read+r.Skipped() != l.Tail() {
								errs <- fmt.Errorf("reader %d: read %d + skipped %d != tail %d", i, read, r.Skipped(), l.Tail())
							}
							return
						}
						if len(buf) == 0 {
							runtime.Gosched()
						}
					}
				})
			}
			writers.Wait()
			done.Store(true)
			others.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
		})
	}
}
