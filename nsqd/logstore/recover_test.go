package logstore

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// tornFixture writes a closed log of several segments whose active segment holds a few
// records, and returns its directory, the records written, the name of the active segment
// and the offset of its last record.
func tornFixture(t *testing.T) (dir string, n int, active string, lastOff int64) {
	t.Helper()
	dir = t.TempDir()
	l := openLog(t, Options{Dir: dir, SegmentBytes: 1500})
	for n < 40 {
		mustAppend(t, l, testRecords(n, 4), uint64(n))
		n += 4
	}
	for {
		files := segFiles(t, dir)
		if base, _ := parseSegName(files[len(files)-1]); uint64(n)-base >= 4 {
			break
		}
		mustAppend(t, l, testRecords(n, 1), uint64(n))
		n++
	}
	entries := readAll(t, l.NewReader(Pos{}), 100)
	must(t, l.Close())
	files := segFiles(t, dir)
	if len(files) < 3 {
		t.Fatalf("fixture has %d segments", len(files))
	}
	active = files[len(files)-1]
	base, _ := parseSegName(active)
	if uint64(n)-base < 4 {
		t.Fatalf("active segment holds %d records", uint64(n)-base)
	}
	return dir, n, active, entries[n-1].Pos.Offset
}

// checkRecovered opens dir and checks that it holds exactly the first n test records, that
// appending still works, and that the result survives another reopen. It returns the
// log's Stats after the first Open.
func checkRecovered(t *testing.T, dir string, n int, logger *slog.Logger) Stats {
	t.Helper()
	l, err := Open(Options{Dir: dir, SegmentBytes: 1500, Logger: logger})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer l.Close()
	stats := l.Stats()
	if l.Tail() != uint64(n) || l.LastID() != testRecord(n-1).ID {
		t.Fatalf("tail %d last ID %d, want %d %d", l.Tail(), l.LastID(), n, testRecord(n-1).ID)
	}
	if got := diskSize(t, dir); got != l.Size() {
		t.Fatalf("files hold %d bytes, log %d: the damage was not cut off", got, l.Size())
	}
	checkEntries(t, readAll(t, l.NewReader(Pos{}), 1000), 0, 0)
	mustAppend(t, l, testRecords(n, 2), uint64(n))
	must(t, l.Close())
	l2 := openLog(t, Options{Dir: dir})
	entries := readAll(t, l2.NewReader(Pos{}), 1000)
	if len(entries) != n+2 {
		t.Fatalf("after append and reopen: %d records, want %d", len(entries), n+2)
	}
	checkEntries(t, entries, 0, 0)
	if s := l2.Stats(); s.CorruptRecords != 0 || s.TornBytes != 0 {
		t.Fatalf("reopen found damage again: %+v", s)
	}
	return stats
}

// TestTornTail cuts the active segment at every byte offset of its last record: the
// complete records all survive, and the cut is reported.
func TestTornTail(t *testing.T) {
	src, n, active, lastOff := tornFixture(t)
	full, err := os.ReadFile(filepath.Join(src, active))
	must(t, err)
	for cut := lastOff; cut <= int64(len(full)); cut++ {
		dir := copyDir(t, src)
		must(t, os.Truncate(filepath.Join(dir, active), cut))
		logger, sink := captureLogger()
		want := n - 1
		if cut == int64(len(full)) {
			want = n
		}
		stats := checkRecovered(t, dir, want, logger)
		warned := sink.find("level=WARN", "cut torn tail", fmt.Sprintf("bytes_cut=%d", cut-lastOff))
		torn := cut > lastOff && cut < int64(len(full))
		if torn != (len(warned) == 1) {
			t.Fatalf("cut at %d: log:\n%s", cut, sink.dump())
		}
		// A torn tail is not corruption: it counts in TornBytes only.
		if wantTorn := uint64(cut - lastOff); !torn && stats.TornBytes != 0 ||
			torn && stats.TornBytes != wantTorn || stats.CorruptRecords != 0 {
			t.Fatalf("cut at %d: stats %+v", cut, stats)
		}
		if got := segFiles(t, dir); len(got) != len(segFiles(t, src)) {
			t.Fatalf("cut at %d: segments %v", cut, got)
		}
	}
}

