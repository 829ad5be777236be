package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
)

// Protocol magics: the first four bytes a client sends.
const (
	// MagicV1 opens an nsqlookupd TCP connection.
	MagicV1 = "  V1"
	// MagicV2 opens an nsqd TCP connection.
	MagicV2 = "  V2"
)

// Fixed response bodies the server sends in response frames.
const (
	// OK acknowledges a command that has no other answer.
	OK = "OK"
	// Heartbeat is sent every heartbeat interval; the client must answer with a command
	// (normally NOP) or be disconnected.
	Heartbeat = "_heartbeat_"
	// CloseWait answers CLS.
	CloseWait = "CLOSE_WAIT"
)

// FrameType says what a V2 frame carries.
type FrameType int32

// The V2 frame types.
const (
	// FrameTypeResponse carries an answer to a command, or a heartbeat.
	FrameTypeResponse FrameType = 0
	// FrameTypeError carries an error's text, "CODE desc".
	FrameTypeError FrameType = 1
	// FrameTypeMessage carries a message (see [AppendMessageFrame]).
	FrameTypeMessage FrameType = 2
)

// String returns the frame type's name, for logs.
func (t FrameType) String() string {
	switch t {
	case FrameTypeResponse:
		return "response"
	case FrameTypeError:
		return "error"
	case FrameTypeMessage:
		return "message"
	}
	return "FrameType(" + strconv.Itoa(int(t)) + ")"
}

// FrameHeaderLength is the length of a V2 frame's size and type fields.
const FrameHeaderLength = 8

// ErrFrameSize is returned (wrapped) by [ReadFrame] and [ReadV1Response] when a size field is
// too small to be valid or larger than the caller allows.
var ErrFrameSize = errors.New("frame size out of range")

// AppendFrame appends [4-byte size = 4+len(data)][4-byte type][data] to dst. It does not
// allocate when dst has room.
func AppendFrame(dst []byte, ft FrameType, data []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(4+len(data)))
	dst = binary.BigEndian.AppendUint32(dst, uint32(ft))
	return append(dst, data...)
}

// ReadFrame reads one V2 frame and returns its type and data. maxSize bounds the size field
// (4 + len(data)) so that a corrupt or hostile peer cannot make the reader allocate without
// limit; 0 means no bound. A size below 4 (including one with the top bit set) is an error.
func ReadFrame(r io.Reader, maxSize int) (FrameType, []byte, error) {
	var hdr [FrameHeaderLength]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return 0, nil, fmt.Errorf("read frame size: %w", err)
	}
	size := int32(binary.BigEndian.Uint32(hdr[:4]))
	if size < 4 {
		return 0, nil, fmt.Errorf("frame size %d < 4: %w", size, ErrFrameSize)
	}
	if maxSize > 0 && int64(size) > int64(maxSize) {
		return 0, nil, fmt.Errorf("frame size %d > %d: %w", size, maxSize, ErrFrameSize)
	}
	if _, err := io.ReadFull(r, hdr[4:]); err != nil {
		return 0, nil, fmt.Errorf("read frame type: %w", noEOF(err))
	}
	ft := FrameType(int32(binary.BigEndian.Uint32(hdr[4:])))
	data, err := readN(r, int(size-4))
	if err != nil {
		return 0, nil, fmt.Errorf("read frame data: %w", noEOF(err))
	}
	return ft, data, nil
}

// readChunk is the most readN allocates ahead of the data actually received.
const readChunk = 1 << 20

// readN reads exactly n bytes. Up to readChunk it allocates n at once; beyond that the buffer
// grows as data arrives, so that a size field the peer does not back with data (there may be
// no bound on it) costs at most about twice what was really sent, not n.
func readN(r io.Reader, n int) ([]byte, error) {
	if n <= readChunk {
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	buf := make([]byte, 0, readChunk)
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(len(buf), n-len(buf)))
		}
		m, err := io.ReadFull(r, buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+m]
		if err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// AppendV1Response appends an nsqlookupd response, [4-byte size = len(data)][data], to dst.
func AppendV1Response(dst []byte, data []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(data)))
	return append(dst, data...)
}

// ReadV1Response reads one nsqlookupd response. maxSize bounds the size field; 0 means no
// bound. A negative size is an error.
func ReadV1Response(r io.Reader, maxSize int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("read response size: %w", err)
	}
	size := int32(binary.BigEndian.Uint32(hdr[:]))
	if size < 0 {
		return nil, fmt.Errorf("response size %d < 0: %w", size, ErrFrameSize)
	}
	if maxSize > 0 && int64(size) > int64(maxSize) {
		return nil, fmt.Errorf("response size %d > %d: %w", size, maxSize, ErrFrameSize)
	}
	data, err := readN(r, int(size))
	if err != nil {
		return nil, fmt.Errorf("read response data: %w", noEOF(err))
	}
	return data, nil
}

// noEOF turns io.EOF into io.ErrUnexpectedEOF: once part of a frame has arrived, the peer
// closing is a truncation, not a clean end between frames.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
