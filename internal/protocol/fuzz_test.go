package protocol_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"regexp"
	"strconv"
	"testing"

	"github.com/ternmq/tern/internal/protocol"
)

// commandSeeds are real client conversations, to start the fuzzers from valid input.
func commandSeeds() [][]byte {
	id := protocol.NewMessageID(0x0123456789abcdef)
	cmds := []*protocol.Command{
		protocol.Nop(),
		protocol.Subscribe("topic", "channel#ephemeral"),
		protocol.Ready(2500),
		protocol.Finish(id),
		protocol.Requeue(id, 1500_000_000),
		protocol.Touch(id),
		protocol.StartClose(),
		protocol.Publish("topic", []byte("hello")),
		protocol.DeferredPublish("topic", 2_000_000_000, []byte("later")),
		protocol.Auth("secret"),
		protocol.Register("topic", "channel"),
		protocol.Ping(),
	}
	if c, err := protocol.Identify(protocol.IdentifyRequest{ClientID: "c", FeatureNegotiation: true}); err == nil {
		cmds = append(cmds, c)
	}
	if c, err := protocol.MultiPublish("topic", [][]byte{[]byte("a"), []byte("bc")}); err == nil {
		cmds = append(cmds, c)
	}
	var all []byte
	seeds := make([][]byte, 0, len(cmds)+3)
	for _, c := range cmds {
		one := c.AppendTo(nil)
		seeds = append(seeds, one)
		all = append(all, one...)
	}
	return append(seeds, all, []byte("RDY 99999999999999999999\r\n"), []byte("PUB t\n\xff\xff\xff\xff"))
}

func FuzzReadLine(f *testing.F) {
	for _, s := range commandSeeds() {
		f.Add(s, uint8(0), uint16(64))
	}
	f.Add([]byte("a\r\r\n\n\r\nxyz"), uint8(3), uint16(2))
	f.Fuzz(func(t *testing.T, data []byte, bufExtra uint8, maxLen16 uint16) {
		bufSize := 16 + int(bufExtra)
		maxLen := int(maxLen16 % 512)
		limit := maxLen
		if limit == 0 {
			limit = bufSize
		}
		r := bufio.NewReaderSize(bytes.NewReader(data), bufSize)
		pos := 0
		for {
			line, err := protocol.ReadLine(r, maxLen)
			rest := data[pos:]
			nl := bytes.IndexByte(rest, '\n')
			if err == nil {
				if len(line) > limit || bytes.IndexByte(line, '\n') >= 0 {
					t.Fatalf("line %q breaks the bound %d or holds a newline", line, limit)
				}
				// The line is the input up to "\n" or "\r\n", and only one '\r' is taken.
				if !bytes.HasPrefix(rest, line) {
					t.Fatalf("line %q is not the input at %d", line, pos)
				}
				switch after := rest[len(line):]; {
				case bytes.HasPrefix(after, []byte("\r\n")) && nl == len(line)+1:
					pos += len(line) + 2
				case bytes.HasPrefix(after, []byte("\n")) && !bytes.HasSuffix(line, []byte("\r")):
					pos += len(line) + 1
				default:
					t.Fatalf("line %q not followed by its terminator: %q", line, after)
				}
				continue
			}
			var pe *protocol.Error
			switch {
			case errors.As(err, &pe):
				if pe.Code != protocol.ErrInvalid || !pe.Fatal {
					t.Fatalf("error %v: want fatal E_INVALID", err)
				}
				// Only a line that is really too long may be refused.
				if nl >= 0 {
					content := bytes.TrimSuffix(rest[:nl], []byte("\r"))
					if len(content) <= limit {
						t.Fatalf("line of %d bytes refused with bound %d", len(content), limit)
					}
				} else if len(rest) <= limit+1 {
					t.Fatalf("partial line of %d bytes refused with bound %d", len(rest), limit)
				}
			case errors.Is(err, io.EOF):
				if len(rest) != 0 {
					t.Fatalf("io.EOF with %d bytes unread", len(rest))
				}
			case errors.Is(err, io.ErrUnexpectedEOF):
				if len(rest) == 0 || nl >= 0 {
					t.Fatalf("ErrUnexpectedEOF with rest %q", rest)
				}
			default:
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
	})
}

// FuzzCommand runs arbitrary bytes through the loop a server runs: read a line, split it,
// and parse whatever the command carries.
func FuzzCommand(f *testing.F) {
	for _, s := range commandSeeds() {
		f.Add(s)
	}
	const maxMsg, maxBody = 64, 256
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(data), 64)
		params := make([][]byte, 0, 4)
		buf := make([]byte, 32)
		for {
			line, err := protocol.ReadLine(r, 128)
			if err != nil {
				return
			}
			params = protocol.SplitParams(line, params)
			if len(params) == 0 {
				t.Fatal("SplitParams returned nothing")
			}
			if !bytes.Equal(bytes.Join(params, []byte(" ")), line) {
				t.Fatalf("params %q do not rejoin to %q", params, line)
			}
			for _, p := range params[1:] {
				checkParseInt(t, p)
				checkMessageID(t, p)
			}
			var body []byte
			switch string(params[0]) {
			case "PUB", "DPUB":
				body, err = protocol.ReadBody(r, buf, maxMsg, protocol.ErrBadMessage, string(params[0]))
			case "IDENTIFY", "AUTH":
				body, err = protocol.ReadBody(r, buf, maxBody, protocol.ErrBadBody, string(params[0]))
				if err == nil && string(params[0]) == "IDENTIFY" {
					if _, jerr := protocol.ParseIdentify(body); jerr != nil {
						wantCode(t, jerr, protocol.ErrBadBody)
					}
				}
			case "MPUB":
				var msgs [][]byte
				msgs, err = protocol.ParseMPUB(r, maxMsg, maxBody)
				for _, m := range msgs {
					if len(m) < 1 || len(m) > maxMsg {
						t.Fatalf("MPUB message of %d bytes accepted", len(m))
					}
				}
			}
			if err != nil {
				wantCode(t, err, protocol.ErrBadBody, protocol.ErrBadMessage)
				return // fatal: the server closes the connection
			}
			if len(body) > maxBody {
				t.Fatalf("body of %d bytes accepted", len(body))
			}
		}
	})
}