// TestCorruptTail flips each byte of the last record in turn: the record is cut, the
// others survive, and nothing is saved aside since nothing valid follows the damage.
func TestCorruptTail(t *testing.T) {
	src, n, active, lastOff := tornFixture(t)
	full, err := os.ReadFile(filepath.Join(src, active))
	must(t, err)
	for at := lastOff; at < int64(len(full)); at++ {
		for _, mask := range []byte{0x01, 0x80} {
			dir := copyDir(t, src)
			b := bytes.Clone(full)
			b[at] ^= mask
			must(t, os.WriteFile(filepath.Join(dir, active), b, 0o644))
			logger, sink := captureLogger()
			stats := checkRecovered(t, dir, n-1, logger)
			if len(sink.find("cut torn tail")) != 1 {
				t.Fatalf("flip at %d: log:\n%s", at, sink.dump())
			}
			if stats.TornBytes != uint64(int64(len(full))-lastOff) || stats.CorruptRecords != 0 {
				t.Fatalf("flip at %d: stats %+v", at, stats)
			}
			if saved, _ := filepath.Glob(filepath.Join(dir, "*.corrupt")); len(saved) != 0 {
				t.Fatalf("flip at %d: saved %v", at, saved)
			}
		}
	}
}

// activeRecords returns the offsets of the records of the active segment of a closed log.
func activeRecords(t *testing.T, dir, active string) []int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, active))
	must(t, err)
	var offs []int
	for off := 0; off < len(b); off += lenSize + int(binary.BigEndian.Uint32(b[off:])) {
		offs = append(offs, off)
	}
	return offs
}

// TestCorruptRecordInActive flips a bit of a record of the active segment that valid
// records follow: Open keeps the segment whole and the record in its seq, readers step over
// it, and appends and later reopens carry on as if nothing happened. It is counted and
// logged once per Open.
func TestCorruptRecordInActive(t *testing.T) {
	tests := []struct {
		name string
		rec  int // index in the active segment
		at   func(n int) int
	}{
		{"last byte", 1, func(n int) int { return n - 1 }},
		{"checksum field", 1, func(int) int { return lenSize }},
		{"id field", 1, func(int) int { return crcFrom + 7 }},
		{"first record", 0, func(int) int { return headerSize - 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, n, active, _ := tornFixture(t)
			path := filepath.Join(dir, active)
			offs := activeRecords(t, dir, active)
			full, err := os.ReadFile(path)
			must(t, err)
			recBytes := offs[tt.rec+1] - offs[tt.rec]
			full[offs[tt.rec]+tt.at(recBytes)] ^= 0x20
			must(t, os.WriteFile(path, full, 0o644))
			base, _ := parseSegName(active)
			bad := Pos{Seq: base + uint64(tt.rec), Offset: int64(offs[tt.rec])}

			for round := range 3 {
				logger, sink := captureLogger()
				opts := Options{Dir: dir, SegmentBytes: 1500, Logger: logger}
				l, err := Open(opts)
				if err != nil {
					t.Fatalf("round %d: open: %v", round, err)
				}
				if l.Tail() != uint64(n) || l.LastID() != testRecord(n-1).ID {
					t.Fatalf("round %d: tail %d last ID %d, want %d %d", round, l.Tail(), l.LastID(), n, testRecord(n-1).ID)
				}
				if got := diskSize(t, dir); got != l.Size() {
					t.Fatalf("round %d: files hold %d bytes, log %d", round, got, l.Size())
				}
				if saved, _ := filepath.Glob(filepath.Join(dir, "*.corrupt")); len(saved) != 0 {
					t.Fatalf("round %d: saved %v", round, saved)
				}
				for _, batch := range []int{1, 5, 1000} {
					r := l.NewReader(Pos{})
					entries := readAll(t, r, batch)
					if r.Skipped() != 1 || len(entries) != n-1 {
						t.Fatalf("round %d: read %d, skipped %d", round, len(entries), r.Skipped())
					}
					checkEntries(t, entries[:bad.Seq], 0, 0)
					checkEntries(t, entries[bad.Seq:], bad.Seq+1, int(bad.Seq)+1)
				}
				if _, err := l.ReadAt(bad); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("round %d: read at damaged record: %v", round, err)
				}
				if s := l.Stats(); s.CorruptRecords != 1 || s.TornBytes != 0 {
					t.Fatalf("round %d: stats %+v", round, s)
				}
				if got := sink.find("level=ERROR"); len(got) != 1 ||
					len(sink.find("kept it in place", fmt.Sprintf("seq=%d", bad.Seq), fmt.Sprintf("offset=%d", bad.Offset))) != 1 {
					t.Fatalf("round %d: want one error logged; log:\n%s", round, sink.dump())
				}
				// Appends carry on after the kept record, and readers see them.
				r := l.NewReader(l.TailPos())
				mustAppend(t, l, testRecords(n, 2), uint64(n))
				checkEntries(t, readAll(t, r, 10), uint64(n), n)
				n += 2
				must(t, l.Close())
			}
		})
	}
}

