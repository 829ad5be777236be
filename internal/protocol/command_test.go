package protocol_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	gonsq "github.com/nsqio/go-nsq"

	"github.com/ternmq/tern/internal/protocol"
)

func TestCommands(t *testing.T) {
	id := protocol.NewMessageID(0x0123456789abcdef)
	gid := gonsq.MessageID(id)
	mustCmd := func(c *protocol.Command, err error) *protocol.Command {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	mustGo := func(c *gonsq.Command, err error) *gonsq.Command {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name  string
		cmd   *protocol.Command
		gonsq *gonsq.Command // the same command built by go-nsq, when it builds it the same way
		want  []byte
	}{
		{"identify", mustCmd(protocol.Identify(map[string]any{"client_id": "c"})),
			mustGo(gonsq.Identify(map[string]any{"client_id": "c"})),
			cat("IDENTIFY\n", be32(17), `{"client_id":"c"}`)},
		{"auth", protocol.Auth("s3cret"), mustGo(gonsq.Auth("s3cret")), cat("AUTH\n", be32(6), "s3cret")},
		{"sub", protocol.Subscribe("t", "c#ephemeral"), gonsq.Subscribe("t", "c#ephemeral"), []byte("SUB t c#ephemeral\n")},
		{"rdy", protocol.Ready(2500), gonsq.Ready(2500), []byte("RDY 2500\n")},
		{"rdy 0", protocol.Ready(0), gonsq.Ready(0), []byte("RDY 0\n")},
		{"fin", protocol.Finish(id), gonsq.Finish(gid), []byte("FIN 0123456789abcdef\n")},
		{"req", protocol.Requeue(id, 1500*time.Millisecond+999*time.Microsecond),
			gonsq.Requeue(gid, 1500*time.Millisecond), []byte("REQ 0123456789abcdef 1500\n")},
		{"req negative delay", protocol.Requeue(id, -time.Second), nil, []byte("REQ 0123456789abcdef 0\n")},
		{"touch", protocol.Touch(id), gonsq.Touch(gid), []byte("TOUCH 0123456789abcdef\n")},
		{"cls", protocol.StartClose(), gonsq.StartClose(), []byte("CLS\n")},
		{"nop", protocol.Nop(), gonsq.Nop(), []byte("NOP\n")},
		{"pub", protocol.Publish("t", []byte("hi")), gonsq.Publish("t", []byte("hi")), cat("PUB t\n", be32(2), "hi")},
		{"pub nil body", protocol.Publish("t", nil), nil, cat("PUB t\n", be32(0))},
		{"dpub", protocol.DeferredPublish("t", 2*time.Second, []byte("hi")),
			gonsq.DeferredPublish("t", 2*time.Second, []byte("hi")), cat("DPUB t 2000\n", be32(2), "hi")},
		{"dpub nil body", protocol.DeferredPublish("t", time.Second, nil), nil, cat("DPUB t 1000\n", be32(0))},
		{"mpub", mustCmd(protocol.MultiPublish("t", [][]byte{[]byte("a"), []byte("bc")})),
			mustGo(gonsq.MultiPublish("t", [][]byte{[]byte("a"), []byte("bc")})),
			cat("MPUB t\n", be32(15), be32(2), be32(1), "a", be32(2), "bc")},
		{"register topic", protocol.Register("t", ""), gonsq.Register("t", ""), []byte("REGISTER t\n")},
		{"register channel", protocol.Register("t", "c"), gonsq.Register("t", "c"), []byte("REGISTER t c\n")},
		{"unregister topic", protocol.UnRegister("t", ""), gonsq.UnRegister("t", ""), []byte("UNREGISTER t\n")},
		{"unregister channel", protocol.UnRegister("t", "c"), gonsq.UnRegister("t", "c"), []byte("UNREGISTER t c\n")},
		{"ping", protocol.Ping(), gonsq.Ping(), []byte("PING\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			n, err := tt.cmd.WriteTo(&buf)
			if err != nil || n != int64(buf.Len()) {
				t.Fatalf("WriteTo = (%d, %v), wrote %d", n, err, buf.Len())
			}
			if !bytes.Equal(buf.Bytes(), tt.want) {
				t.Errorf("WriteTo wrote %q, want %q", buf.Bytes(), tt.want)
			}
			if got := tt.cmd.AppendTo([]byte("x")); !bytes.Equal(got, cat("x", tt.want)) {
				t.Errorf("AppendTo = %q, want %q", got, cat("x", tt.want))
			}
			if tt.gonsq != nil {
				var ref bytes.Buffer
				if _, err := tt.gonsq.WriteTo(&ref); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(ref.Bytes(), tt.want) {
					t.Errorf("go-nsq writes %q, we write %q", ref.Bytes(), tt.want)
				}
			}
		})
	}
}

func TestCommandString(t *testing.T) {
	if got := protocol.Publish("t", []byte("secret body")).String(); got != "PUB t" {
		t.Errorf("String = %q", got)
	}
	if got := protocol.Nop().String(); got != "NOP" {
		t.Errorf("String = %q", got)
	}
}

func TestIdentifyCommand(t *testing.T) {
	req := protocol.IdentifyRequest{ClientID: "c", FeatureNegotiation: true, HeartbeatInterval: 1000}
	cmd, err := protocol.Identify(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := protocol.ParseIdentify(cmd.Body)
	if err != nil || got != req {
		t.Errorf("round trip = (%+v, %v), want %+v", got, err, req)
	}
	if _, err := protocol.Identify(map[string]any{"bad": make(chan int)}); err == nil {
		t.Error("Identify of an unencodable value succeeded")
	}
	var syntax *json.UnsupportedTypeError
	if _, err := protocol.Identify(make(chan int)); !errors.As(err, &syntax) {
		t.Errorf("error = %v, want the encoder's error wrapped", err)
	}
}

func TestMultiPublishErrors(t *testing.T) {
	tests := []struct {
		name   string
		bodies [][]byte
	}{
		{"nil", nil},
		{"empty list", [][]byte{}},
		{"empty message", [][]byte{[]byte("a"), {}}},
	}
	for _, tt := range tests {
		if _, err := protocol.MultiPublish("t", tt.bodies); !errors.Is(err, protocol.ErrEmptyMPUB) {
			t.Errorf("%s: error = %v, want ErrEmptyMPUB", tt.name, err)
		}
	}
}

func TestMultiPublishRoundTrip(t *testing.T) {
	bodies := [][]byte{[]byte("one"), []byte("two two"), bytes.Repeat([]byte{0, '\n', ' '}, 100)}
	cmd, err := protocol.MultiPublish("topic", bodies)
	if err != nil {
		t.Fatal(err)
	}
	var wire bytes.Buffer
	if _, err := cmd.WriteTo(&wire); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(&wire)
	line, err := protocol.ReadLine(r, 128)
	if err != nil {
		t.Fatal(err)
	}
	params := protocol.SplitParams(line, nil)
	if len(params) != 2 || string(params[0]) != "MPUB" || string(params[1]) != "topic" {
		t.Fatalf("params = %q", params)
	}
	got, err := protocol.ParseMPUB(r, 1024, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(bodies) {
		t.Fatalf("got %d messages, want %d", len(got), len(bodies))
	}
	for i := range got {
		if !bytes.Equal(got[i], bodies[i]) {
			t.Errorf("message %d = %q, want %q", i, got[i], bodies[i])
		}
	}
}

func TestWriteToErrors(t *testing.T) {
	cmd := protocol.Publish("topic", []byte(strings.Repeat("b", 10)))
	tests := []struct {
		name  string
		limit int
		wantN int64
	}{
		{"line fails", 3, 3},
		{"body fails", 15, 15},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &failWriter{limit: tt.limit}
			n, err := cmd.WriteTo(w)
			if !errors.Is(err, errWrite) {
				t.Errorf("error = %v, want %v", err, errWrite)
			}
			if n != tt.wantN || int64(w.buf.Len()) != n {
				t.Errorf("n = %d (wrote %d), want %d", n, w.buf.Len(), tt.wantN)
			}
		})
	}
}
