package protocol_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	gonsq "github.com/nsqio/go-nsq"

	"github.com/ternmq/tern/internal/protocol"
)

func TestMagic(t *testing.T) {
	if protocol.MagicV1 != "  V1" || protocol.MagicV2 != "  V2" {
		t.Errorf("magics = %q %q", protocol.MagicV1, protocol.MagicV2)
	}
	if string(gonsq.MagicV2) != protocol.MagicV2 {
		t.Errorf("go-nsq magic %q differs", gonsq.MagicV2)
	}
}

func TestAppendFrame(t *testing.T) {
	tests := []struct {
		name string
		ft   protocol.FrameType
		data string
		want []byte
	}{
		{"ok", protocol.FrameTypeResponse, "OK", cat(be32(6), be32(0), "OK")},
		{"heartbeat", protocol.FrameTypeResponse, protocol.Heartbeat, cat(be32(15), be32(0), "_heartbeat_")},
		{"error", protocol.FrameTypeError, "E_INVALID x", cat(be32(15), be32(1), "E_INVALID x")},
		{"empty", protocol.FrameTypeMessage, "", cat(be32(4), be32(2))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := protocol.AppendFrame([]byte("pre"), tt.ft, []byte(tt.data))
			if want := cat("pre", tt.want); !bytes.Equal(got, want) {
				t.Errorf("AppendFrame = %x, want %x", got, want)
			}
			// go-nsq must read what we write.
			ft, data, err := gonsq.ReadUnpackedResponse(bytes.NewReader(tt.want))
			if err != nil || protocol.FrameType(ft) != tt.ft || string(data) != tt.data {
				t.Errorf("go-nsq read (%d, %q, %v), want (%d, %q)", ft, data, err, tt.ft, tt.data)
			}
			ft2, data2, err := protocol.ReadFrame(bytes.NewReader(tt.want), 0)
			if err != nil || ft2 != tt.ft || string(data2) != tt.data {
				t.Errorf("ReadFrame = (%v, %q, %v), want (%v, %q)", ft2, data2, err, tt.ft, tt.data)
			}
		})
	}
}

func TestReadFrameErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		maxSize int
		is      error
	}{
		{"empty input", nil, 0, io.EOF},
		{"partial size", []byte{0, 0}, 0, io.ErrUnexpectedEOF},
		{"size 0", be32(0), 0, protocol.ErrFrameSize},
		{"size 3", be32(3), 0, protocol.ErrFrameSize},
		{"negative size", be32(0xffffffff), 0, protocol.ErrFrameSize},
		{"top bit size", be32(0x80000000), 0, protocol.ErrFrameSize},
		{"over max", cat(be32(11), be32(0), "1234567"), 10, protocol.ErrFrameSize},
		{"missing type", be32(8), 0, io.ErrUnexpectedEOF},
		{"partial type", cat(be32(8), []byte{0, 0}), 0, io.ErrUnexpectedEOF},
		{"missing data", cat(be32(8), be32(0)), 0, io.ErrUnexpectedEOF},
		{"partial data", cat(be32(8), be32(0), "ab"), 0, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, data, err := protocol.ReadFrame(bytes.NewReader(tt.in), tt.maxSize)
			if !errors.Is(err, tt.is) {
				t.Errorf("ReadFrame error = %v, want %v", err, tt.is)
			}
			if data != nil {
				t.Errorf("data = %q on error", data)
			}
		})
	}
}

func TestReadFrameAtMax(t *testing.T) {
	in := cat(be32(10), be32(2), "123456")
	ft, data, err := protocol.ReadFrame(bytes.NewReader(in), 10)
	if err != nil || ft != protocol.FrameTypeMessage || string(data) != "123456" {
		t.Errorf("ReadFrame = (%v, %q, %v)", ft, data, err)
	}
}

func TestReadFrameHostileSizeDoesNotAllocate(t *testing.T) {
	// The size says 64 MiB; with a bound the reader must refuse before allocating.
	in := cat(be32(64<<20), be32(2))
	perRun := allocBytes(t, 10, func() {
		_, _, err := protocol.ReadFrame(bytes.NewReader(in), 1<<20)
		if !errors.Is(err, protocol.ErrFrameSize) {
			t.Fatalf("error = %v", err)
		}
	})
	if perRun > 4096 {
		t.Errorf("ReadFrame allocated %d bytes on a refused frame", perRun)
	}
}

