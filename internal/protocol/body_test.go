package protocol_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/ternmq/tern/internal/protocol"
)

func TestReadBody(t *testing.T) {
	tests := []struct {
		name      string
		in        []byte
		max       int64
		code, cmd string
		want      string
		errText   string
		errIs     error
	}{
		{name: "pub ok", in: cat(be32(5), "hello"), max: 100, code: protocol.ErrBadMessage, cmd: "PUB", want: "hello"},
		{name: "pub at max", in: cat(be32(5), "hello"), max: 5, code: protocol.ErrBadMessage, cmd: "PUB", want: "hello"},
		{name: "pub size 0", in: be32(0), max: 100, code: protocol.ErrBadMessage, cmd: "PUB",
			errText: "E_BAD_MESSAGE PUB invalid message body size 0"},
		{name: "pub negative size", in: be32(0xfffffffb), max: 100, code: protocol.ErrBadMessage, cmd: "PUB",
			errText: "E_BAD_MESSAGE PUB invalid message body size -5"},
		{name: "pub top bit size", in: be32(0x80000000), max: 100, code: protocol.ErrBadMessage, cmd: "PUB",
			errText: "E_BAD_MESSAGE PUB invalid message body size -2147483648"},
		{name: "pub too big", in: cat(be32(105), strings.Repeat("x", 105)), max: 100, code: protocol.ErrBadMessage, cmd: "PUB",
			errText: "E_BAD_MESSAGE PUB message too big 105 > 100"},
		{name: "dpub too big", in: be32(0x7fffffff), max: 1 << 20, code: protocol.ErrBadMessage, cmd: "DPUB",
			errText: "E_BAD_MESSAGE DPUB message too big 2147483647 > 1048576"},
		{name: "pub no size", in: nil, max: 100, code: protocol.ErrBadMessage, cmd: "PUB",
			errText: "E_BAD_MESSAGE PUB failed to read message body size", errIs: io.EOF},
		{name: "pub partial size", in: []byte{0, 0}, max: 100, code: protocol.ErrBadMessage, cmd: "PUB",
			errText: "E_BAD_MESSAGE PUB failed to read message body size", errIs: io.ErrUnexpectedEOF},
		{name: "pub truncated body", in: cat(be32(5), "hel"), max: 100, code: protocol.ErrBadMessage, cmd: "PUB",
			errText: "E_BAD_MESSAGE PUB failed to read message body", errIs: io.ErrUnexpectedEOF},
		{name: "pub missing body", in: be32(5), max: 100, code: protocol.ErrBadMessage, cmd: "PUB",
			errText: "E_BAD_MESSAGE PUB failed to read message body", errIs: io.ErrUnexpectedEOF},
		{name: "identify ok", in: cat(be32(2), "{}"), max: 100, code: protocol.ErrBadBody, cmd: "IDENTIFY", want: "{}"},
		{name: "identify size 0", in: be32(0), max: 100, code: protocol.ErrBadBody, cmd: "IDENTIFY",
			errText: "E_BAD_BODY IDENTIFY invalid body size 0"},
		{name: "identify negative", in: be32(0xffffffff), max: 100, code: protocol.ErrBadBody, cmd: "IDENTIFY",
			errText: "E_BAD_BODY IDENTIFY invalid body size -1"},
		{name: "identify too big", in: be32(200), max: 100, code: protocol.ErrBadBody, cmd: "IDENTIFY",
			errText: "E_BAD_BODY IDENTIFY body too big 200 > 100"},
		{name: "auth no size", in: nil, max: 100, code: protocol.ErrBadBody, cmd: "AUTH",
			errText: "E_BAD_BODY AUTH failed to read body size", errIs: io.EOF},
		{name: "auth truncated", in: cat(be32(4), "se"), max: 100, code: protocol.ErrBadBody, cmd: "AUTH",
			errText: "E_BAD_BODY AUTH failed to read body", errIs: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := protocol.ReadBody(bytes.NewReader(tt.in), nil, tt.max, tt.code, tt.cmd)
			if tt.errText == "" {
				if err != nil || string(body) != tt.want {
					t.Fatalf("ReadBody = (%q, %v), want %q", body, err, tt.want)
				}
				return
			}
			wantError(t, err, tt.errText, true)
			if tt.errIs != nil && !errors.Is(err, tt.errIs) {
				t.Errorf("error %v does not wrap %v", err, tt.errIs)
			}
			if body != nil {
				t.Errorf("body = %q on error", body)
			}
		})
	}
}

