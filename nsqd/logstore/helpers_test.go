package logstore

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// testRecord returns the i-th record of a deterministic stream: bodies of varying length,
// empty ones included, whose bytes depend on i.
func testRecord(i int) Record {
	body := make([]byte, (i*37)%90)
	for j := range body {
		body[j] = byte(i*31 + j)
	}
	return Record{ID: uint64(i) + 1, Timestamp: int64(i) * 1000, DeliverAt: int64(i%3) * 7, Body: body}
}

func testRecords(from, n int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = testRecord(from + i)
	}
	return recs
}

func sameRecord(a, b Record) bool {
	return a.ID == b.ID && a.Timestamp == b.Timestamp && a.DeliverAt == b.DeliverAt && bytes.Equal(a.Body, b.Body)
}

// checkRecord fails the test unless got is the i-th test record.
func checkRecord(t *testing.T, got Record, i int) {
	t.Helper()
	if want := testRecord(i); !sameRecord(got, want) {
		t.Fatalf("record %d: got ID %d ts %d da %d body %d bytes, want ID %d ts %d da %d body %d bytes",
			i, got.ID, got.Timestamp, got.DeliverAt, len(got.Body), want.ID, want.Timestamp, want.DeliverAt, len(want.Body))
	}
}

// openLog opens a log and closes it when the test ends.
func openLog(t *testing.T, opts Options) *Log {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	l, err := Open(opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// mustAppend appends recs and checks the seq they got.
func mustAppend(t *testing.T, l *Log, recs []Record, wantSeq uint64) {
	t.Helper()
	seq, err := l.Append(recs)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	if seq != wantSeq {
		t.Fatalf("append: got seq %d, want %d", seq, wantSeq)
	}
}

// readAll reads from r until the tail, in reads of at most batch records.
func readAll(t *testing.T, r *Reader, batch int) []Entry {
	t.Helper()
	var all []Entry
	for {
		n := len(all)
		var err error
		all, err = r.Read(all, batch)
		if err != nil {
			t.Fatalf("read at %+v: %v", r.Pos(), err)
		}
		if len(all) == n {
			return all
		}
		if len(all)-n > batch {
			t.Fatalf("read returned %d records, max %d", len(all)-n, batch)
		}
	}
}

// checkEntries checks that entries are the test records from first on, with dense seqs
// starting at seq.
func checkEntries(t *testing.T, entries []Entry, seq uint64, first int) {
	t.Helper()
	for i, e := range entries {
		if e.Pos.Seq != seq+uint64(i) {
			t.Fatalf("entry %d: seq %d, want %d", i, e.Pos.Seq, seq+uint64(i))
		}
		checkRecord(t, e.Record, first+i)
	}
}

// segFiles lists the segment file names of dir.
func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	if err != nil {
		t.Fatal(err)
	}
	for i := range names {
		names[i] = filepath.Base(names[i])
	}
	slices.Sort(names)
	return names
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(time.Millisecond):
		}
	}
}

// logSink records log lines so tests can check what was reported.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, strings.TrimSpace(string(p)))
	return len(p), nil
}

// find returns the recorded lines that contain every one of subs.
func (s *logSink) find(subs ...string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
next:
	for _, l := range s.lines {
		for _, sub := range subs {
			if !strings.Contains(l, sub) {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}

func (s *logSink) dump() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

// captureLogger returns a logger whose lines are kept in the returned sink.
func captureLogger() (*slog.Logger, *logSink) {
	s := &logSink{}
	return slog.New(slog.NewTextHandler(s, &slog.HandlerOptions{Level: slog.LevelDebug})), s
}

// testLogger logs through t when -v is given, and discards otherwise.
func testLogger(t *testing.T) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, nil))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// copyDir copies the regular files of src into a new temporary directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// diskSize sums the sizes of dir's segment files.
func diskSize(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	for _, name := range segFiles(t, dir) {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		total += info.Size()
	}
	return total
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
