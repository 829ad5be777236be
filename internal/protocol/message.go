package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// MsgIDLength is the length of a message ID on the wire.
const MsgIDLength = 16

// MessageHeaderLength is the length of a message frame's data before the body: an 8-byte
// timestamp, a 2-byte attempt count and the ID.
const MessageHeaderLength = 8 + 2 + MsgIDLength

// MessageID is a message ID as it travels: 16 lower-case hexadecimal characters, the digits
// of a uint64 most significant first. NSQ's clients treat it as opaque bytes and echo it in
// FIN, REQ and TOUCH, so the text form is the contract; the number is the server's business.
type MessageID [MsgIDLength]byte

const hexDigits = "0123456789abcdef"

// NewMessageID returns the wire form of v.
func NewMessageID(v uint64) MessageID {
	var id MessageID
	for i := MsgIDLength - 1; i >= 0; i-- {
		id[i] = hexDigits[v&0xf]
		v >>= 4
	}
	return id
}

// ParseMessageID returns the number b encodes. It reports false unless b is exactly 16
// lower-case hexadecimal characters: accepting upper case would give one message two wire
// forms, and NSQ (which compares IDs byte for byte) would not recognise the second either.
func ParseMessageID(b []byte) (uint64, bool) {
	if len(b) != MsgIDLength {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, true
}

// Uint64 returns the number id encodes, and false if id is not a valid wire ID.
func (id MessageID) Uint64() (uint64, bool) { return ParseMessageID(id[:]) }

// String returns the ID's text.
func (id MessageID) String() string { return string(id[:]) }

// ErrShortMessage is returned (wrapped) by [DecodeMessage] when the data is shorter than a
// message header.
var ErrShortMessage = errors.New("message shorter than its header")

// AppendMessageFrame appends a whole message frame to dst: the frame size and type
// ([FrameTypeMessage]), then the timestamp (nanoseconds since the epoch), the attempt count,
// the ID and the body. It does not allocate when dst has room, so a connection's writer can
// build many frames in one buffer and send them with one write.
func AppendMessageFrame(dst []byte, timestamp int64, attempts uint16, id MessageID, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(4+MessageHeaderLength+len(body)))
	dst = binary.BigEndian.AppendUint32(dst, uint32(FrameTypeMessage))
	dst = binary.BigEndian.AppendUint64(dst, uint64(timestamp))
	dst = binary.BigEndian.AppendUint16(dst, attempts)
	dst = append(dst, id[:]...)
	return append(dst, body...)
}

// DecodeMessage parses the data of a message frame (the frame without its size and type).
// The body aliases data.
func DecodeMessage(data []byte) (timestamp int64, attempts uint16, id MessageID, body []byte, err error) {
	if len(data) < MessageHeaderLength {
		return 0, 0, id, nil, fmt.Errorf("decode message of %d bytes: %w", len(data), ErrShortMessage)
	}
	timestamp = int64(binary.BigEndian.Uint64(data[0:8]))
	attempts = binary.BigEndian.Uint16(data[8:10])
	copy(id[:], data[10:MessageHeaderLength])
	return timestamp, attempts, id, data[MessageHeaderLength:], nil
}