func TestReadBodyBuffer(t *testing.T) {
	in := cat(be32(5), "hello")
	buf := make([]byte, 3, 8)
	body, err := protocol.ReadBody(bytes.NewReader(in), buf, 100, protocol.ErrBadMessage, "PUB")
	if err != nil || string(body) != "hello" {
		t.Fatalf("ReadBody = (%q, %v)", body, err)
	}
	if &body[0] != &buf[:1][0] {
		t.Error("body was not read into buf although cap(buf) sufficed")
	}

	small := make([]byte, 4)
	body, err = protocol.ReadBody(bytes.NewReader(in), small, 100, protocol.ErrBadMessage, "PUB")
	if err != nil || string(body) != "hello" || &body[0] == &small[0] {
		t.Errorf("ReadBody with a small buf = (%q, %v), want a new slice", body, err)
	}
}

func TestReadBodyHostileSizeDoesNotAllocate(t *testing.T) {
	in := be32(64 << 20) // 64 MiB declared, nothing sent
	perRun := allocBytes(t, 10, func() {
		_, err := protocol.ReadBody(bytes.NewReader(in), nil, 1<<20, protocol.ErrBadBody, "IDENTIFY")
		if err == nil {
			t.Fatal("oversized body accepted")
		}
	})
	if perRun > 4096 {
		t.Errorf("ReadBody allocated %d bytes for a refused body", perRun)
	}
}

func TestParseMPUB(t *testing.T) {
	const maxMsg, maxBody = 10, 100
	withSize := func(body []byte) []byte { return cat(be32(uint32(len(body))), body) }
	tests := []struct {
		name    string
		in      []byte
		want    []string
		errText string
		errIs   error
	}{
		{name: "one", in: withSize(mpubBody("hello")), want: []string{"hello"}},
		{name: "three", in: withSize(mpubBody("a", "bb", "0123456789")), want: []string{"a", "bb", "0123456789"}},
		{name: "no body size", in: nil, errText: "E_BAD_BODY MPUB failed to read body size", errIs: io.EOF},
		{name: "body size 0", in: be32(0), errText: "E_BAD_BODY MPUB invalid body size 0"},
		{name: "body size negative", in: be32(0xfffffff0), errText: "E_BAD_BODY MPUB invalid body size -16"},
		{name: "body too big", in: be32(101), errText: "E_BAD_BODY MPUB body too big 101 > 100"},
		{name: "body too small for a count", in: cat(be32(3), "abc"), errText: "E_BAD_BODY MPUB invalid body size 3"},
		{name: "no count", in: be32(9), errText: "E_BAD_BODY MPUB failed to read message count", errIs: io.ErrUnexpectedEOF},
		{name: "count 0", in: cat(be32(9), be32(0)), errText: "E_BAD_BODY MPUB invalid message count 0"},
		{name: "count negative", in: cat(be32(9), be32(0xffffffff)), errText: "E_BAD_BODY MPUB invalid message count -1"},
		{name: "count over max body", in: cat(be32(100), be32(20)), errText: "E_BAD_BODY MPUB invalid message count 20"},
		{name: "count over body", in: withSize(cat(be32(3), be32(1), "a", be32(1), "b")), errText: "E_BAD_MESSAGE MPUB failed to read message(2) body size"},
		{name: "one empty message", in: withSize(cat(be32(1), be32(0))), errText: "E_BAD_MESSAGE MPUB invalid message(0) body size 0"},
		{name: "truncated body", in: cat(be32(20), be32(1), be32(5), "hel"),
			errText: "E_BAD_BODY MPUB failed to read body", errIs: io.ErrUnexpectedEOF},
		{name: "message size 0", in: withSize(cat(be32(1), be32(0), "xxxx")),
			errText: "E_BAD_MESSAGE MPUB invalid message(0) body size 0"},
		{name: "message size negative", in: withSize(cat(be32(2), be32(1), "a", be32(0xfffffffe), "xx")),
			errText: "E_BAD_MESSAGE MPUB invalid message(1) body size -2"},
		{name: "message too big", in: withSize(cat(be32(1), be32(11), "01234567890")),
			errText: "E_BAD_MESSAGE MPUB message too big 11 > 10"},
		{name: "message runs past body", in: withSize(cat(be32(1), be32(6), "hello")),
			errText: "E_BAD_MESSAGE MPUB failed to read message body"},
		{name: "size runs past body", in: withSize(cat(be32(2), be32(6), "abcdef", "xy")),
			errText: "E_BAD_MESSAGE MPUB failed to read message(1) body size"},
		// NSQ accepts this and reads the leftover bytes as the next command (§10 item 37).
		{name: "bytes left over", in: withSize(cat(mpubBody("hello"), "NOP\n")),
			errText: "E_BAD_BODY MPUB body size 17 does not match its messages (4 bytes left over)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs, err := protocol.ParseMPUB(bytes.NewReader(tt.in), maxMsg, maxBody)
			if tt.errText == "" {
				if err != nil {
					t.Fatalf("ParseMPUB error: %v", err)
				}
				wantMsgs(t, msgs, tt.want)
				return
			}
			wantError(t, err, tt.errText, true)
			if tt.errIs != nil && !errors.Is(err, tt.errIs) {
				t.Errorf("error %v does not wrap %v", err, tt.errIs)
			}
			if msgs != nil {
				t.Errorf("messages %q returned with an error", msgs)
			}
		})
	}
}

