package logstore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

const (
	segSuffix = ".seg"
	// segNameDigits is the width of the zero-padded base seq in a segment's file name, so
	// that names sort in seq order.
	segNameDigits = 20
)

// errSegmentGone reports that a segment was deleted while a reader was about to use it.
var errSegmentGone = errors.New("segment deleted")

// segment is one file of a disk log. base is the seq of its first record. size is the
// number of committed bytes: final for a sealed segment, and for the active one the bytes
// that readers may see. size is guarded by Log.mu.
//
// The file handle is shared: the writer writes the active segment through it, and readers
// and ReadAt read every segment through it with pread, so a log holds one descriptor per
// segment that has been used, not one per reader. fmu guards f, gone and bad; it is held
// for no more than a map or field access, never with another lock.
type segment struct {
	base uint64
	path string
	size int64

	fmu  sync.Mutex
	f    *os.File
	gone bool
	// bad is what recovery, readers and ReadAt found damaged in the segment, by offset, so
	// that each damaged spot is judged, logged and counted once however many readers meet
	// it. It goes when the segment is deleted.
	bad map[int64]damage
}

func segName(base uint64) string {
	return fmt.Sprintf("%0*d%s", segNameDigits, base, segSuffix)
}

// parseSegName returns the base seq of a segment file name.
func parseSegName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segSuffix)
	if !ok || len(digits) != segNameDigits {
		return 0, false
	}
	base, err := strconv.ParseUint(digits, 10, 64)
	return base, err == nil
}

// file returns the segment's handle, opening it read-only on first use.
func (s *segment) file() (*os.File, error) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.gone {
		return nil, errSegmentGone
	}
	if s.f == nil {
		f, err := os.Open(s.path)
		if err != nil {
			return nil, fmt.Errorf("open segment: %w", err)
		}
		s.f = f
	}
	return s.f, nil
}

// close closes the handle; later uses fail with errSegmentGone. A pread under way on the
// handle finishes safely: os.File defers the real close until it returns.
func (s *segment) close() error {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.gone = true
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// listSegments returns the segments in dir in seq order, with their sizes, and the names of
// files that look like segments but are not.
func listSegments(dir string) ([]*segment, []string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("list segments: %w", err)
	}
	var segs []*segment
	var odd []string
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), segSuffix) {
			continue
		}
		base, ok := parseSegName(e.Name())
		if !ok || !e.Type().IsRegular() {
			odd = append(odd, e.Name())
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, nil, fmt.Errorf("stat segment %s: %w", e.Name(), err)
		}
		segs = append(segs, &segment{base: base, path: filepath.Join(dir, e.Name()), size: info.Size()})
	}
	slices.SortFunc(segs, func(a, b *segment) int {
		switch {
		case a.base < b.base:
			return -1
		case a.base > b.base:
			return 1
		}
		return 0
	})
	return segs, odd, nil
}

// scanResult is what a scan of a segment file found.
type scanResult struct {
	records int          // records from where the scan started, lone corrupt ones included
	end     int64        // offset where they end: the file's bytes that are kept
	lastID  uint64       // ID of the last valid record
	size    int64        // size of the file
	lone    []loneRecord // the lone corrupt records among them
}

// loneRecord is a corrupt record that a scan kept in place (see scanSegment).
type loneRecord struct {
	index int   // among the records scanned
	off   int64 // offset in the file
	n     int   // size
}

// scanChunk is the read size of a recovery scan.
const scanChunk = 1 << 20

// scanSegment validates the records of f from offset from and stops at the end of the file
// or at the first record that is torn (runs past the end) or corrupt (bad length or CRC),
// but for a lone corrupt record: one whose length is plausible and fits the file, whose
// checksum is wrong, that a valid record follows and that holds none. That is a flipped bit,
// not a torn write (which leaves nothing valid after it); the scan counts it and goes on, as
// readers step over it (see Reader.lone, whose rule this is). Only I/O errors are returned
// as errors.
func scanSegment(f *os.File, from int64, maxBody int) (scanResult, error) {
	info, err := f.Stat()
	if err != nil {
		return scanResult{}, fmt.Errorf("stat segment: %w", err)
	}
	res := scanResult{size: info.Size(), end: from}
	sc := &fileScan{f: f, size: res.size, buf: make([]byte, scanChunk), maxBody: maxBody}
	for off := from; off < res.size; {
		rec, n, st, err := sc.record(off)
		if err != nil {
			return res, err
		}
		switch st {
		case recValid:
			res.lastID = rec.ID
		case recBadSum:
			// The scan holds the whole record: check inside it before reading on.
			rel := int(off - sc.bufOff)
			if validWithin(sc.buf[rel:rel+n], maxBody) {
				return res, nil
			}
			_, _, next, err := sc.record(off + int64(n))
			if err != nil || next != recValid {
				return res, err
			}
			res.lone = append(res.lone, loneRecord{index: res.records, off: off, n: n})
		default:
			return res, nil
		}
		res.records++
		off += int64(n)
		res.end = off
	}
	return res, nil
}

