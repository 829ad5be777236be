package protocol_test

import (
	"bufio"
	"bytes"
	"regexp"
	"testing"

	"github.com/ternmq/tern/internal/protocol"
)

func BenchmarkReadLine(b *testing.B) {
	r := bufio.NewReader(&endless{pattern: []byte("REQ 0123456789abcdef 1500\n")})
	dst := make([][]byte, 0, 8)
	b.ReportAllocs()
	for b.Loop() {
		line, err := protocol.ReadLine(r, 1024)
		if err != nil {
			b.Fatal(err)
		}
		dst = protocol.SplitParams(line, dst)
		if _, ok := protocol.ParseMessageID(dst[1]); !ok {
			b.Fatal("bad id")
		}
		if _, err := protocol.ParseInt(dst[2]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSplitParams(b *testing.B) {
	line := []byte("SUB some_topic some_channel#ephemeral")
	dst := make([][]byte, 0, 8)
	b.ReportAllocs()
	for b.Loop() {
		dst = protocol.SplitParams(line, dst)
	}
}

func BenchmarkParseInt(b *testing.B) {
	in := []byte("2500")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := protocol.ParseInt(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	buf := make([]byte, 0, 64)
	ok := []byte(protocol.OK)
	b.ReportAllocs()
	for b.Loop() {
		buf = protocol.AppendFrame(buf[:0], protocol.FrameTypeResponse, ok)
	}
}

func BenchmarkAppendMessageFrame(b *testing.B) {
	id := protocol.NewMessageID(42)
	body := bytes.Repeat([]byte("x"), 100)
	buf := make([]byte, 0, 256)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		buf = protocol.AppendMessageFrame(buf[:0], 1700000000000000000, 1, id, body)
	}
}

func BenchmarkDecodeMessage(b *testing.B) {
	data := protocol.AppendMessageFrame(nil, 1, 1, protocol.NewMessageID(42), []byte("hello"))[protocol.FrameHeaderLength:]
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, _, err := protocol.DecodeMessage(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewMessageID(b *testing.B) {
	var v uint64
	b.ReportAllocs()
	for b.Loop() {
		v++
		_ = protocol.NewMessageID(v)
	}
}

func BenchmarkParseMessageID(b *testing.B) {
	id := protocol.NewMessageID(0x0123456789abcdef)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := protocol.ParseMessageID(id[:]); !ok {
			b.Fatal("bad id")
		}
	}
}

func BenchmarkReadBody(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 100)
	r := bufio.NewReader(&endless{pattern: cat(be32(100), body)})
	buf := make([]byte, 1024)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := protocol.ReadBody(r, buf, 1<<20, protocol.ErrBadMessage, "PUB"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseMPUB(b *testing.B) {
	msgs := make([]string, 100)
	for i := range msgs {
		msgs[i] = string(bytes.Repeat([]byte("x"), 100))
	}
	body := mpubBody(msgs...)
	in := cat(be32(uint32(len(body))), body)
	r := bytes.NewReader(in)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(in)
		if _, err := protocol.ParseMPUB(r, 1<<20, 5<<20); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIsValidTopicName(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if !protocol.IsValidTopicName("some_topic.name-1#ephemeral") {
			b.Fatal("rejected")
		}
	}
}

// BenchmarkNameRegexp is NSQ's way of validating names, for comparison.
func BenchmarkNameRegexp(b *testing.B) {
	re := regexp.MustCompile(`^[\.a-zA-Z0-9_-]+(#ephemeral)?$`)
	b.ReportAllocs()
	for b.Loop() {
		if !re.MatchString("some_topic.name-1#ephemeral") {
			b.Fatal("rejected")
		}
	}
}