func wantMsgs(t *testing.T, got [][]byte, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d messages %q, want %q", len(got), got, want)
	}
	for i := range got {
		if string(got[i]) != want[i] {
			t.Errorf("message %d = %q, want %q", i, got[i], want[i])
		}
		if cap(got[i]) != len(got[i]) {
			t.Errorf("message %d has spare capacity %d; appending would overwrite its neighbour", i, cap(got[i]))
		}
	}
}

func TestParseMPUBConsumesExactlyTheBody(t *testing.T) {
	in := cat(be32(uint32(len(mpubBody("a", "b")))), mpubBody("a", "b"), "NOP\n")
	r := bytes.NewReader(in)
	if _, err := protocol.ParseMPUB(r, 10, 100); err != nil {
		t.Fatal(err)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "NOP\n" {
		t.Errorf("left in the stream: %q, want the next command", rest)
	}
}

func TestParseMPUBHostileSizesDoNotAllocate(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"huge body size", be32(0x7fffffff)},
		{"huge count", cat(be32(1<<20), be32(0x7fffffff))},
		{"count beyond a small body", cat(be32(64), be32(1<<20))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			perRun := allocBytes(t, 10, func() {
				if _, err := protocol.ParseMPUB(bytes.NewReader(tt.in), 1<<20, 1<<20); err == nil {
					t.Fatal("accepted")
				}
			})
			if perRun > 4096 {
				t.Errorf("ParseMPUB allocated %d bytes before refusing", perRun)
			}
		})
	}
}

func TestParseMPUBBinary(t *testing.T) {
	tests := []struct {
		name    string
		body    []byte
		want    []string
		errText string
	}{
		{name: "two", body: mpubBody("hello", "world"), want: []string{"hello", "world"}},
		{name: "empty", body: nil, errText: "E_BAD_BODY MPUB failed to read message count"},
		{name: "short count", body: []byte{0, 0, 1}, errText: "E_BAD_BODY MPUB failed to read message count"},
		{name: "count 0", body: be32(0), errText: "E_BAD_BODY MPUB invalid message count 0"},
		{name: "count negative", body: be32(0x80000000), errText: "E_BAD_BODY MPUB invalid message count -2147483648"},
		{name: "count beyond body", body: cat(be32(2), be32(1), "a"), errText: "E_BAD_MESSAGE MPUB failed to read message(1) body size"},
		{name: "count beyond the bound", body: cat(be32(20), be32(1), "a"), errText: "E_BAD_BODY MPUB invalid message count 20"},
		{name: "one empty message", body: cat(be32(1), be32(0)), errText: "E_BAD_MESSAGE MPUB invalid message(0) body size 0"},
		{name: "message too big", body: mpubBody("01234567890"), errText: "E_BAD_MESSAGE MPUB message too big 11 > 10"},
		{name: "message size 0", body: cat(be32(1), be32(0), "x"), errText: "E_BAD_MESSAGE MPUB invalid message(0) body size 0"},
		{name: "message past end", body: cat(be32(1), be32(3), "ab"), errText: "E_BAD_MESSAGE MPUB failed to read message body"},
		{name: "size past end", body: cat(be32(2), be32(6), "abcdef", "xy"), errText: "E_BAD_MESSAGE MPUB failed to read message(1) body size"},
		{name: "trailing bytes", body: cat(mpubBody("a"), "zz"),
			errText: "E_BAD_BODY MPUB body size 11 does not match its messages (2 bytes left over)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs, err := protocol.ParseMPUBBinary(tt.body, 10, 100)
			if tt.errText == "" {
				if err != nil {
					t.Fatalf("ParseMPUBBinary error: %v", err)
				}
				wantMsgs(t, msgs, tt.want)
				if &msgs[0][0] != &tt.body[8] {
					t.Error("messages do not alias the body")
				}
				return
			}
			wantError(t, err, tt.errText, true)
			if msgs != nil {
				t.Errorf("messages %q returned with an error", msgs)
			}
		})
	}
}