// TestCorruptLengthInActive damages the length of a record of the active segment that
// valid records follow: a length the record cannot have, or one that spans valid records,
// is not a lone flipped bit in a record. Open cuts the segment there as it does a torn tail,
// but saves the cut bytes aside, logs an error and counts the records lost.
func TestCorruptLengthInActive(t *testing.T) {
	tests := []struct {
		name   string
		damage func(b []byte, offs []int)
	}{
		{"length too large", func(b []byte, offs []int) { binary.BigEndian.PutUint32(b[offs[1]:], 0xfffffff0) }},
		{"length bit 0", func(b []byte, offs []int) { b[offs[1]+3] ^= 1 }},
		{"length spans the next record", func(b []byte, offs []int) {
			binary.BigEndian.PutUint32(b[offs[1]:], uint32(offs[3]-offs[1]-lenSize))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, n, active, _ := tornFixture(t)
			path := filepath.Join(dir, active)
			offs := activeRecords(t, dir, active)
			b, err := os.ReadFile(path)
			must(t, err)
			tt.damage(b, offs)
			must(t, os.WriteFile(path, b, 0o644))
			base, _ := parseSegName(active)

			logger, sink := captureLogger()
			stats := checkRecovered(t, dir, int(base)+1, logger)
			lost := n - int(base) - 1 // every record from the damaged one on
			if stats.CorruptRecords != uint64(lost) || stats.TornBytes != 0 {
				t.Fatalf("stats %+v, want %d corrupt records", stats, lost)
			}
			if len(sink.find("level=ERROR", "saved_to=", fmt.Sprintf("bytes_cut=%d", len(b)-offs[1]),
				fmt.Sprintf("records_lost=%d", lost))) != 1 {
				t.Fatalf("log:\n%s", sink.dump())
			}
			saved, err := os.ReadFile(fmt.Sprintf("%s.%d.corrupt", path, offs[1]))
			must(t, err)
			if !bytes.Equal(saved, b[offs[1]:]) {
				t.Fatal("saved bytes differ from the cut ones")
			}
		})
	}
}

// sealedFixture writes test records 0 to 59 to a closed log in opts.Dir, in segments of
// 1500 bytes, and damages its second segment (a sealed one) with damage, which gets the
// segment's bytes and the offset of each of its records. It returns the segment file names,
// the damaged segment's base, the next segment's base and the record offsets.
func sealedFixture(t *testing.T, opts Options, damage func(b []byte, offs []int) []byte) (files []string, base, next uint64, offs []int) {
	t.Helper()
	l := openLog(t, opts)
	mustAppend(t, l, testRecords(0, 60), 0)
	must(t, l.Close())
	files = segFiles(t, opts.Dir)
	path := filepath.Join(opts.Dir, files[1])
	b, err := os.ReadFile(path)
	must(t, err)
	base, _ = parseSegName(files[1])
	next, _ = parseSegName(files[2])
	for off := 0; off < len(b); off += lenSize + int(binary.BigEndian.Uint32(b[off:])) {
		offs = append(offs, off)
	}
	if len(offs) != int(next-base) || len(offs) < 4 {
		t.Fatalf("fixture segment holds %d records", len(offs))
	}
	must(t, os.WriteFile(path, damage(b, offs), 0o644))
	return files, base, next, offs
}

