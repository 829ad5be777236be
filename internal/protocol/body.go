package protocol

import (
	"encoding/binary"
	"io"
)

// ReadBody reads a command body, [4-byte size][body], that follows a command line. The size
// must be 1..maxSize; it is checked before anything is allocated, and a size with the top bit set
// is negative, never a huge allocation. The body is read into buf when cap(buf) is large
// enough and into a new slice otherwise; buf is scratch either way (the size field is read
// into it when it has room, so that the call does not allocate), even when ReadBody fails.
//
// Every failure is a fatal [*Error] with the given code, whose description follows NSQ's for
// the command named cmd. Code [ErrBadMessage] gives the wording of PUB and DPUB ("PUB invalid
// message body size 0", "PUB message too big 105 > 100"); any other code, normally
// [ErrBadBody], gives the wording of IDENTIFY, AUTH and MPUB ("IDENTIFY invalid body size 0",
// "IDENTIFY body too big 200 > 100"). Read errors are kept as the [Error.Err] cause.
func ReadBody(r io.Reader, buf []byte, maxSize int64, code, cmd string) ([]byte, error) {
	noun := "body"
	if code == ErrBadMessage {
		noun = "message body"
	}
	// The size is read into buf when it can hold it: a local array passed to an io.Reader
	// escapes to the heap, and this runs for every PUB.
	var hdr []byte
	if cap(buf) >= 4 {
		hdr = buf[:4]
	} else {
		hdr = make([]byte, 4)
	}
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, wrapFatal(err, code, cmd+" failed to read "+noun+" size")
	}
	size := int64(int32(binary.BigEndian.Uint32(hdr)))
	if size <= 0 {
		return nil, NewFatalError(code, "%s invalid %s size %d", cmd, noun, size)
	}
	if size > maxSize {
		if code == ErrBadMessage {
			return nil, NewFatalError(code, "%s message too big %d > %d", cmd, size, maxSize)
		}
		return nil, NewFatalError(code, "%s body too big %d > %d", cmd, size, maxSize)
	}
	var body []byte
	if int64(cap(buf)) >= size {
		body = buf[:size]
	} else {
		body = make([]byte, size)
	}
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, wrapFatal(noEOF(err), code, cmd+" failed to read "+noun)
	}
	return body, nil
}

// ParseMPUB reads and validates the payload that follows an MPUB command line:
//
//	[4-byte body size][4-byte count]([4-byte message size][message])*count
//
// The body size must be 1..maxBodySize, the count 1..(maxBodySize-4)/5 (the most messages of
// one byte that fit), each message 1..maxMsgSize bytes, and the messages must fill the
// declared body exactly. NSQ uses the body size only as an upper bound and reads as far as
// the message sizes say (reference §10 item 37), so a lying client desynchronises the
// stream; here the body size is authoritative and exactly that many bytes are consumed.
//
// Validation is all-or-nothing: on any error no message is returned. The messages alias one
// buffer of the body's size. Errors are fatal [*Error]s with NSQ's codes and descriptions:
// E_BAD_BODY for the body size, count and mismatch, E_BAD_MESSAGE for a message.
func ParseMPUB(r io.Reader, maxMsgSize, maxBodySize int64) ([][]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, wrapFatal(err, ErrBadBody, "MPUB failed to read body size")
	}
	bodyLen := int64(int32(binary.BigEndian.Uint32(hdr[:])))
	if bodyLen <= 0 {
		return nil, NewFatalError(ErrBadBody, "MPUB invalid body size %d", bodyLen)
	}
	if bodyLen > maxBodySize {
		return nil, NewFatalError(ErrBadBody, "MPUB body too big %d > %d", bodyLen, maxBodySize)
	}
	if bodyLen < 4 {
		// Too short to hold the count; saying so now avoids reading the next command's
		// bytes as one.
		return nil, NewFatalError(ErrBadBody, "MPUB invalid body size %d", bodyLen)
	}
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, wrapFatal(noEOF(err), ErrBadBody, "MPUB failed to read message count")
	}
	count := int64(int32(binary.BigEndian.Uint32(hdr[:])))
	// Each message needs at least 5 bytes (size and one byte of data): NSQ's bound, from
	// maxBodySize. A count the actual body cannot hold fails on the first message that is
	// missing or empty, with NSQ's message-level error.
	if count <= 0 || count > (maxBodySize-4)/5 {
		return nil, NewFatalError(ErrBadBody, "MPUB invalid message count %d", count)
	}
	data := make([]byte, bodyLen-4)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, wrapFatal(noEOF(err), ErrBadBody, "MPUB failed to read body")
	}
	return splitMessages(data, int(count), maxMsgSize, bodyLen)
}

// ParseMPUBBinary validates the body of an HTTP POST /mpub?binary=true:
//
//	[4-byte count]([4-byte message size][message])*count
//
// with the rules of [ParseMPUB]: the count must fit the body, each message is
// 1..maxMsgSize bytes, and the messages must fill the body exactly (NSQ ignores trailing
// bytes). The messages alias body. Errors are fatal [*Error]s; the HTTP handler turns their
// code into a 413 reason as NSQ does ("E_BAD_MESSAGE" -> "BAD_MESSAGE").
func ParseMPUBBinary(body []byte, maxMsgSize, maxBodySize int64) ([][]byte, error) {
	if len(body) < 4 {
		return nil, NewFatalError(ErrBadBody, "MPUB failed to read message count")
	}
	count := int64(int32(binary.BigEndian.Uint32(body)))
	if count <= 0 || count > (maxBodySize-4)/5 {
		return nil, NewFatalError(ErrBadBody, "MPUB invalid message count %d", count)
	}
	return splitMessages(body[4:], int(count), maxMsgSize, int64(len(body)))
}

// splitMessages cuts count size-prefixed messages out of data, which must hold exactly
// them. bodyLen is only for the mismatch error's text. The slice is sized by what data can
// hold, never by the count a client claims.
func splitMessages(data []byte, count int, maxMsgSize, bodyLen int64) ([][]byte, error) {
	msgs := make([][]byte, 0, min(count, len(data)/5+1))
	for i := range count {
		if len(data) < 4 {
			return nil, NewFatalError(ErrBadMessage, "MPUB failed to read message(%d) body size", i)
		}
		size := int64(int32(binary.BigEndian.Uint32(data)))
		if size <= 0 {
			return nil, NewFatalError(ErrBadMessage, "MPUB invalid message(%d) body size %d", i, size)
		}
		if size > maxMsgSize {
			return nil, NewFatalError(ErrBadMessage, "MPUB message too big %d > %d", size, maxMsgSize)
		}
		data = data[4:]
		if int64(len(data)) < size {
			return nil, NewFatalError(ErrBadMessage, "MPUB failed to read message body")
		}
		// A full slice expression, so that appending to one message cannot overwrite the
		// next in the shared buffer.
		msgs = append(msgs, data[:size:size])
		data = data[size:]
	}
	if len(data) != 0 {
		return nil, NewFatalError(ErrBadBody,
			"MPUB body size %d does not match its messages (%d bytes left over)", bodyLen, len(data))
	}
	return msgs, nil
}
