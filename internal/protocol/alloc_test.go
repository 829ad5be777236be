package protocol_test

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/ternmq/tern/internal/protocol"
)

// TestHotPathsDoNotAllocate pins the zero-allocation promise of the per-command and
// per-message paths, so that a regression fails a test rather than only slowing a benchmark.
func TestHotPathsDoNotAllocate(t *testing.T) {
	id := protocol.NewMessageID(0x0123456789abcdef)
	body := bytes.Repeat([]byte("b"), 100)
	frame := protocol.AppendMessageFrame(nil, 1, 1, id, body)[protocol.FrameHeaderLength:]
	buf := make([]byte, 0, 256)
	dst := make([][]byte, 0, 8)
	lines := bufio.NewReader(&endless{pattern: []byte("REQ 0123456789abcdef 1500\r\n")})
	pubs := bufio.NewReader(&endless{pattern: cat(be32(100), body)})
	bodyBuf := make([]byte, 128)

	tests := []struct {
		name string
		f    func()
	}{
		{"ReadLine+SplitParams+ParseMessageID+ParseInt", func() {
			line, err := protocol.ReadLine(lines, 64)
			if err != nil {
				t.Fatal(err)
			}
			dst = protocol.SplitParams(line, dst)
			if _, ok := protocol.ParseMessageID(dst[1]); !ok {
				t.Fatal("bad id")
			}
			if _, err := protocol.ParseInt(dst[2]); err != nil {
				t.Fatal(err)
			}
		}},
		{"ParseInt error", func() {
			if _, err := protocol.ParseInt([]byte("12x")); err == nil {
				t.Fatal("accepted")
			}
		}},
		{"AppendFrame", func() { buf = protocol.AppendFrame(buf[:0], protocol.FrameTypeResponse, []byte("OK")) }},
		{"AppendMessageFrame", func() { buf = protocol.AppendMessageFrame(buf[:0], 1, 2, id, body) }},
		{"NewMessageID", func() { id = protocol.NewMessageID(uint64(len(buf))) }},
		{"DecodeMessage", func() {
			if _, _, _, _, err := protocol.DecodeMessage(frame); err != nil {
				t.Fatal(err)
			}
		}},
		{"ReadBody into buf", func() {
			if _, err := protocol.ReadBody(pubs, bodyBuf, 1024, protocol.ErrBadMessage, "PUB"); err != nil {
				t.Fatal(err)
			}
		}},
		{"IsValidChannelName", func() {
			if !protocol.IsValidChannelName("archive#ephemeral") {
				t.Fatal("rejected")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(200, tt.f); n != 0 {
				t.Errorf("%s allocates %v times per call", tt.name, n)
			}
		})
	}
}