// TestCorruptOldSegment damages a sealed segment in many ways. A record damaged on its own
// (a flipped bit anywhere but its length) is skipped alone: readers return every other
// record. Other damage makes readers skip to the next segment. Either way the loss is
// counted in Skipped and, once however many readers pass, in CorruptRecords and the log,
// and readers never get stuck.
func TestCorruptOldSegment(t *testing.T) {
	flip := func(rec, at int, mask byte) func(b []byte, offs []int) []byte {
		return func(b []byte, offs []int) []byte { b[offs[rec]+at] ^= mask; return b }
	}
	tests := []struct {
		name   string
		at     int  // index in the segment of the damaged record
		lone   bool // readers lose just that record, else the rest of the segment
		damage func(b []byte, offs []int) []byte
	}{
		{"body bit", 1, true, flip(1, headerSize, 0x01)},
		{"checksum field", 1, true, flip(1, lenSize, 0x10)},
		{"id field", 1, true, flip(1, crcFrom, 0x80)},
		{"deliver-at field", 2, true, flip(2, headerSize-1, 0x04)},
		{"first record", 0, true, flip(0, headerSize-1, 0x01)},
		{"last record", -1, true, nil}, // filled in below
		{"two records in a row", 1, false, func(b []byte, offs []int) []byte {
			b[offs[1]+headerSize-1] ^= 1
			b[offs[2]+headerSize-1] ^= 1
			return b
		}},
		{"length bit 31", 1, false, flip(1, 0, 0x80)},
		{"length bit 0", 1, false, flip(1, 3, 0x01)},
		{"length spans the next record", 1, false, func(b []byte, offs []int) []byte {
			binary.BigEndian.PutUint32(b[offs[1]:], uint32(offs[3]-offs[1]-lenSize))
			return b
		}},
		{"length too large", 1, false, func(b []byte, offs []int) []byte {
			binary.BigEndian.PutUint32(b[offs[1]:], 0xfffffff0)
			return b
		}},
		{"length too small", 1, false, func(b []byte, offs []int) []byte {
			binary.BigEndian.PutUint32(b[offs[1]:], 3)
			return b
		}},
		{"length past the end", 1, false, func(b []byte, offs []int) []byte {
			binary.BigEndian.PutUint32(b[offs[1]:], uint32(len(b)))
			return b
		}},
		{"torn", 1, false, func(b []byte, offs []int) []byte { return b[:offs[1]+10] }},
		{"last record torn", -1, false, func(b []byte, offs []int) []byte { return b[:len(b)-1] }},
		{"short by whole records", 1, false, func(b []byte, offs []int) []byte { return b[:offs[1]] }},
		{"empty", 0, false, func(b []byte, offs []int) []byte { return nil }},
	}
	for _, tt := range tests {
		for _, mem := range []int{0, 5} {
			t.Run(fmt.Sprintf("%s/mem=%d", tt.name, mem), func(t *testing.T) {
				opts := Options{Dir: t.TempDir(), SegmentBytes: 1500, MemRecords: mem}
				at := tt.at
				damage := func(b []byte, offs []int) []byte {
					if at < 0 {
						at = len(offs) - 1
					}
					if tt.damage == nil {
						return flip(at, headerSize-1, 0x01)(b, offs)
					}
					return tt.damage(b, offs)
				}
				files, base, next, offs := sealedFixture(t, opts, damage)
				var sink *logSink
				opts.Logger, sink = captureLogger()
				l := openLog(t, opts)
				if l.Tail() != 60 {
					t.Fatalf("tail %d", l.Tail())
				}
				bad := base + uint64(at) // seq of the damaged record
				lost := next - bad       // records the readers lose
				if tt.lone {
					lost = 1
				}
				for _, batch := range []int{1, 7, 100} {
					r := l.NewReader(Pos{})
					entries := readAll(t, r, batch)
					if r.Skipped() != lost || uint64(len(entries)) != 60-lost {
						t.Fatalf("batch %d: read %d, skipped %d; want %d and %d", batch, len(entries), r.Skipped(), 60-lost, lost)
					}
					checkEntries(t, entries[:bad], 0, 0)
					checkEntries(t, entries[bad:], bad+lost, int(bad+lost))
					// Every reader skips, but the records are lost (and counted) once.
					if got := l.Stats().CorruptRecords; got != lost {
						t.Fatalf("batch %d: %d corrupt records counted, want %d", batch, got, lost)
					}
					if bad+lost < 60 {
						// The record after the damage has the right position.
						e := entries[bad]
						rec, err := l.ReadAt(e.Pos)
						if err != nil || !sameRecord(rec, e.Record) {
							t.Fatalf("read at %+v: %v", e.Pos, err)
						}
					}
				}
				msg := fmt.Sprintf("records_skipped=%d", lost)
				if tt.lone {
					msg = "readers skip it"
				}
				if n := len(sink.find("level=ERROR", "segment="+files[1], fmt.Sprintf("seq=%d", bad), msg)); n != 1 {
					t.Fatalf("%d errors logged, want 1; log:\n%s", n, sink.dump())
				}
				if tt.lone {
					if _, err := l.ReadAt(Pos{Seq: bad, Offset: int64(offs[at])}); !errors.Is(err, ErrCorrupt) {
						t.Fatalf("read at damaged record: %v", err)
					}
					if got := l.Stats().CorruptRecords; got != 1 {
						t.Fatalf("after ReadAt: %d corrupt records counted, want 1", got)
					}
				}
			})
		}
	}
}

