package nsqd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/ternmq/tern/nsqd/logstore"
)

// encodeCheckpointEntries is the checkpoint a channel with cursor cur and these unfinished
// messages writes.
func encodeCheckpointEntries(cur logstore.Pos, entries []checkpointEntry) []byte {
	buf := appendCheckpointHeader(nil, cur)
	binary.BigEndian.PutUint32(buf[len(buf)-4:], uint32(len(entries)))
	for _, e := range entries {
		buf = appendCheckpointEntry(buf, e)
	}
	return appendCheckpointSum(buf)
}

// FuzzDecodeCheckpoint feeds the checkpoint decoder arbitrary files, as a disk or a power cut
// may leave them: it must refuse anything but a well-formed checkpoint with errBadCheckpoint,
// never panic or allocate beyond what the file holds, and what it accepts must encode back
// to the same bytes.
func FuzzDecodeCheckpoint(f *testing.F) {
	valid := encodeCheckpointEntries(logstore.Pos{Seq: 12, Offset: 4096}, []checkpointEntry{
		{id: 1, pos: logstore.Pos{Seq: 3, Offset: 96}, timestamp: 1e18, attempts: 2},
		{id: 7, pos: logstore.Pos{Seq: 9, Offset: 288}, timestamp: 1e18, due: 2e18, attempts: 1},
	})
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add(encodeCheckpointEntries(logstore.Pos{}, nil))
	f.Add([]byte(checkpointMagic))
	f.Add([]byte{})
	huge := bytes.Clone(valid)
	binary.BigEndian.PutUint32(huge[len(checkpointMagic)+16:], 0xffffffff)
	f.Add(huge)
	f.Fuzz(func(t *testing.T, data []byte) {
		cur, entries, err := decodeCheckpoint(data)
		if err != nil {
			if !errors.Is(err, errBadCheckpoint) {
				t.Fatalf("error %v is not errBadCheckpoint", err)
			}
			if entries != nil {
				t.Fatal("entries returned with an error")
			}
			return
		}
		if len(entries)*checkpointEntrySizeV1 > len(data) {
			t.Fatalf("%d entries from %d bytes", len(entries), len(data))
		}
		if string(data[:len(checkpointMagicV1)]) == checkpointMagicV1 {
			return // an old version, which is read but never written
		}
		if again := encodeCheckpointEntries(cur, entries); !bytes.Equal(again, data) {
			t.Fatalf("accepted %x, which encodes back as %x", data, again)
		}
	})
}

func TestCheckpointRoundTrip(t *testing.T) {
	cur := logstore.Pos{Seq: 40, Offset: 1 << 20}
	entries := []checkpointEntry{
		{id: 5, pos: logstore.Pos{Seq: 1}, timestamp: 100, attempts: 65535},
		{id: 6, pos: logstore.Pos{Seq: 39, Offset: 1<<20 - 64}, timestamp: -1, due: 1 << 62, attempts: 1,
			firstDeliv: 77, lastDeliv: 88, deadReason: reasonTimeout},
	}
	gotCur, got, err := decodeCheckpoint(encodeCheckpointEntries(cur, entries))
	if err != nil || gotCur != cur || len(got) != 2 || got[0] != entries[0] || got[1] != entries[1] {
		t.Fatalf("round trip: %v %v %v", gotCur, got, err)
	}
}

// TestCheckpointVersion1 reads a checkpoint written before the first delivery time and the
// dead-letter reason were kept.
func TestCheckpointVersion1(t *testing.T) {
	b := []byte(checkpointMagicV1)
	b = binary.BigEndian.AppendUint64(b, 7)  // cursor seq
	b = binary.BigEndian.AppendUint64(b, 90) // cursor offset
	b = binary.BigEndian.AppendUint32(b, 1)
	for _, v := range []uint64{42, 3, 60, 1000, 2000} { // id, seq, offset, timestamp, due
		b = binary.BigEndian.AppendUint64(b, v)
	}
	b = binary.BigEndian.AppendUint16(b, 4)
	b = appendCheckpointSum(b)
	cur, entries, err := decodeCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	want := checkpointEntry{id: 42, pos: logstore.Pos{Seq: 3, Offset: 60}, timestamp: 1000, due: 2000, attempts: 4}
	if cur != (logstore.Pos{Seq: 7, Offset: 90}) || len(entries) != 1 || entries[0] != want {
		t.Errorf("decoded %+v %+v", cur, entries)
	}
}