func wantCode(t *testing.T, err error, codes ...string) {
	t.Helper()
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *protocol.Error", err, err)
	}
	for _, c := range codes {
		if pe.Code == c {
			if !pe.Fatal {
				t.Fatalf("%v is not fatal", err)
			}
			return
		}
	}
	t.Fatalf("error %v: want one of %q", err, codes)
}

// checkParseInt compares ParseInt with strconv on digit strings.
func checkParseInt(t *testing.T, p []byte) {
	t.Helper()
	got, err := protocol.ParseInt(p)
	digits := len(p) > 0 && bytes.IndexFunc(p, func(r rune) bool { return r < '0' || r > '9' }) < 0
	if !digits {
		if !errors.Is(err, strconv.ErrSyntax) {
			t.Fatalf("ParseInt(%q) = (%d, %v), want ErrSyntax", p, got, err)
		}
		return
	}
	want, werr := strconv.ParseInt(string(p), 10, 64)
	if werr != nil {
		if !errors.Is(err, strconv.ErrRange) {
			t.Fatalf("ParseInt(%q) = (%d, %v), want ErrRange", p, got, err)
		}
		return
	}
	if got != want || err != nil {
		t.Fatalf("ParseInt(%q) = (%d, %v), strconv gives %d", p, got, err, want)
	}
}

