package logstore

import (
	"encoding/binary"
	"hash/crc32"
)

const (
	// lenSize is the size of a record's length prefix; the length counts what follows it.
	lenSize = 4
	// headerSize is the size of everything in a record before the body:
	// length, CRC, ID, timestamp and deliver-at time.
	headerSize = lenSize + 4 + 8 + 8 + 8
	// minRest is the smallest valid length field: a record with an empty body.
	minRest = headerSize - lenSize
	// crcFrom is the offset in a record where the checksummed bytes start.
	crcFrom = lenSize + 4
)

// castagnoli is the CRC-32C table. It is computed once and only ever read.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordSize is the encoded size of a record with a body of n bytes.
func recordSize(n int) int { return headerSize + n }

// appendRecord appends the encoded form of r to buf. The caller has checked the body size.
func appendRecord(buf []byte, r *Record) []byte {
	start := len(buf)
	buf = binary.BigEndian.AppendUint32(buf, uint32(minRest+len(r.Body)))
	buf = append(buf, 0, 0, 0, 0) // CRC, filled in below once the rest is in place
	buf = binary.BigEndian.AppendUint64(buf, r.ID)
	buf = binary.BigEndian.AppendUint64(buf, uint64(r.Timestamp))
	buf = binary.BigEndian.AppendUint64(buf, uint64(r.DeliverAt))
	buf = append(buf, r.Body...)
	binary.BigEndian.PutUint32(buf[start+lenSize:], crc32.Checksum(buf[start+crcFrom:], castagnoli))
	return buf
}

// restLen reads the length field at the start of b (len(b) >= lenSize) and reports whether
// it is one a valid record can have: the body must fit maxBody. It returns the whole record's
// size.
func restLen(b []byte, maxBody int) (int, bool) {
	n := binary.BigEndian.Uint32(b)
	if n < minRest || uint64(n) > uint64(minRest+maxBody) {
		return 0, false
	}
	return lenSize + int(n), true
}

// decodeRecord checks the CRC of the whole record in b (len(b) is the record's size, taken
// from restLen) and decodes it. The body aliases b and is capped so that appending to it
// can never write over the bytes that follow.
func decodeRecord(b []byte) (Record, bool) {
	if crc32.Checksum(b[crcFrom:], castagnoli) != binary.BigEndian.Uint32(b[lenSize:]) {
		return Record{}, false
	}
	return Record{
		ID:        binary.BigEndian.Uint64(b[crcFrom:]),
		Timestamp: int64(binary.BigEndian.Uint64(b[crcFrom+8:])),
		DeliverAt: int64(binary.BigEndian.Uint64(b[crcFrom+16:])),
		Body:      b[headerSize:len(b):len(b)],
	}, true
}

// decodeTrusted decodes a record that this process encoded itself (no CRC check).
func decodeTrusted(b []byte) Record {
	return Record{
		ID:        binary.BigEndian.Uint64(b[crcFrom:]),
		Timestamp: int64(binary.BigEndian.Uint64(b[crcFrom+8:])),
		DeliverAt: int64(binary.BigEndian.Uint64(b[crcFrom+16:])),
		Body:      b[headerSize:len(b):len(b)],
	}
}