func TestFrameTypeString(t *testing.T) {
	tests := []struct {
		ft   protocol.FrameType
		want string
	}{
		{protocol.FrameTypeResponse, "response"},
		{protocol.FrameTypeError, "error"},
		{protocol.FrameTypeMessage, "message"},
		{7, "FrameType(7)"},
	}
	for _, tt := range tests {
		if got := tt.ft.String(); got != tt.want {
			t.Errorf("FrameType(%d).String() = %q, want %q", int32(tt.ft), got, tt.want)
		}
	}
}

func TestV1Response(t *testing.T) {
	got := protocol.AppendV1Response(nil, []byte("OK"))
	if want := cat(be32(2), "OK"); !bytes.Equal(got, want) {
		t.Fatalf("AppendV1Response = %x, want %x", got, want)
	}
	data, err := protocol.ReadV1Response(bytes.NewReader(got), 2)
	if err != nil || string(data) != "OK" {
		t.Errorf("ReadV1Response = (%q, %v)", data, err)
	}
	// go-nsq's ReadResponse reads the same layout (nsqd reads lookupd this way).
	data, err = gonsq.ReadResponse(bytes.NewReader(got))
	if err != nil || string(data) != "OK" {
		t.Errorf("go-nsq ReadResponse = (%q, %v)", data, err)
	}
	empty, err := protocol.ReadV1Response(bytes.NewReader(be32(0)), 0)
	if err != nil || len(empty) != 0 {
		t.Errorf("empty response = (%q, %v)", empty, err)
	}
}

func TestReadV1ResponseErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		maxSize int
		is      error
	}{
		{"empty input", nil, 0, io.EOF},
		{"negative", be32(0xfffffffe), 0, protocol.ErrFrameSize},
		{"over max", cat(be32(5), "hello"), 4, protocol.ErrFrameSize},
		{"truncated", cat(be32(5), "he"), 0, io.ErrUnexpectedEOF},
		{"no data", be32(5), 0, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := protocol.ReadV1Response(bytes.NewReader(tt.in), tt.maxSize); !errors.Is(err, tt.is) {
				t.Errorf("error = %v, want %v", err, tt.is)
			}
		})
	}
}

func TestReadFrameLarge(t *testing.T) {
	// Bigger than the read chunk, so the buffer grows as data arrives.
	data := bytes.Repeat([]byte("0123456789"), 300_001)
	frame := protocol.AppendFrame(nil, protocol.FrameTypeMessage, data)
	ft, got, err := protocol.ReadFrame(bytes.NewReader(frame), 0)
	if err != nil || ft != protocol.FrameTypeMessage || !bytes.Equal(got, data) {
		t.Fatalf("ReadFrame of %d bytes = (%v, %d bytes, %v)", len(data), ft, len(got), err)
	}
	resp := protocol.AppendV1Response(nil, data)
	got, err = protocol.ReadV1Response(bytes.NewReader(resp), 0)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadV1Response of %d bytes = (%d bytes, %v)", len(data), len(got), err)
	}
}

func TestReadFrameUnboundedSizeCostsOnlyWhatArrives(t *testing.T) {
	// No bound, a 1 GiB size and ten bytes of data: the reader must not allocate 1 GiB.
	in := cat(be32(1<<30), be32(2), "0123456789")
	perRun := allocBytes(t, 3, func() {
		if _, _, err := protocol.ReadFrame(bytes.NewReader(in), 0); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("error = %v, want io.ErrUnexpectedEOF", err)
		}
		if _, err := protocol.ReadV1Response(bytes.NewReader(cat(be32(1<<30), "0123456789")), 0); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("error = %v, want io.ErrUnexpectedEOF", err)
		}
	})
	if perRun > 4<<20 {
		t.Errorf("allocated %d bytes for ten bytes of data", perRun)
	}
}