// checkMessageID compares ParseMessageID with strconv and checks the round trip.
func checkMessageID(t *testing.T, p []byte) {
	t.Helper()
	v, ok := protocol.ParseMessageID(p)
	lowerHex := len(p) == protocol.MsgIDLength &&
		bytes.IndexFunc(p, func(r rune) bool { return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') }) < 0
	if ok != lowerHex {
		t.Fatalf("ParseMessageID(%q) ok = %v, want %v", p, ok, lowerHex)
	}
	if !ok {
		return
	}
	if want, err := strconv.ParseUint(string(p), 16, 64); err != nil || want != v {
		t.Fatalf("ParseMessageID(%q) = %#x, strconv gives (%#x, %v)", p, v, want, err)
	}
	if id := protocol.NewMessageID(v); !bytes.Equal(id[:], p) {
		t.Fatalf("NewMessageID(%#x) = %q, want %q", v, id, p)
	}
}

func FuzzMessageID(f *testing.F) {
	f.Add([]byte("0123456789abcdef"))
	f.Add([]byte("0123456789ABCDEF"))
	f.Add([]byte("ffffffffffffffff"))
	f.Fuzz(func(t *testing.T, p []byte) {
		checkMessageID(t, p)
		if len(p) >= 8 {
			v := binary.BigEndian.Uint64(p)
			id := protocol.NewMessageID(v)
			if got, ok := protocol.ParseMessageID(id[:]); !ok || got != v {
				t.Fatalf("round trip of %#x gave (%#x, %v)", v, got, ok)
			}
		}
	})
}

func FuzzReadFrame(f *testing.F) {
	f.Add(protocol.AppendFrame(nil, protocol.FrameTypeResponse, []byte("OK")), int32(0), uint16(0))
	f.Add(protocol.AppendFrame(nil, protocol.FrameTypeError, []byte("E_INVALID x")), int32(1), uint16(20))
	f.Add(protocol.AppendMessageFrame(nil, 1, 1, protocol.NewMessageID(1), []byte("b")), int32(2), uint16(10))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, int32(-1), uint16(1))
	f.Fuzz(func(t *testing.T, data []byte, ft int32, maxSize uint16) {
		// Arbitrary bytes: never panic, never exceed the bound, and re-encode to the input.
		gotType, got, err := protocol.ReadFrame(bytes.NewReader(data), int(maxSize))
		if err == nil {
			if maxSize > 0 && 4+len(got) > int(maxSize) {
				t.Fatalf("frame of size %d accepted with bound %d", 4+len(got), maxSize)
			}
			if re := protocol.AppendFrame(nil, gotType, got); !bytes.HasPrefix(data, re) {
				t.Fatalf("frame re-encodes to %x, input %x", re, data)
			}
		} else if len(data) >= 8 && binary.BigEndian.Uint32(data) >= 4 &&
			int(binary.BigEndian.Uint32(data)) <= int(maxSize) && len(data)-4 >= int(binary.BigEndian.Uint32(data)) {
			t.Fatalf("valid frame %x refused: %v", data, err)
		}

		// Round trip: what AppendFrame writes, ReadFrame reads.
		frame := protocol.AppendFrame(nil, protocol.FrameType(ft), data)
		gotType, got, err = protocol.ReadFrame(bytes.NewReader(frame), 0)
		if err != nil || gotType != protocol.FrameType(ft) || !bytes.Equal(got, data) {
			t.Fatalf("round trip = (%v, %x, %v), want (%v, %x)", gotType, got, err, ft, data)
		}
	})
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add(protocol.AppendMessageFrame(nil, 1700000000000000000, 1, protocol.NewMessageID(7), []byte("hello"))[8:])
	f.Add([]byte("short"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ts, attempts, id, body, err := protocol.DecodeMessage(data)
		if len(data) < protocol.MessageHeaderLength {
			if !errors.Is(err, protocol.ErrShortMessage) {
				t.Fatalf("DecodeMessage of %d bytes: err = %v", len(data), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("DecodeMessage of %d bytes: %v", len(data), err)
		}
		frame := protocol.AppendMessageFrame(nil, ts, attempts, id, body)
		if !bytes.Equal(frame[protocol.FrameHeaderLength:], data) {
			t.Fatalf("re-encoded %x, want %x", frame[protocol.FrameHeaderLength:], data)
		}
		ft, got, err := protocol.ReadFrame(bytes.NewReader(frame), 0)
		if err != nil || ft != protocol.FrameTypeMessage || !bytes.Equal(got, data) {
			t.Fatalf("frame reads back as (%v, %x, %v)", ft, got, err)
		}
	})
}

// checkMPUBMessages checks msgs are a valid batch that encodes to exactly body
// ([count]([size][msg])*).
func checkMPUBMessages(t *testing.T, msgs [][]byte, body []byte, maxMsg int64) {
	t.Helper()
	if len(msgs) == 0 {
		t.Fatal("empty batch accepted")
	}
	re := binary.BigEndian.AppendUint32(nil, uint32(len(msgs)))
	for _, m := range msgs {
		if len(m) < 1 || int64(len(m)) > maxMsg {
			t.Fatalf("message of %d bytes accepted with bound %d", len(m), maxMsg)
		}
		re = binary.BigEndian.AppendUint32(re, uint32(len(m)))
		re = append(re, m...)
	}
	if !bytes.Equal(re, body) {
		t.Fatalf("messages re-encode to %x, body was %x", re, body)
	}
}

func FuzzParseMPUB(f *testing.F) {
	f.Add(cat(be32(15), mpubBody("a", "bc")), uint16(10), uint16(100))
	f.Add(cat(be32(17), mpubBody("hello"), "NOP\n"), uint16(10), uint16(100))
	f.Add(cat(be32(9), be32(1), be32(0xffffffff), "x"), uint16(10), uint16(100))
	f.Fuzz(func(t *testing.T, data []byte, maxMsg16, maxBody16 uint16) {
		maxMsg, maxBody := int64(maxMsg16), int64(maxBody16)
		r := bytes.NewReader(data)
		msgs, err := protocol.ParseMPUB(r, maxMsg, maxBody)
		if err != nil {
			wantCode(t, err, protocol.ErrBadBody, protocol.ErrBadMessage)
			if msgs != nil {
				t.Fatal("messages returned with an error")
			}
		} else {
			bodyLen := int64(binary.BigEndian.Uint32(data))
			if bodyLen > maxBody || int64(len(msgs)) > (maxBody-4)/5 {
				t.Fatalf("body of %d bytes, %d messages, accepted with bound %d", bodyLen, len(msgs), maxBody)
			}
			if consumed := int64(len(data)) - int64(r.Len()); consumed != 4+bodyLen {
				t.Fatalf("consumed %d bytes of a %d-byte body", consumed, bodyLen)
			}
			body := data[4 : 4+bodyLen]
			checkMPUBMessages(t, msgs, body, maxMsg)
			// The HTTP form of the same batch must parse the same.
			bin, err := protocol.ParseMPUBBinary(body, maxMsg, maxBody)
			if err != nil || len(bin) != len(msgs) {
				t.Fatalf("ParseMPUBBinary of an accepted body: (%d messages, %v)", len(bin), err)
			}
		}

		// Round trip: MultiPublish -> wire -> ParseMPUB gives the same bodies.
		var bodies [][]byte
		for _, b := range bytes.Split(data, []byte{0}) {
			if len(b) > 0 {
				bodies = append(bodies, b)
			}
		}
		if len(bodies) == 0 {
			return
		}
		cmd, err := protocol.MultiPublish("t", bodies)
		if err != nil {
			t.Fatal(err)
		}
		var wire bytes.Buffer
		if _, err := cmd.WriteTo(&wire); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(&wire)
		if line, err := protocol.ReadLine(br, 64); err != nil || string(line) != "MPUB t" {
			t.Fatalf("line = (%q, %v)", line, err)
		}
		got, err := protocol.ParseMPUB(br, int64(len(data)), int64(len(cmd.Body)))
		if err != nil {
			t.Fatalf("ParseMPUB of MultiPublish output: %v", err)
		}
		if len(got) != len(bodies) {
			t.Fatalf("round trip gave %d messages, want %d", len(got), len(bodies))
		}
		for i := range got {
			if !bytes.Equal(got[i], bodies[i]) {
				t.Fatalf("message %d = %x, want %x", i, got[i], bodies[i])
			}
		}
		if br.Buffered() != 0 {
			t.Fatalf("%d bytes left after the MPUB", br.Buffered())
		}
	})
}

func FuzzParseMPUBBinary(f *testing.F) {
	f.Add(mpubBody("a", "bc"), uint16(10))
	f.Add(cat(mpubBody("a"), "zz"), uint16(10))
	f.Add(be32(0x7fffffff), uint16(10))
	f.Fuzz(func(t *testing.T, body []byte, maxMsg16 uint16) {
		maxMsg := int64(maxMsg16)
		msgs, err := protocol.ParseMPUBBinary(body, maxMsg, int64(len(body))+4)
		if err != nil {
			wantCode(t, err, protocol.ErrBadBody, protocol.ErrBadMessage)
			return
		}
		checkMPUBMessages(t, msgs, body, maxMsg)
		for _, m := range msgs {
			// Messages alias the body: no copy is made.
			if !aliases(body, m) {
				t.Fatal("message does not alias the body")
			}
		}
	})
}

// aliases reports whether sub lies inside whole's memory.
func aliases(whole, sub []byte) bool {
	if len(sub) == 0 {
		return true
	}
	for i := range whole {
		if &whole[i] == &sub[0] {
			return len(whole)-i >= len(sub)
		}
	}
	return false
}

func FuzzValidName(f *testing.F) {
	for _, s := range []string{"topic", "a#ephemeral", "#ephemeral", "a b", "x.y_z-9"} {
		f.Add(s)
	}
	re := regexp.MustCompile(`^[\.a-zA-Z0-9_-]+(#ephemeral)?$`)
	f.Fuzz(func(t *testing.T, name string) {
		want := len(name) >= 1 && len(name) <= 64 && re.MatchString(name)
		if got := protocol.IsValidTopicName(name); got != want {
			t.Fatalf("IsValidTopicName(%q) = %v, NSQ's rule says %v", name, got, want)
		}
		if got := protocol.IsValidChannelName(name); got != want {
			t.Fatalf("IsValidChannelName(%q) = %v, NSQ's rule says %v", name, got, want)
		}
	})
}
