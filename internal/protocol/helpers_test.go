package protocol_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/ternmq/tern/internal/protocol"
)

// wantError fails t unless err is a *protocol.Error with exactly this text and fatality.
func wantError(t *testing.T, err error, text string, fatal bool) {
	t.Helper()
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error = %v (%T), want *protocol.Error %q", err, err, text)
	}
	if got := pe.Error(); got != text {
		t.Errorf("error text = %q, want %q", got, text)
	}
	if pe.Fatal != fatal {
		t.Errorf("%q: Fatal = %v, want %v", text, pe.Fatal, fatal)
	}
}

// be32 returns v as 4 big-endian bytes.
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// cat concatenates byte slices and strings.
func cat(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case []byte:
			b = append(b, p...)
		case string:
			b = append(b, p...)
		default:
			panic("cat: unsupported part")
		}
	}
	return b
}

// mpubBody returns [count]([size][msg])* for msgs.
func mpubBody(msgs ...string) []byte {
	b := be32(uint32(len(msgs)))
	for _, m := range msgs {
		b = append(b, be32(uint32(len(m)))...)
		b = append(b, m...)
	}
	return b
}

// errReader fails every read with err.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// endless yields its pattern forever.
type endless struct {
	pattern []byte
	off     int
}

func (e *endless) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], e.pattern[e.off:])
		n += c
		e.off = (e.off + c) % len(e.pattern)
	}
	return n, nil
}

// failWriter accepts limit bytes and then fails.
type failWriter struct {
	buf   bytes.Buffer
	limit int
}

var errWrite = errors.New("write failed")

func (w *failWriter) Write(p []byte) (int, error) {
	room := w.limit - w.buf.Len()
	if room >= len(p) {
		return w.buf.Write(p)
	}
	w.buf.Write(p[:max(room, 0)])
	return max(room, 0), errWrite
}

// allocBytes returns the bytes f allocates per run, averaged over runs.
func allocBytes(t *testing.T, runs int, f func()) uint64 {
	t.Helper()
	f() // warm up anything lazily initialised
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}
