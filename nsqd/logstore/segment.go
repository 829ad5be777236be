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
	records int    // valid records from the start of the file
	valid   int64  // bytes they take
	lastID  uint64 // ID of the last valid record
	size    int64  // size of the file
}

// scanChunk is the read size of a recovery scan.
const scanChunk = 1 << 20

// scanSegment validates the records of f from the start and stops at the end of the file
// or at the first record that is torn (runs past the end) or corrupt (bad length or CRC).
// Only I/O errors are returned as errors.
func scanSegment(f *os.File, maxBody int) (scanResult, error) {
	info, err := f.Stat()
	if err != nil {
		return scanResult{}, fmt.Errorf("stat segment: %w", err)
	}
	res := scanResult{size: info.Size()}
	buf := make([]byte, scanChunk)
	var bufOff int64 // file offset of buf[0]
	var have int     // bytes of buf holding data
	// fill makes buf hold at least need bytes from the file at off, growing it if a record
	// is larger than the chunk; it reports false when the file ends first.
	fill := func(off int64, need int) (bool, error) {
		if off >= bufOff && off+int64(need) <= bufOff+int64(have) {
			return true, nil
		}
		if off+int64(need) > res.size {
			return false, nil
		}
		if need > len(buf) {
			buf = make([]byte, need)
		}
		n, err := f.ReadAt(buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return false, fmt.Errorf("read segment: %w", err)
		}
		bufOff, have = off, n
		return n >= need, nil
	}
	for off := int64(0); off < res.size; {
		ok, err := fill(off, headerSize)
		if err != nil || !ok {
			return res, err
		}
		rel := int(off - bufOff)
		size, ok := restLen(buf[rel:], maxBody)
		if !ok {
			return res, nil
		}
		if ok, err = fill(off, size); err != nil || !ok {
			return res, err
		}
		rel = int(off - bufOff)
		rec, ok := decodeRecord(buf[rel : rel+size])
		if !ok {
			return res, nil
		}
		res.records++
		res.lastID = rec.ID
		off += int64(size)
		res.valid = off
	}
	return res, nil
}

// findRecordAfter reports whether a valid record starts anywhere in f at an offset in
// (from, size). A torn write leaves only garbage or a record prefix after the last good
// record, so a valid record there means the damage is in the middle of the data and the
// bytes about to be cut hold records worth keeping.
func findRecordAfter(f *os.File, from, size int64, maxBody int) (bool, error) {
	win := make([]byte, scanChunk)
	var winOff int64 = -1
	var have int
	for off := from + 1; off+headerSize <= size; off++ {
		if winOff < 0 || off+headerSize > winOff+int64(have) {
			n, err := f.ReadAt(win, off)
			if err != nil && !errors.Is(err, io.EOF) {
				return false, fmt.Errorf("read segment: %w", err)
			}
			winOff, have = off, n
			if have < headerSize {
				return false, nil // the file shrank under us
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
				return false, fmt.Errorf("read segment: %w", err)
			}
		}
		if _, ok := decodeRecord(rec); ok {
			return true, nil
		}
	}
	return false, nil
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
