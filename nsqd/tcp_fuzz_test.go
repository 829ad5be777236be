package nsqd

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/wiretest"
)

// scriptConn is a net.Conn that reads a fixed input, then EOF, and records what is written.
// The read loop and the pump both write, so writes are serialised.
type scriptConn struct {
	in *bytes.Reader

	mu  sync.Mutex
	out bytes.Buffer
}

func (c *scriptConn) Read(p []byte) (int, error) { return c.in.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}
func (c *scriptConn) Close() error { return nil }
func (c *scriptConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4150}
}
func (c *scriptConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
}
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// tcpFuzzSeeds are whole V2 connections: the magic, then commands.
func tcpFuzzSeeds() [][]byte {
	session := func(cmds ...*protocol.Command) []byte {
		return append([]byte(protocol.MagicV2), wiretest.Wire(cmds...)...)
	}
	mpub, _ := protocol.MultiPublish("t", [][]byte{[]byte("a"), []byte("b")})
	var id protocol.MessageID
	copy(id[:], "0000000000000001")
	return [][]byte{
		session(protocol.Nop()),
		session(wiretest.IdentifyJSON(`{"client_id":"c","heartbeat_interval":1000,"output_buffer_timeout":0}`),
			protocol.Publish("t", []byte("hi")), mpub, protocol.DeferredPublish("t", time.Second, []byte("d")),
			protocol.Subscribe("t", "c"), protocol.Ready(10), protocol.Finish(id), protocol.Requeue(id, 0),
			protocol.Touch(id), protocol.StartClose()),
		session(protocol.Subscribe("t#ephemeral", "c#ephemeral"), protocol.Ready(1)),
		session(wiretest.IdentifyJSON(`{"snappy":true}`), protocol.Publish("t", []byte("x"))),
		session(wiretest.IdentifyJSON(`{"deflate":true,"deflate_level":1}`), protocol.Publish("t", []byte("x"))),
		session(wiretest.IdentifyJSON(`{"heartbeat_interval":"x"}`)),
		session(protocol.Publish("bad name!", []byte("x"))),
		append([]byte(protocol.MagicV2), "PUB t\n\xff\xff\xff\xff"...),
		append([]byte(protocol.MagicV2), "MPUB t\n\x00\x00\x00\x08\x00\x00\x00\x05\x00\x00\x00\x09"...),
		append([]byte(protocol.MagicV2), "IDENTIFY\n\x7f\xff\xff\xff"...),
		append([]byte(protocol.MagicV2), strings.Repeat("x", 5000)+"\n"...),
		append([]byte(protocol.MagicV2), "RDY 99999999\nFIN zz\nREQ\nAUTH\n"...),
		[]byte("  V1PING\n"),
		[]byte("  V"),
		nil,
	}
}

// FuzzV2Conn runs whole V2 connections from arbitrary input against a running nsqd and
// checks that it never panics or hangs, answers only in well-formed frames, and leaves
// nothing of the client behind: no client, no subscriber, no message in flight.
func FuzzV2Conn(f *testing.F) {
	for _, s := range tcpFuzzSeeds() {
		f.Add(s)
	}
	n, _ := startTestDaemon(f, f.TempDir(), func(o *Options) { o.MaxMsgSize = 1 << 16 }, withLogger(slog.New(slog.DiscardHandler)))
	f.Fuzz(func(t *testing.T, input []byte) {
		conn := &scriptConn{in: bytes.NewReader(input)}
		n.handleConn(context.Background(), conn)

		out := conn.out.Bytes()
		if len(input) >= 4 && string(input[:4]) == protocol.MagicV2 && bytes.Contains(input, []byte("IDENTIFY")) {
			out = nil // IDENTIFY may switch on compression or TLS: the frames after it are not plain
		}
		for len(out) > 0 {
			if len(out) < 8 {
				t.Fatalf("trailing %d bytes", len(out))
			}
			size := binary.BigEndian.Uint32(out)
			if size < 4 || uint64(size) > uint64(len(out)-4) {
				t.Fatalf("frame size %d with %d bytes left", size, len(out)-4)
			}
			ft := protocol.FrameType(binary.BigEndian.Uint32(out[4:]))
			data := out[8 : 4+size]
			switch ft {
			case protocol.FrameTypeResponse:
			case protocol.FrameTypeError:
				if !bytes.HasPrefix(data, []byte("E_")) {
					t.Fatalf("error frame %q", data)
				}
			case protocol.FrameTypeMessage:
				if _, _, _, _, err := protocol.DecodeMessage(data); err != nil {
					t.Fatalf("message frame: %v", err)
				}
			default:
				t.Fatalf("frame type %d", ft)
			}
			out = out[4+size:]
		}

		n.clientsMu.Lock()
		clients := len(n.clients)
		n.clientsMu.Unlock()
		if clients != 0 {
			t.Fatalf("%d clients left after the connection ended", clients)
		}
		for _, tp := range n.Topics() {
			for _, ch := range tp.Channels() {
				if s := ch.Stats(); s.ClientCount != 0 || s.InFlightCount != 0 {
					t.Fatalf("channel %s/%s has %d clients and %d in flight after the connection ended",
						tp.name, ch.name, s.ClientCount, s.InFlightCount)
				}
			}
			// Fuzzed names would pile up topics on disk for as long as the fuzzer runs.
			_ = n.DeleteTopic(tp.name)
		}
	})
}