// TestCorruptRecordBeforeHotTail damages, on disk, the last record before the hot tail of
// an open log: a reader steps over it from the file and carries on in memory.
func TestCorruptRecordBeforeHotTail(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, Options{Dir: dir, SegmentBytes: 1500, MemRecords: 3})
	mustAppend(t, l, testRecords(0, 60), 0)
	bad := readAll(t, l.NewReader(Pos{}), 100)[56].Pos
	segs := l.Segments()
	base := segs[segIndex(l.segs, bad.Seq)].Base
	f, err := os.OpenFile(filepath.Join(dir, segName(base)), os.O_RDWR, 0)
	must(t, err)
	_, err = f.WriteAt([]byte{0xff}, bad.Offset+crcFrom)
	must(t, errors.Join(err, f.Close()))

	r := l.NewReader(Pos{})
	entries := readAll(t, r, 10)
	if r.Skipped() != 1 || len(entries) != 59 || l.Stats().CorruptRecords != 1 {
		t.Fatalf("read %d, skipped %d, counted %d", len(entries), r.Skipped(), l.Stats().CorruptRecords)
	}
	checkEntries(t, entries[:56], 0, 0)
	checkEntries(t, entries[56:], 57, 57)
}

// TestCorruptCountedOnce has ReadAt find a corrupt record before the readers do: it is
// counted and logged once however often it is asked for, and the readers that then skip the
// rest of its segment add only the records not counted yet.
func TestCorruptCountedOnce(t *testing.T) {
	logger, sink := captureLogger()
	opts := Options{Dir: t.TempDir(), SegmentBytes: 1500, Logger: logger}
	// A length one byte off: neither this record nor what follows it reads as valid.
	files, base, next, offs := sealedFixture(t, opts, func(b []byte, offs []int) []byte {
		b[offs[1]+3] ^= 1
		return b
	})
	l := openLog(t, opts)
	damaged := Pos{Seq: base + 1, Offset: int64(offs[1])}
	for range 3 {
		if _, err := l.ReadAt(damaged); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("read at damaged record: %v", err)
		}
	}
	// A position past the segment's bytes is a bad position, not damaged data.
	if _, err := l.ReadAt(Pos{Seq: base + 1, Offset: 1 << 20}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read past the segment: %v", err)
	}
	if got := l.Stats().CorruptRecords; got != 1 {
		t.Fatalf("after ReadAt: %d corrupt records counted, want 1", got)
	}
	if n := len(sink.find("level=ERROR", "corrupt record", "segment="+files[1])); n != 1 {
		t.Fatalf("%d errors logged by ReadAt, want 1; log:\n%s", n, sink.dump())
	}
	for range 2 {
		r := l.NewReader(Pos{})
		entries := readAll(t, r, 10)
		if r.Skipped() != next-base-1 || uint64(len(entries)) != 60-r.Skipped() {
			t.Fatalf("read %d, skipped %d", len(entries), r.Skipped())
		}
	}
	if got := l.Stats().CorruptRecords; got != next-base-1 {
		t.Fatalf("after the readers: %d corrupt records counted, want %d", got, next-base-1)
	}
	if n := len(sink.find("level=ERROR", "skipping the rest", "segment="+files[1])); n != 1 {
		t.Fatalf("%d errors logged by the readers, want 1; log:\n%s", n, sink.dump())
	}
}

// TestReaderSegmentDeletedUnderIt truncates the log while a reader is part way through a
// segment it has buffered.
func TestReaderSegmentDeletedUnderIt(t *testing.T) {
	l := openLog(t, Options{Dir: t.TempDir(), SegmentBytes: 1000})
	mustAppend(t, l, testRecords(0, 80), 0)
	r := l.NewReader(Pos{})
	got, err := r.Read(nil, 3)
	must(t, err)
	if _, err := l.TruncateFront(40); err != nil {
		t.Fatal(err)
	}
	rest := readAll(t, r, 5)
	head := l.Head()
	if r.Skipped() != head-3 || len(got)+len(rest)+int(r.Skipped()) != 80 {
		t.Fatalf("read %d+%d, skipped %d, head %d", len(got), len(rest), r.Skipped(), head)
	}
	checkEntries(t, rest, head, int(head))
}

