package protocol_test

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"testing"

	gonsq "github.com/nsqio/go-nsq"

	"github.com/ternmq/tern/internal/protocol"
)

func TestMessageID(t *testing.T) {
	tests := []struct {
		v    uint64
		text string
	}{
		{0, "0000000000000000"},
		{1, "0000000000000001"},
		{0xabcdef, "0000000000abcdef"},
		{0x0123456789abcdef, "0123456789abcdef"},
		{math.MaxUint64, "ffffffffffffffff"},
		{1 << 63, "8000000000000000"},
	}
	for _, tt := range tests {
		id := protocol.NewMessageID(tt.v)
		if id.String() != tt.text {
			t.Errorf("NewMessageID(%#x) = %q, want %q", tt.v, id.String(), tt.text)
		}
		if got, ok := protocol.ParseMessageID([]byte(tt.text)); !ok || got != tt.v {
			t.Errorf("ParseMessageID(%q) = (%#x, %v), want %#x", tt.text, got, ok, tt.v)
		}
		if got, ok := id.Uint64(); !ok || got != tt.v {
			t.Errorf("%q.Uint64() = (%#x, %v)", tt.text, got, ok)
		}
		// The text is what strconv gives, zero-padded: NSQ hex-encodes the big-endian bytes.
		if want := strconv.FormatUint(tt.v, 16); string(bytes.TrimLeft(id[:], "0")) != want && tt.v != 0 {
			t.Errorf("NewMessageID(%#x) = %q, not the hex digits %q", tt.v, id.String(), want)
		}
	}
}

func TestParseMessageIDInvalid(t *testing.T) {
	tests := []string{
		"",
		"0123456789abcde",   // 15
		"0123456789abcdef0", // 17
		"0123456789ABCDEF",  // upper case is not the canonical form
		"0123456789abcdeg",
		"0123456789abcde ",
		"-123456789abcdef",
		"0x23456789abcdef",
	}
	for _, in := range tests {
		if v, ok := protocol.ParseMessageID([]byte(in)); ok {
			t.Errorf("ParseMessageID(%q) = (%#x, true), want false", in, v)
		}
	}
	var bad protocol.MessageID
	copy(bad[:], "zzzzzzzzzzzzzzzz")
	if _, ok := bad.Uint64(); ok {
		t.Error("Uint64 of a non-hex ID reported ok")
	}
}

func TestAppendMessageFrame(t *testing.T) {
	id := protocol.NewMessageID(0x0123456789abcdef)
	got := protocol.AppendMessageFrame([]byte("pre"), 0x0102030405060708, 0x0a0b, id, []byte("body"))
	want := cat("pre",
		be32(4+26+4), be32(2),
		[]byte{1, 2, 3, 4, 5, 6, 7, 8}, []byte{0x0a, 0x0b},
		"0123456789abcdef", "body")
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendMessageFrame =\n%x, want\n%x", got, want)
	}

	// The frame must read back through ReadFrame and DecodeMessage, ours and go-nsq's.
	ft, data, err := protocol.ReadFrame(bytes.NewReader(got[3:]), 0)
	if err != nil || ft != protocol.FrameTypeMessage {
		t.Fatalf("ReadFrame = (%v, %v)", ft, err)
	}
	ts, attempts, gotID, body, err := protocol.DecodeMessage(data)
	if err != nil || ts != 0x0102030405060708 || attempts != 0x0a0b || gotID != id || string(body) != "body" {
		t.Errorf("DecodeMessage = (%#x, %#x, %q, %q, %v)", ts, attempts, gotID, body, err)
	}
	msg, err := gonsq.DecodeMessage(data)
	if err != nil || msg.Timestamp != 0x0102030405060708 || msg.Attempts != 0x0a0b ||
		msg.ID != gonsq.MessageID(id) || string(msg.Body) != "body" {
		t.Errorf("go-nsq DecodeMessage = (%+v, %v)", msg, err)
	}
}

func TestDecodeGoNSQMessage(t *testing.T) {
	msg := gonsq.NewMessage(gonsq.MessageID(protocol.NewMessageID(42)), []byte("hello"))
	msg.Timestamp = -5 // negative timestamps survive the round trip too
	msg.Attempts = 3
	var buf bytes.Buffer
	if _, err := msg.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	ts, attempts, id, body, err := protocol.DecodeMessage(buf.Bytes())
	if err != nil || ts != -5 || attempts != 3 || id != protocol.NewMessageID(42) || string(body) != "hello" {
		t.Errorf("DecodeMessage = (%d, %d, %q, %q, %v)", ts, attempts, id, body, err)
	}
}

func TestDecodeMessage(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		wantErr bool
	}{
		{"empty", 0, true},
		{"one short of a header", protocol.MessageHeaderLength - 1, true},
		{"header only, empty body", protocol.MessageHeaderLength, false},
		{"with body", protocol.MessageHeaderLength + 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := bytes.Repeat([]byte{'7'}, tt.size)
			_, _, _, body, err := protocol.DecodeMessage(data)
			if tt.wantErr {
				if !errors.Is(err, protocol.ErrShortMessage) {
					t.Errorf("error = %v, want ErrShortMessage", err)
				}
				return
			}
			if err != nil || len(body) != tt.size-protocol.MessageHeaderLength {
				t.Errorf("DecodeMessage = (%q, %v)", body, err)
			}
			if len(body) > 0 && &body[0] != &data[protocol.MessageHeaderLength] {
				t.Error("body does not alias data")
			}
		})
	}
}
