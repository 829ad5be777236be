package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"strconv"
)

// ReadLine reads one '\n'-terminated command line from r and returns it without the '\n' and
// without one '\r' before it. The returned slice may alias r's buffer and is valid only until
// the next read from r.
//
// The line may be at most maxLen bytes (terminator excluded); maxLen <= 0 means r's buffer
// size. A longer line is a fatal E_INVALID [*Error], reported as soon as maxLen is exceeded,
// so that a peer sending bytes without newlines holds no more than about maxLen bytes of
// server memory beyond r's own buffer.
// Lines that fit r's buffer, the normal case, are returned without allocating; a longer
// maxLen is honoured by copying.
//
// At end of input ReadLine returns io.EOF if no part of a line was read and
// io.ErrUnexpectedEOF if a partial line was discarded.
func ReadLine(r *bufio.Reader, maxLen int) ([]byte, error) {
	if maxLen <= 0 {
		maxLen = r.Size()
	}
	if maxLen+2 <= r.Size() {
		// ReadSlice would block until a newline or a full buffer, so a peer trickling bytes
		// without a newline could sit on r's whole buffer before the bound applied. Look at
		// what is buffered first and wait for one more byte at a time while it is short.
		for {
			buf, _ := r.Peek(r.Buffered())
			if bytes.IndexByte(buf, '\n') >= 0 {
				break
			}
			if len(buf) > maxLen+1 {
				return nil, lineTooLong(maxLen)
			}
			if _, err := r.Peek(len(buf) + 1); err != nil {
				return nil, lineReadError(len(buf), err)
			}
		}
	}
	line, err := r.ReadSlice('\n')
	if err == nil {
		return checkLine(trimEOL(line), maxLen)
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		return nil, lineReadError(len(line), err)
	}
	// Slow path: the line is longer than r's buffer. Without a newline so far, a line can
	// hold maxLen bytes of content and a '\r'; past that it is too long whatever follows.
	if len(line) > maxLen+1 {
		return nil, lineTooLong(maxLen)
	}
	long := append(make([]byte, 0, 2*len(line)), line...)
	for {
		line, err = r.ReadSlice('\n')
		long = append(long, line...)
		if err == nil {
			return checkLine(trimEOL(long), maxLen)
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, lineReadError(len(long), err)
		}
		if len(long) > maxLen+1 {
			return nil, lineTooLong(maxLen)
		}
	}
}

func trimEOL(line []byte) []byte {
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line
}

func checkLine(line []byte, maxLen int) ([]byte, error) {
	if len(line) > maxLen {
		return nil, lineTooLong(maxLen)
	}
	return line, nil
}

func lineTooLong(maxLen int) *Error {
	return NewFatalError(ErrInvalid, "command line longer than %d bytes", maxLen)
}

func lineReadError(partial int, err error) error {
	if partial > 0 && errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// SplitParams splits line on single spaces into dst[:0] and returns it, the way NSQ does: two
// spaces in a row give an empty parameter, and an empty line gives one empty parameter. The
// parameters alias line. It does not allocate when cap(dst) is large enough.
func SplitParams(line []byte, dst [][]byte) [][]byte {
	dst = dst[:0]
	for {
		i := bytes.IndexByte(line, ' ')
		if i < 0 {
			return append(dst, line)
		}
		dst = append(dst, line[:i])
		line = line[i+1:]
	}
}

// maxSafeDigits is the most decimal digits that always fit in an int64.
const maxSafeDigits = 18

// ParseInt parses a non-negative base-10 integer made only of ASCII digits, as RDY counts
// and REQ and DPUB delays are sent. Signs, spaces and the empty string are
// [strconv.ErrSyntax]; a value above math.MaxInt64 is [strconv.ErrRange] (NSQ wraps it
// around silently). The errors are returned unwrapped so that parsing never allocates.
func ParseInt(b []byte) (int64, error) {
	if len(b) == 0 {
		return 0, strconv.ErrSyntax
	}
	if len(b) <= maxSafeDigits {
		// Too short to overflow: skip the range check on every digit.
		var n int64
		for _, c := range b {
			if c < '0' || c > '9' {
				return 0, strconv.ErrSyntax
			}
			n = n*10 + int64(c-'0')
		}
		return n, nil
	}
	var n int64
	overflow := false
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, strconv.ErrSyntax
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			// Keep scanning: a bad digit later is a syntax error, as in strconv.
			overflow = true
			continue
		}
		n = n*10 + d
	}
	if overflow {
		return 0, strconv.ErrRange
	}
	return n, nil
}