// recState is what a scan found at an offset.
type recState int

const (
	recValid  recState = iota
	recBadSum          // a record whose length is plausible and fits the file, checksum wrong
	recBad             // no record: a length out of bounds, or past the end of the file
)

// fileScan reads a segment file's records through a buffer, for recovery.
type fileScan struct {
	f       *os.File
	size    int64
	maxBody int
	buf     []byte
	bufOff  int64 // file offset of buf[0]
	have    int   // bytes of buf holding data
}

// fill makes buf hold at least need bytes from the file at off, growing it if a record is
// larger than the chunk; it reports false when the file ends first.
func (s *fileScan) fill(off int64, need int) (bool, error) {
	if off >= s.bufOff && off+int64(need) <= s.bufOff+int64(s.have) {
		return true, nil
	}
	if off+int64(need) > s.size {
		return false, nil
	}
	if need > len(s.buf) {
		s.buf = make([]byte, need)
	}
	n, err := s.f.ReadAt(s.buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("read segment: %w", err)
	}
	s.bufOff, s.have = off, n
	return n >= need, nil
}

// record reads the record at off and says what it is, with its size unless recBad. The
// record's bytes are in buf until the next call; so is its body.
func (s *fileScan) record(off int64) (Record, int, recState, error) {
	ok, err := s.fill(off, headerSize)
	if err != nil || !ok {
		return Record{}, 0, recBad, err
	}
	n, ok := restLen(s.buf[off-s.bufOff:], s.maxBody)
	if !ok {
		return Record{}, 0, recBad, nil
	}
	if ok, err = s.fill(off, n); err != nil || !ok {
		return Record{}, 0, recBad, err
	}
	rel := int(off - s.bufOff)
	rec, ok := decodeRecord(s.buf[rel : rel+n])
	if !ok {
		return Record{}, n, recBadSum, nil
	}
	return rec, n, recValid, nil
}

// findRecordAfter returns the offset of the first valid record that starts in f at an
// offset in (from, size), or -1 if there is none. A torn write leaves only garbage or a
// record prefix after the last good record, so a valid record there means the damage is in
// the middle of the data and the bytes about to be cut hold records worth keeping.
func findRecordAfter(f *os.File, from, size int64, maxBody int) (int64, error) {
	win := make([]byte, scanChunk)
	var winOff int64 = -1
	var have int
	for off := from + 1; off+headerSize <= size; off++ {
		if winOff < 0 || off+headerSize > winOff+int64(have) {
			n, err := f.ReadAt(win, off)
			if err != nil && !errors.Is(err, io.EOF) {
				return -1, fmt.Errorf("read segment: %w", err)
			}
			winOff, have = off, n
			if have < headerSize {
				return -1, nil // the file shrank under us
			}
		}
		rel := int(off - winOff)
		n, ok := restLen(win[rel:have], maxBody)
		if !ok || off+int64(n) > size {
			continue
		}
		var rec []byte
		if rel+n <= have {
			rec = win[rel : rel+n]
		} else {
			rec = make([]byte, n)
			if _, err := f.ReadAt(rec, off); err != nil {
				return -1, fmt.Errorf("read segment: %w", err)
			}
		}
		if _, ok := decodeRecord(rec); ok {
			return off, nil
		}
	}
	return -1, nil
}

// preserve copies f's bytes from off to the end into path, so that data cut from a damaged
// segment stays available to an operator instead of being silently discarded.
func preserve(f *os.File, off, size int64, path string) error {
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("preserve cut bytes: %w", err)
	}
	_, err = io.Copy(out, io.NewSectionReader(f, off, size-off))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("preserve cut bytes: %w", err)
	}
	return nil
}

// syncDir fsyncs a directory so that files created or removed in it survive a power loss.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	return nil
}

// createSegment creates (or empties) the segment file for base in dir.
func createSegment(dir string, base uint64) (*segment, error) {
	path := filepath.Join(dir, segName(base))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	return &segment{base: base, path: path, f: f}, nil
}