const killEnv = "LOGSTORE_KILL_CHILD_DIR"

// killRecord is record j of append k by writer g in the kill test.
func killRecord(g, k, j int) Record {
	id := uint64(g)<<40 | uint64(k)<<8 | uint64(j)
	body := make([]byte, (g*13+k*7+j*3)%300)
	for i := range body {
		body[i] = byte(int(id) + i*7)
	}
	return Record{ID: id, Timestamp: int64(k), DeliverAt: int64(j), Body: body}
}

var killOpts = Options{SegmentBytes: 64 << 10, MemRecords: 100}

// killChild appends from several goroutines until it is killed, printing one line per
// acknowledged Append: "seq writer append count".
func killChild(dir string) {
	opts := killOpts
	opts.Dir = dir
	l, err := Open(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	deadline := time.Now().Add(time.Minute) // in case the parent is gone
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for k := 0; time.Now().Before(deadline); k++ {
				n := 1 + (g+k)%7
				recs := make([]Record, n)
				for j := range recs {
					recs[j] = killRecord(g, k, j)
				}
				seq, err := l.Append(recs)
				if err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(2)
				}
				// One small write is one atomic pipe write, so lines never interleave.
				if _, err := fmt.Fprintf(os.Stdout, "%d %d %d %d\n", seq, g, k, n); err != nil {
					os.Exit(2)
				}
			}
		})
	}
	wg.Wait()
	os.Exit(3)
}

type ack struct{ seq, g, k, n int }

// TestKillRecovery runs a child process that appends, SIGKILLs it at an arbitrary moment,
// and checks that every record whose Append returned is in the reopened log, intact. It
// does so three times on the same log, so recovery is followed by more appends.
func TestKillRecovery(t *testing.T) {
	if dir := os.Getenv(killEnv); dir != "" {
		killChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	var acks []ack
	for round, target := range []int{300, 1500, 4000} {
		var stderr bytes.Buffer
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillRecovery$", "-test.count=1")
		cmd.Env = append(os.Environ(), killEnv+"="+dir)
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		must(t, err)
		must(t, cmd.Start())
		watchdog := time.AfterFunc(time.Minute, func() { _ = cmd.Process.Kill() })
		rd := bufio.NewReader(stdout)
		got, killed := 0, false
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				break // EOF after the kill; a fragment without a newline is not an ack
			}
			var a ack
			if _, err := fmt.Sscanf(line, "%d %d %d %d", &a.seq, &a.g, &a.k, &a.n); err != nil {
				t.Fatalf("round %d: child printed %q", round, line)
			}
			acks = append(acks, a)
			if got++; got == target {
				must(t, cmd.Process.Kill())
				killed = true
			}
		}
		_ = cmd.Wait()
		watchdog.Stop()
		if !killed {
			t.Fatalf("round %d: child stopped after %d acks: %s", round, got, stderr.String())
		}

		l := openLog(t, Options{Dir: dir})
		entries := readAll(t, l.NewReader(Pos{}), 4096)
		checkDense(t, entries)
		for _, a := range acks {
			if a.seq+a.n > len(entries) {
				t.Fatalf("round %d: acknowledged seqs %d..%d lost (log holds %d)", round, a.seq, a.seq+a.n-1, len(entries))
			}
			for j := range a.n {
				if !sameRecord(entries[a.seq+j].Record, killRecord(a.g, a.k, j)) {
					t.Fatalf("round %d: seq %d differs from what was acknowledged", round, a.seq+j)
				}
			}
		}
		if len(entries) > 0 && l.LastID() != entries[len(entries)-1].ID {
			t.Fatalf("round %d: last ID %d, newest record %d", round, l.LastID(), entries[len(entries)-1].ID)
		}
		t.Logf("round %d: %d appends acknowledged, log holds %d records in %d segments",
			round, len(acks), len(entries), len(segFiles(t, dir)))
		must(t, l.Close())
	}
}

func checkDense(t *testing.T, entries []Entry) {
	t.Helper()
	for i, e := range entries {
		if e.Pos.Seq != uint64(i) {
			t.Fatalf("entry %d has seq %d", i, e.Pos.Seq)
		}
	}
}
