package nsqd_test

import (
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	nsq "github.com/nsqio/go-nsq"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/internal/wiretest"
	"github.com/ternmq/tern/nsqd"
)

// These tests speak the V2 protocol byte by byte on raw sockets and check the exact frames the
// daemon answers with, including to inputs no client library would send.

// Size limits of the daemons in the bad-input tests, small so the tests send little.
const (
	protoMaxMsg  = 1024
	protoMaxBody = 4096
)

func smallLimits(o *nsqd.Options) {
	o.MaxMsgSize = protoMaxMsg
	o.MaxBodySize = protoMaxBody
}

func u32(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }

// sized is a command body in wire form: [4-byte size][body].
func sized(body string) []byte { return append(u32(uint32(len(body))), body...) }

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func line(s string) []byte { return []byte(s + "\n") }

// mpubBody builds an MPUB payload by hand, so it can lie: [body size][count] then each
// message as [size][bytes]. bodySize 0 means the true size.
func mpubBody(bodySize, count uint32, msgs ...[]byte) []byte {
	payload := u32(count)
	for _, m := range msgs {
		payload = append(payload, m...)
	}
	if bodySize == 0 {
		bodySize = uint32(len(payload))
	}
	return cat(u32(bodySize), payload)
}

// badCase is one connection's worth of bad input and the daemon's expected answer.
type badCase struct {
	name      string
	magic     string // "" for "  V2"
	send      []byte
	halfClose bool     // close our side for writing after send, as a client that dies mid-command
	replies   []string // frames in order: "E_..." is an error prefix, anything else an exact response
	fatal     bool     // the daemon must close the connection after the replies; else it must stay usable
}

const unknownID = "0000000000000001"

func badCases() []badCase {
	sub := wiretest.Wire(protocol.Subscribe("bad", "ch"))
	long := strings.Repeat("a", 65)
	identify := func(fields string) []byte { return wiretest.Wire(wiretest.IdentifyJSON(fields)) }
	out := []badCase{
		// Handshake and command line.
		{name: "magic V1", magic: protocol.MagicV1, replies: []string{"E_BAD_PROTOCOL"}, fatal: true},
		{name: "HTTP instead of magic", magic: "GET ", send: []byte("/ HTTP/1.1\r\n\r\n"), replies: []string{"E_BAD_PROTOCOL"}, fatal: true},
		{name: "unknown command", send: line("XYZ"), replies: []string{"E_INVALID invalid command XYZ"}, fatal: true},
		{name: "lower-case command", send: line("nop"), replies: []string{"E_INVALID invalid command nop"}, fatal: true},
		{name: "empty line", send: line(""), replies: []string{"E_INVALID invalid command"}, fatal: true},
		{name: "CRLF empty line", send: []byte("\r\n"), replies: []string{"E_INVALID invalid command"}, fatal: true},
		{name: "garbage bytes", send: []byte("\x00\xff\x13\x37garbage\x00\x01\n"), replies: []string{"E_INVALID invalid command"}, fatal: true},
		{name: "over-long line", send: line(strings.Repeat("A", 2000)), replies: []string{"E_INVALID"}, fatal: true},
		{name: "over-long line without newline", send: []byte(strings.Repeat("A", 2000)), replies: []string{"E_INVALID"}, fatal: true},
		{name: "huge line without newline", send: []byte(strings.Repeat("A", 20000)), replies: []string{"E_INVALID"}, fatal: true},
		{name: "command after a fatal one is not run", send: cat(line("XYZ"), line("PUB bad"), sized("never")), replies: []string{"E_INVALID invalid command XYZ"}, fatal: true},
		{name: "PUB without topic", send: line("PUB"), replies: []string{"E_INVALID"}, fatal: true},
		{name: "AUTH", send: wiretest.Wire(protocol.Auth("secret")), replies: []string{"E_AUTH_DISABLED"}, fatal: true},

		// Bodies cut short by the client going away.
		{name: "truncated PUB body", send: cat(line("PUB bad"), u32(16), []byte("abc")), halfClose: true, replies: []string{"E_BAD_MESSAGE"}, fatal: true},
		{name: "truncated PUB size", send: cat(line("PUB bad"), []byte{0, 0}), halfClose: true, replies: []string{"E_BAD_MESSAGE"}, fatal: true},
		{name: "truncated DPUB body", send: cat(line("DPUB bad 10"), u32(10), []byte("abc")), halfClose: true, replies: []string{"E_BAD_MESSAGE"}, fatal: true},
		{name: "truncated MPUB body", send: cat(line("MPUB bad"), u32(100), u32(2), sized("abcde")), halfClose: true, replies: []string{"E_BAD_BODY"}, fatal: true},
		{name: "truncated IDENTIFY body", send: cat(line("IDENTIFY"), u32(50), []byte(`{"client_id"`)), halfClose: true, replies: []string{"E_BAD_BODY"}, fatal: true},

		// Sizes.
		{name: "PUB empty body", send: cat(line("PUB bad"), u32(0)), replies: []string{"E_BAD_MESSAGE PUB invalid message body size 0"}, fatal: true},
		{name: "PUB negative size", send: cat(line("PUB bad"), u32(0xffffffff)), replies: []string{"E_BAD_MESSAGE"}, fatal: true},
		{name: "PUB too big", send: cat(line("PUB bad"), u32(protoMaxMsg+1)), replies: []string{fmt.Sprintf("E_BAD_MESSAGE PUB message too big %d > %d", protoMaxMsg+1, protoMaxMsg)}, fatal: true},
		{name: "DPUB too big", send: cat(line("DPUB bad 10"), u32(protoMaxMsg+1)), replies: []string{"E_BAD_MESSAGE DPUB message too big"}, fatal: true},
		{name: "MPUB body too big", send: cat(line("MPUB bad"), u32(protoMaxBody+1)), replies: []string{fmt.Sprintf("E_BAD_BODY MPUB body too big %d > %d", protoMaxBody+1, protoMaxBody)}, fatal: true},
		{name: "MPUB empty body", send: cat(line("MPUB bad"), u32(0)), replies: []string{"E_BAD_BODY"}, fatal: true},
		{name: "MPUB message too big", send: cat(line("MPUB bad"), mpubBody(0, 1, sized(strings.Repeat("m", protoMaxMsg+1)))), replies: []string{"E_BAD_MESSAGE MPUB message too big"}, fatal: true},
		{name: "MPUB zero count", send: cat(line("MPUB bad"), mpubBody(0, 0)), replies: []string{"E_BAD_BODY MPUB invalid message count 0"}, fatal: true},
		{name: "MPUB count beyond body", send: cat(line("MPUB bad"), mpubBody(0, 1000, sized("abcde"), sized("fghij"))), replies: []string{"E_BAD_BODY MPUB invalid message count 1000"}, fatal: true},
		{name: "MPUB count above messages", send: cat(line("MPUB bad"), mpubBody(0, 3, sized("abcde"), sized("fghij"))), replies: []string{"E_BAD_MESSAGE"}, fatal: true},
		{name: "MPUB count below messages", send: cat(line("MPUB bad"), mpubBody(0, 1, sized("abcde"), sized("fghij"))), replies: []string{"E_BAD_BODY"}, fatal: true},
		{name: "MPUB message past body end", send: cat(line("MPUB bad"), mpubBody(0, 1, u32(100), []byte("abcde"))), replies: []string{"E_BAD_MESSAGE"}, fatal: true},
		{name: "MPUB body size shorter than messages", send: cat(line("MPUB bad"), mpubBody(13, 2, sized("abcde"), sized("fghij"))), replies: []string{"E_BAD_MESSAGE MPUB failed to read message(1) body size"}, fatal: true},
		{name: "MPUB empty message", send: cat(line("MPUB bad"), mpubBody(0, 2, sized("abcde"), u32(0))), replies: []string{"E_BAD_MESSAGE"}, fatal: true},
		{name: "IDENTIFY too big", send: cat(line("IDENTIFY"), u32(protoMaxBody+1)), replies: []string{fmt.Sprintf("E_BAD_BODY IDENTIFY body too big %d > %d", protoMaxBody+1, protoMaxBody)}, fatal: true},
		{name: "IDENTIFY empty body", send: cat(line("IDENTIFY"), u32(0)), replies: []string{"E_BAD_BODY"}, fatal: true},
		{name: "IDENTIFY not JSON", send: cat(line("IDENTIFY"), sized("{not json")), replies: []string{"E_BAD_BODY IDENTIFY failed to decode JSON body"}, fatal: true},
		{name: "IDENTIFY wrong field type", send: identify(`{"heartbeat_interval":"soon"}`), replies: []string{"E_BAD_BODY"}, fatal: true},

		// Names.
		{name: "PUB bad topic", send: cat(line("PUB bad*topic"), sized("x")), replies: []string{"E_BAD_TOPIC"}, fatal: true},
		{name: "PUB long topic", send: cat(line("PUB "+long), sized("x")), replies: []string{"E_BAD_TOPIC"}, fatal: true},
		{name: "PUB empty topic", send: cat(line("PUB "), sized("x")), replies: []string{"E_BAD_TOPIC"}, fatal: true},
		{name: "MPUB bad topic", send: cat(line("MPUB bad*topic"), mpubBody(0, 1, sized("x"))), replies: []string{"E_BAD_TOPIC"}, fatal: true},
		{name: "DPUB bad topic", send: cat(line("DPUB bad*topic 10"), sized("x")), replies: []string{"E_BAD_TOPIC"}, fatal: true},
		{name: "SUB bad topic", send: line("SUB bad*topic ch"), replies: []string{"E_BAD_TOPIC"}, fatal: true},
		{name: "SUB long topic", send: line("SUB " + long + " ch"), replies: []string{"E_BAD_TOPIC"}, fatal: true},
		{name: "SUB bad channel", send: line("SUB bad ch*nnel"), replies: []string{"E_BAD_CHANNEL"}, fatal: true},
		{name: "SUB long channel", send: line("SUB bad " + long), replies: []string{"E_BAD_CHANNEL"}, fatal: true},
		{name: "SUB ephemeral suffix only", send: line("SUB bad #ephemeral"), replies: []string{"E_BAD_CHANNEL"}, fatal: true},
		{name: "SUB without channel", send: line("SUB bad"), replies: []string{"E_INVALID"}, fatal: true},

		// Commands out of place or out of range.
		{name: "RDY above max", send: cat(sub, line("RDY 2501")), replies: []string{"OK", "E_INVALID RDY count 2501 out of range 0-2500"}, fatal: true},
		{name: "RDY negative", send: cat(sub, line("RDY -1")), replies: []string{"OK", "E_INVALID"}, fatal: true},
		{name: "RDY not a number", send: cat(sub, line("RDY many")), replies: []string{"OK", "E_INVALID"}, fatal: true},
		{name: "RDY before SUB", send: line("RDY 1"), replies: []string{"E_INVALID"}, fatal: true},
		{name: "FIN unknown id", send: cat(sub, line("FIN "+unknownID)), replies: []string{"OK", "E_FIN_FAILED FIN " + unknownID + " failed"}},
		{name: "REQ unknown id", send: cat(sub, line("REQ "+unknownID+" 0")), replies: []string{"OK", "E_REQ_FAILED REQ " + unknownID + " failed"}},
		{name: "TOUCH unknown id", send: cat(sub, line("TOUCH "+unknownID)), replies: []string{"OK", "E_TOUCH_FAILED TOUCH " + unknownID + " failed"}},
		{name: "FIN id that is not hex", send: cat(sub, line("FIN zzzzzzzzzzzzzzzz")), replies: []string{"OK", "E_FIN_FAILED"}},
		{name: "several non-fatal errors", send: cat(sub, line("FIN "+unknownID), line("REQ "+unknownID+" 10"), line("TOUCH "+unknownID)), replies: []string{"OK", "E_FIN_FAILED", "E_REQ_FAILED", "E_TOUCH_FAILED"}},
		{name: "FIN short id", send: cat(sub, line("FIN 1234")), replies: []string{"OK", "E_INVALID"}, fatal: true},
		{name: "FIN long id", send: cat(sub, line("FIN "+unknownID+"0")), replies: []string{"OK", "E_INVALID"}, fatal: true},
		{name: "FIN without id", send: cat(sub, line("FIN")), replies: []string{"OK", "E_INVALID"}, fatal: true},
		{name: "FIN before SUB", send: line("FIN " + unknownID), replies: []string{"E_INVALID"}, fatal: true},
		{name: "REQ timeout not a number", send: cat(sub, line("REQ "+unknownID+" soon")), replies: []string{"OK", "E_INVALID"}, fatal: true},
		{name: "REQ negative timeout", send: cat(sub, line("REQ "+unknownID+" -1")), replies: []string{"OK", "E_INVALID"}, fatal: true},
		{name: "REQ without timeout", send: cat(sub, line("REQ "+unknownID)), replies: []string{"OK", "E_INVALID"}, fatal: true},
		{name: "DPUB above max", send: cat(line("DPUB bad 3600001"), sized("x")), replies: []string{"E_INVALID DPUB timeout 3600001 out of range 0-3600000"}, fatal: true},
		{name: "DPUB negative", send: cat(line("DPUB bad -1"), sized("x")), replies: []string{"E_INVALID"}, fatal: true},
		{name: "DPUB not a number", send: cat(line("DPUB bad soon"), sized("x")), replies: []string{"E_INVALID"}, fatal: true},
		{name: "DPUB without timeout", send: cat(line("DPUB bad"), sized("x")), replies: []string{"E_INVALID"}, fatal: true},
		{name: "SUB twice", send: cat(sub, sub), replies: []string{"OK", "E_INVALID"}, fatal: true},
		{name: "SUB with heartbeats disabled", send: cat(identify(`{"heartbeat_interval":-1}`), sub), replies: []string{"OK", "E_INVALID"}, fatal: true},
		{name: "IDENTIFY after SUB", send: cat(sub, identify(`{}`)), replies: []string{"OK", "E_INVALID"}, fatal: true},
		{name: "IDENTIFY twice", send: cat(identify(`{}`), identify(`{"client_id":"again"}`)), replies: []string{"OK", "OK"}},
		{name: "IDENTIFY after SUB", send: cat(sub, identify(`{}`)), replies: []string{"OK", "E_INVALID cannot IDENTIFY in current state"}, fatal: true},
		{name: "AUTH after SUB", send: cat(sub, wiretest.Wire(protocol.Auth("secret"))), replies: []string{"OK", "E_INVALID"}, fatal: true},
		{name: "CLS before SUB", send: line("CLS"), replies: []string{"E_INVALID"}, fatal: true},
		{name: "IDENTIFY deflate and snappy", send: identify(`{"feature_negotiation":true,"deflate":true,"snappy":true}`), replies: []string{"E_IDENTIFY_FAILED"}, fatal: true},
	}
	// Every IDENTIFY field out of its range (reference §2.1) is a fatal E_BAD_BODY.
	for _, f := range []struct {
		field string
		value int
	}{
		{"heartbeat_interval", 999}, {"heartbeat_interval", 60001}, {"heartbeat_interval", -2},
		{"output_buffer_size", 63}, {"output_buffer_size", 64*1024 + 1}, {"output_buffer_size", -2},
		{"output_buffer_timeout", 24}, {"output_buffer_timeout", 30001}, {"output_buffer_timeout", -2},
		{"sample_rate", -1}, {"sample_rate", 100},
		{"msg_timeout", 999}, {"msg_timeout", 900001}, {"msg_timeout", -1},
	} {
		out = append(out, badCase{
			name:    fmt.Sprintf("IDENTIFY %s %d", f.field, f.value),
			send:    identify(fmt.Sprintf(`{%q:%d}`, f.field, f.value)),
			replies: []string{"E_BAD_BODY"},
			fatal:   true,
		})
	}
	return out
}

// run plays the case on a fresh connection and reports how the daemon's answer differs from
// the expected one.
func (bc badCase) run(addr string) error {
	magic := bc.magic
	if magic == "" {
		magic = protocol.MagicV2
	}
	c, err := wiretest.DialMagic(addr, magic)
	if err != nil {
		return err
	}
	defer c.Close()
	// A write error is expected when the daemon rejects a command before reading all of it;
	// it only matters if the expected answer did not come either.
	werr := c.Write(bc.send)
	if bc.halfClose {
		_ = c.NetConn().(interface{ CloseWrite() error }).CloseWrite()
	}
	for _, want := range bc.replies {
		if err := c.Expect(want); err != nil {
			if werr != nil {
				return fmt.Errorf("%w (after %v)", err, werr)
			}
			return err
		}
	}
	if bc.fatal {
		return c.ExpectClosed()
	}
	return c.Usable()
}

func TestProtocolBadInput(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, smallLimits)
	t.Run("cases", func(t *testing.T) {
		for _, bc := range badCases() {
			t.Run(bc.name, func(t *testing.T) {
				t.Parallel()
				must(t, bc.run(addr))
			})
		}
	})
	// Nothing a bad client sent may have been stored.
	if ts, ok := d.TopicStats("bad"); ok && ts.MessageCount != 0 {
		t.Errorf("bad input stored %d messages in topic bad", ts.MessageCount)
	}
}

// TestBadClientsDoNotDisturbOthers runs every kind of bad client, several times over, while a
// go-nsq producer and consumer do their work, and checks that every message the daemon
// acknowledged was delivered.
func TestBadClientsDoNotDisturbOthers(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, smallLimits)
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 50
	col := &collector{}
	newConsumer(t, addr, "good", "ch", cfg, col, 2)

	stopBad := make(chan struct{})
	var bad sync.WaitGroup
	var failMu sync.Mutex
	failures := map[string]error{}
	rounds := 0
	var roundsMu sync.Mutex
	bad.Go(func() {
		for {
			select {
			case <-stopBad:
				return
			default:
			}
			var wg sync.WaitGroup
			for _, bc := range badCases() {
				wg.Go(func() {
					if err := bc.run(addr); err != nil {
						failMu.Lock()
						failures[bc.name] = err
						failMu.Unlock()
					}
				})
			}
			wg.Wait()
			roundsMu.Lock()
			rounds++
			roundsMu.Unlock()
		}
	})

	p := newProducer(t, addr, nil)
	var acked []string
	for i := range 150 {
		if i%3 == 0 {
			batch := numbered(fmt.Sprintf("batch%d", i), 10)
			if err := p.MultiPublish("good", toBytes(batch)); err != nil {
				t.Errorf("MPUB %d: %v", i, err)
				continue
			}
			acked = append(acked, batch...)
			continue
		}
		body := fmt.Sprintf("single-%d", i)
		if err := p.Publish("good", []byte(body)); err != nil {
			t.Errorf("PUB %d: %v", i, err)
			continue
		}
		acked = append(acked, body)
	}
	// Let the bad clients run at least twice in full while the good pair works.
	testutil.Eventually(t, 60*time.Second, func() bool {
		roundsMu.Lock()
		defer roundsMu.Unlock()
		return rounds >= 2
	}, "two rounds of bad clients")
	close(stopBad)
	bad.Wait()

	col.waitFor(t, len(acked), 20*time.Second)
	testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "good", "ch") }, "channel drained")
	checkExactlyOnce(t, col.bodies(), acked)
	for name, err := range failures {
		t.Errorf("bad client %q: %v", name, err)
	}
	if ts, ok := d.TopicStats("bad"); ok && ts.MessageCount != 0 {
		t.Errorf("bad input stored %d messages in topic bad", ts.MessageCount)
	}
}

func TestProtocolIdentifyNegotiation(t *testing.T) {
	t.Parallel()
	defaults := map[string]any{
		"max_rdy_count":         2500.0,
		"version":               "1.3.0",
		"max_msg_timeout":       900000.0,
		"msg_timeout":           60000.0,
		"tls_v1":                false,
		"deflate":               false,
		"snappy":                false,
		"sample_rate":           0.0,
		"auth_required":         false,
		"output_buffer_size":    16384.0,
		"output_buffer_timeout": 250.0,
		"max_deflate_level":     6.0,
	}
	cases := []struct {
		name   string
		opts   func(*nsqd.Options)
		fields string
		want   map[string]any // differences from defaults
		noSub  bool           // skip the subscription check (it could not, or might not, deliver)
	}{
		{name: "defaults"},
		{name: "msg_timeout", fields: `"msg_timeout":5000`, want: map[string]any{"msg_timeout": 5000.0}},
		{name: "msg_timeout at max", fields: `"msg_timeout":900000`, want: map[string]any{"msg_timeout": 900000.0}},
		{name: "output buffer", fields: `"output_buffer_size":1024,"output_buffer_timeout":100`,
			want: map[string]any{"output_buffer_size": 1024.0, "output_buffer_timeout": 100.0}},
		{name: "output buffer at limits", fields: `"output_buffer_size":65536,"output_buffer_timeout":25`,
			want: map[string]any{"output_buffer_size": 65536.0, "output_buffer_timeout": 25.0}},
		{name: "sample_rate", fields: `"sample_rate":42`, want: map[string]any{"sample_rate": 42.0}, noSub: true},
		{name: "snappy", fields: `"snappy":true`, want: map[string]any{"snappy": true}},
		{name: "deflate level 3", fields: `"deflate":true,"deflate_level":3`, want: map[string]any{"deflate": true, "deflate_level": 3.0}},
		{name: "deflate level above max", fields: `"deflate":true,"deflate_level":9`, want: map[string]any{"deflate": true, "deflate_level": 6.0}},
		{name: "deflate default level", fields: `"deflate":true`, want: map[string]any{"deflate": true, "deflate_level": 6.0}},
		{name: "tls requested without a certificate", fields: `"tls_v1":true`},
		{name: "heartbeats disabled", fields: `"heartbeat_interval":-1`, noSub: true},
		// NSQ reports an unbuffered client's size as 1 and Tern as 0; either means unbuffered.
		{name: "unbuffered output", fields: `"output_buffer_size":-1,"output_buffer_timeout":-1`,
			want: map[string]any{"output_buffer_size": nil, "output_buffer_timeout": 0.0}},
		{name: "unknown and retired fields ignored", fields: `"short_id":"a","long_id":"b","some_extension":{"x":1},"client_id":"me","user_agent":"test/1.0"`},
		{name: "server limits", opts: func(o *nsqd.Options) {
			o.MaxRdyCount = 50
			o.MaxMsgTimeout = 2 * time.Minute
			o.MsgTimeout = 30 * time.Second
			o.MaxDeflateLevel = 4
			o.OutputBufferTimeout = 100 * time.Millisecond
		}, fields: `"deflate":true,"deflate_level":6`, want: map[string]any{
			"max_rdy_count": 50.0, "max_msg_timeout": 120000.0, "msg_timeout": 30000.0,
			"max_deflate_level": 4.0, "deflate": true, "deflate_level": 4.0, "output_buffer_timeout": 100.0,
		}},
		{name: "compression disabled on the server", opts: func(o *nsqd.Options) {
			o.SnappyEnabled = false
		}, fields: `"snappy":true`, want: map[string]any{"snappy": false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr, _, _ := startNSQD(t, tc.opts)
			c := dialRaw(t, addr)
			resp, err := c.Identify(tc.fields)
			must(t, err)
			want := make(map[string]any, len(defaults))
			for k, v := range defaults {
				want[k] = v
			}
			for k, v := range tc.want {
				want[k] = v
			}
			for k, v := range want {
				got, ok := resp[k]
				if v == nil {
					continue // any value will do
				}
				if !ok {
					t.Errorf("response has no %q: %v", k, resp)
				} else if got != v {
					t.Errorf("%s = %v, want %v", k, got, v)
				}
			}
			// The negotiated connection works: publish, and with heartbeats on, subscribe.
			must(t, c.Publish("negotiated", "hello"))
			if !tc.noSub {
				must(t, c.Subscribe("negotiated", "ch", 1))
				m, err := c.ExpectMessage()
				must(t, err)
				if m.Body != "hello" {
					t.Errorf("got %q, want hello", m.Body)
				}
			}
		})
	}
}

func TestProtocolIdentifyAcceptsRangeEdges(t *testing.T) {
	t.Parallel()
	addr, _, _ := startNSQD(t, nil)
	for _, fields := range []string{
		`{"heartbeat_interval":1000}`, `{"heartbeat_interval":60000}`, `{"heartbeat_interval":0}`,
		`{"output_buffer_size":64}`, `{"output_buffer_size":65536}`, `{"output_buffer_size":0}`,
		`{"output_buffer_timeout":25}`, `{"output_buffer_timeout":30000}`, `{"output_buffer_timeout":0}`,
		`{"sample_rate":0}`, `{"sample_rate":99}`,
		`{"msg_timeout":1000}`, `{"msg_timeout":900000}`, `{"msg_timeout":0}`,
		`{"deflate_level":1}`, `{"deflate_level":100}`,
		`{}`,
	} {
		t.Run(fields, func(t *testing.T) {
			c := dialRaw(t, addr)
			must(t, c.Send(wiretest.IdentifyJSON(fields)))
			must(t, c.ExpectResponse(protocol.OK))
			must(t, c.Usable())
		})
	}
}

func TestProtocolIdentifyWithoutNegotiation(t *testing.T) {
	t.Parallel()
	addr, _, _ := startNSQD(t, nil)
	c := dialRaw(t, addr)
	// Compression is only switched on with feature negotiation, so this stays plain text.
	must(t, c.Send(wiretest.IdentifyJSON(`{"client_id":"plain","snappy":true}`)))
	must(t, c.ExpectResponse(protocol.OK))
	must(t, c.Publish("plain", "x"))
}

func TestProtocolCompressedStream(t *testing.T) {
	t.Parallel()
	for _, fields := range []string{``, `"snappy":true`, `"deflate":true,"deflate_level":1`, `"deflate":true`} {
		t.Run("{"+fields+"}", func(t *testing.T) {
			t.Parallel()
			addr, d, _ := startNSQD(t, nil)
			c := dialRaw(t, addr)
			_, err := c.Identify(fields)
			must(t, err)
			// Larger than a snappy block and than the output buffer.
			big := strings.Repeat("compress me ", 20000)
			must(t, c.Publish("z", big))
			must(t, c.Send(mpubCmd("z", "one", "two", "three")))
			must(t, c.ExpectResponse(protocol.OK))
			must(t, c.Subscribe("z", "ch", 100))
			var got []string
			for range 4 {
				m, err := c.ExpectMessage()
				must(t, err)
				got = append(got, m.Body)
				must(t, c.Send(protocol.Finish(m.ID)))
			}
			if got[0] != big || strings.Join(got[1:], ",") != "one,two,three" {
				t.Errorf("got %d messages starting %.20q, want the big one then one,two,three", len(got), got[0])
			}

			// Publishing on the consuming connection: the read loop's OKs and the pump's
			// messages share the stream and must not corrupt each other.
			const n = 200
			var cmds []*protocol.Command
			for i := range n {
				cmds = append(cmds, protocol.Publish("z", fmt.Appendf(nil, "mixed-%d-%s", i, strings.Repeat("y", i*10))))
			}
			// Room for all of them without FIN, so that this goroutine only reads while
			// another writes: neither side can then block the other on full socket buffers.
			must(t, c.Send(protocol.Ready(n)))
			sent := make(chan error, 1)
			go func() { sent <- c.Send(cmds...) }()
			oks, msgs := 0, map[string]int{}
			var ids []protocol.MessageID
			for oks < n || len(msgs) < n {
				ft, data, err := c.Next()
				must(t, err)
				switch ft {
				case protocol.FrameTypeResponse:
					if string(data) != protocol.OK {
						t.Fatalf("unexpected response %q", data)
					}
					oks++
				case protocol.FrameTypeMessage:
					_, _, id, body, err := protocol.DecodeMessage(data)
					must(t, err)
					msgs[string(body)]++
					ids = append(ids, id)
				default:
					t.Fatalf("unexpected %s frame %q", ft, wiretest.Trunc(data))
				}
			}
			must(t, <-sent)
			for _, id := range ids {
				must(t, c.Send(protocol.Finish(id)))
			}
			var want []string
			for i := range n {
				want = append(want, fmt.Sprintf("mixed-%d-%s", i, strings.Repeat("y", i*10)))
			}
			checkExactlyOnce(t, msgs, want)
			testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "z", "ch") }, "channel drained")

			// Error frames go through the compressor too, and still close the connection.
			must(t, c.Write(line("XYZ")))
			must(t, c.ExpectError("E_INVALID invalid command XYZ"))
			must(t, c.ExpectClosed())
		})
	}
}

func TestProtocolMessageFrame(t *testing.T) {
	t.Parallel()
	addr, _, _ := startNSQD(t, nil)
	c := dialRaw(t, addr)
	before := time.Now()
	must(t, c.Publish("frame", "body bytes \x00\xff"))
	after := time.Now()
	must(t, c.Subscribe("frame", "ch", 1))
	m, err := c.ExpectMessage()
	must(t, err)
	if m.Body != "body bytes \x00\xff" || m.Attempts != 1 {
		t.Errorf("got body %q attempts %d", m.Body, m.Attempts)
	}
	if ts := time.Unix(0, m.Timestamp); ts.Before(before.Add(-time.Second)) || ts.After(after.Add(time.Second)) {
		t.Errorf("timestamp %v is not the publish time (%v..%v)", ts, before, after)
	}
	if _, ok := m.ID.Uint64(); !ok {
		t.Errorf("message id %q is not 16 lower-case hex digits", m.ID[:])
	}
}

func TestProtocolPipelinedCommands(t *testing.T) {
	t.Parallel()
	addr, _, _ := startNSQD(t, nil)
	c := dialRaw(t, addr)
	// Everything in one write; the answers come back in order.
	must(t, c.Write(wiretest.Wire(
		wiretest.IdentifyJSON(`{"client_id":"pipe"}`),
		protocol.Publish("pipe", []byte("a")),
		protocol.Nop(),
		mpubCmd("pipe", "b", "c"),
		protocol.DeferredPublish("pipe", 0, []byte("d")),
		protocol.Subscribe("pipe", "ch"),
		protocol.Ready(4),
	)))
	for range 5 {
		must(t, c.ExpectResponse(protocol.OK))
	}
	var got []string
	for range 4 {
		m, err := c.ExpectMessage()
		must(t, err)
		got = append(got, m.Body)
	}
	if strings.Join(got, "") != "abcd" {
		t.Errorf("got %v, want a b c d in publish order", got)
	}
}

func TestProtocolNonFatalErrorsOnRealMessages(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	a, b := dialRaw(t, addr), dialRaw(t, addr)
	must(t, a.Subscribe("own", "ch", 1))
	must(t, b.Subscribe("own", "ch", 0))
	// Published by the engine: on a subscribed connection the message may overtake the OK.
	must(t, d.Publish("own", [][]byte{[]byte("first")}, 0))
	m, err := a.ExpectMessage()
	must(t, err)

	// Another client of the channel cannot acknowledge a's message.
	for _, cmd := range []*protocol.Command{protocol.Finish(m.ID), protocol.Touch(m.ID), protocol.Requeue(m.ID, 0)} {
		must(t, b.Send(cmd))
		must(t, b.ExpectError("E_"+string(cmd.Name)+"_FAILED"))
	}
	must(t, b.Usable())
	if cs, _ := d.ChannelStats("own", "ch"); cs.InFlightCount != 1 || cs.RequeueCount != 0 {
		t.Fatalf("in flight %d, requeued %d after another client's FIN/TOUCH/REQ; want 1 and 0", cs.InFlightCount, cs.RequeueCount)
	}

	// Its owner can; a second FIN of the same message fails without closing the connection.
	must(t, a.Send(protocol.Touch(m.ID), protocol.Finish(m.ID), protocol.Finish(m.ID)))
	must(t, a.ExpectError("E_FIN_FAILED FIN "+m.ID.String()+" failed"))
	must(t, a.Send(protocol.Requeue(m.ID, 0)))
	must(t, a.ExpectError("E_REQ_FAILED"))
	must(t, d.Publish("own", [][]byte{[]byte("second")}, 0))
	m2, err := a.ExpectMessage()
	must(t, err)
	if m2.Body != "second" {
		t.Errorf("got %q after the errors, want second", m2.Body)
	}
	must(t, a.Send(protocol.Finish(m2.ID)))
	testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "own", "ch") }, "channel drained")
}

func TestProtocolRequeue(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	c := dialRaw(t, addr)
	must(t, c.Subscribe("req", "ch", 1))
	must(t, d.Publish("req", [][]byte{[]byte("x")}, 0))
	m, err := c.ExpectMessage()
	must(t, err)

	// REQ 0 requeues at once; the redelivery counts the attempt.
	must(t, c.Send(protocol.Requeue(m.ID, 0)))
	m2, err := c.ExpectMessage()
	must(t, err)
	if m2.ID != m.ID || m2.Attempts != 2 {
		t.Fatalf("redelivered %s attempts %d, want %s attempts 2", m2.ID, m2.Attempts, m.ID)
	}

	// A delay above --max-req-timeout is clamped, not refused, however large.
	must(t, c.Send(&protocol.Command{Name: []byte("REQ"), Params: [][]byte{m2.ID[:], []byte("999999999999")}}))
	must(t, c.Publish("other", "sync")) // answered only after the REQ was processed
	cs, _ := d.ChannelStats("req", "ch")
	if cs.DeferredCount != 1 || cs.InFlightCount != 0 || cs.RequeueCount != 2 {
		t.Errorf("deferred %d, in flight %d, requeued %d; want 1, 0 and 2", cs.DeferredCount, cs.InFlightCount, cs.RequeueCount)
	}
}

// TestProtocolRequeueHugeDelay sends REQ delays whose nanoseconds overflow int64: they are
// still "above the maximum" and must be clamped to it, not wrap into an immediate requeue.
func TestProtocolRequeueHugeDelay(t *testing.T) {
	t.Parallel()
	for _, ms := range []string{"9300000000000", "99999999999999999", "9223372036854775807"} {
		t.Run(ms, func(t *testing.T) {
			t.Parallel()
			addr, d, _ := startNSQD(t, nil)
			c := dialRaw(t, addr)
			must(t, c.Subscribe("huge", "ch", 1))
			must(t, d.Publish("huge", [][]byte{[]byte("x")}, 0))
			m, err := c.ExpectMessage()
			must(t, err)
			must(t, c.Send(
				&protocol.Command{Name: []byte("REQ"), Params: [][]byte{m.ID[:], []byte(ms)}},
				protocol.Publish("other", []byte("sync")), // answered only after the REQ was processed
			))
			ft, data, err := c.Next()
			must(t, err)
			if ft == protocol.FrameTypeMessage {
				_, attempts, _, _, _ := protocol.DecodeMessage(data)
				t.Fatalf("REQ %s ms requeued the message at once (redelivered, attempts %d) instead of clamping to --max-req-timeout", ms, attempts)
			}
			if ft != protocol.FrameTypeResponse || string(data) != protocol.OK {
				t.Fatalf("got %s frame %q, want OK", ft, data)
			}
			if cs, _ := d.ChannelStats("huge", "ch"); cs.DeferredCount != 1 || cs.InFlightCount != 0 {
				t.Errorf("REQ %s ms: deferred %d, in flight %d; want 1 and 0 (clamped to --max-req-timeout)", ms, cs.DeferredCount, cs.InFlightCount)
			}
		})
	}
}

func TestProtocolRdy(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	c := dialRaw(t, addr)
	p := dialRaw(t, addr)
	must(t, c.Subscribe("rdy", "ch", 0))
	for i := range 5 {
		must(t, p.Publish("rdy", fmt.Sprint(i)))
	}
	// Without RDY nothing is delivered; the stats say where every message is.
	if cs, _ := d.ChannelStats("rdy", "ch"); cs.InFlightCount != 0 || cs.Depth != 5 {
		t.Fatalf("before RDY: in flight %d, depth %d; want 0 and 5", cs.InFlightCount, cs.Depth)
	}
	// RDY without a count means 1.
	must(t, c.Write(line("RDY")))
	m, err := c.ExpectMessage()
	must(t, err)
	testutil.Eventually(t, 5*time.Second, func() bool {
		cs, _ := d.ChannelStats("rdy", "ch")
		return cs.InFlightCount == 1 && cs.Depth == 4
	}, "one message in flight")

	// RDY is a bound on unacknowledged messages, not a credit: RDY 3 with one in flight
	// delivers two more.
	must(t, c.Send(protocol.Ready(3)))
	held := []wiretest.Message{m}
	for range 2 {
		m, err := c.ExpectMessage()
		must(t, err)
		held = append(held, m)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		cs, _ := d.ChannelStats("rdy", "ch")
		return cs.InFlightCount == 3 && cs.Depth == 2
	}, "three messages in flight")

	// RDY 0 stops delivery even as messages are finished.
	must(t, c.Send(protocol.Ready(0)))
	for _, m := range held {
		must(t, c.Send(protocol.Finish(m.ID)))
	}
	must(t, c.Publish("other", "sync"))
	if cs, _ := d.ChannelStats("rdy", "ch"); cs.InFlightCount != 0 || cs.Depth != 2 {
		t.Fatalf("after RDY 0 and FIN: in flight %d, depth %d; want 0 and 2", cs.InFlightCount, cs.Depth)
	}
	must(t, c.Send(protocol.Ready(2500)))
	for range 2 {
		_, err := c.ExpectMessage()
		must(t, err)
	}
}

func TestProtocolDeferredPublish(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	c := dialRaw(t, addr)
	must(t, c.Subscribe("dpub", "ch", 10))
	const delay = 600 * time.Millisecond
	sent := time.Now()
	must(t, c.Send(protocol.DeferredPublish("dpub", delay, []byte("later"))))
	must(t, c.ExpectResponse(protocol.OK))
	testutil.Eventually(t, 5*time.Second, func() bool {
		cs, _ := d.ChannelStats("dpub", "ch")
		return cs.DeferredCount == 1
	}, "message counted as deferred")
	must(t, d.Publish("dpub", [][]byte{[]byte("now")}, 0))

	first, err := c.ExpectMessage()
	must(t, err)
	second, err := c.ExpectMessage()
	must(t, err)
	if first.Body != "now" || second.Body != "later" {
		t.Fatalf("got %q then %q, want now then later", first.Body, second.Body)
	}
	if early := sent.Add(delay).Sub(second.At); early > 0 {
		t.Errorf("deferred message delivered %v before its delay", early)
	}
	if second.Attempts != 1 {
		t.Errorf("deferred message attempts %d, want 1", second.Attempts)
	}
}

func TestProtocolCloseWait(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	c := dialRaw(t, addr)
	must(t, c.Subscribe("cls", "ch", 10))
	must(t, d.Publish("cls", [][]byte{[]byte("in flight")}, 0))
	m, err := c.ExpectMessage()
	must(t, err)

	must(t, c.Send(protocol.StartClose()))
	must(t, c.ExpectResponse(protocol.CloseWait))
	// After CLS the client may still finish what it holds; RDY is ignored, not an error, and
	// nothing new is delivered.
	must(t, c.Send(protocol.Finish(m.ID), protocol.Ready(5)))
	must(t, c.Publish("cls", "not for a closing client"))
	cs, _ := d.ChannelStats("cls", "ch")
	if cs.InFlightCount != 0 || cs.Depth != 1 {
		t.Errorf("after CLS, FIN and a publish: in flight %d, depth %d; want 0 and 1", cs.InFlightCount, cs.Depth)
	}
	// A second client gets the message the closing one was not given.
	other := dialRaw(t, addr)
	must(t, other.Subscribe("cls", "ch", 1))
	m2, err := other.ExpectMessage()
	must(t, err)
	if m2.Body != "not for a closing client" {
		t.Errorf("second client got %q", m2.Body)
	}
}

func TestProtocolSampleRate(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	p := dialRaw(t, addr)
	const total = 2000
	for i := 0; i < total; i += 100 {
		must(t, p.Send(mpubCmd("sampled", numbered(fmt.Sprint(i), 100)...)))
		must(t, p.ExpectResponse(protocol.OK))
	}
	c := dialRaw(t, addr)
	_, err := c.Identify(`"sample_rate":50`)
	must(t, err)
	must(t, c.Subscribe("sampled", "ch", total))
	var cs nsqd.ChannelStats
	testutil.Eventually(t, 10*time.Second, func() bool {
		cs, _ = d.ChannelStats("sampled", "ch")
		return cs.MessageCount == total && cs.Depth == 0
	}, "channel read everything")
	got := cs.InFlightCount // nothing is finished, so in flight is what was sent
	for range got {
		_, err := c.ExpectMessage()
		must(t, err)
	}
	if lo, hi := total*30/100, total*70/100; got < lo || got > hi {
		t.Errorf("sample_rate 50 delivered %d of %d, want %d..%d", got, total, lo, hi)
	}
	t.Logf("sample_rate 50 delivered %d of %d", got, total)
}

func TestProtocolHeartbeats(t *testing.T) {
	t.Parallel()
	addr, _, _ := startNSQD(t, nil)

	t.Run("answered", func(t *testing.T) {
		t.Parallel()
		c := dialRaw(t, addr)
		_, err := c.Identify(`"heartbeat_interval":1000`)
		must(t, err)
		start := time.Now()
		for beats := 0; beats < 3; {
			ft, data, err := c.ReadFrame(3 * time.Second)
			must(t, err)
			if ft != protocol.FrameTypeResponse || string(data) != protocol.Heartbeat {
				t.Fatalf("got %s frame %q, want heartbeats", ft, data)
			}
			beats++
			must(t, c.Send(protocol.Nop()))
		}
		if el := time.Since(start); el < 2500*time.Millisecond {
			t.Errorf("three 1s heartbeats in %v", el)
		}
		must(t, c.Publish("alive", "still connected"))
	})

	t.Run("ignored", func(t *testing.T) {
		t.Parallel()
		c := dialRaw(t, addr)
		_, err := c.Identify(`"heartbeat_interval":1000`)
		must(t, err)
		start := time.Now()
		beats := 0
		for {
			ft, data, err := c.ReadFrame(5 * time.Second)
			if err != nil {
				if !wiretest.IsClosed(err) {
					t.Fatalf("want the connection closed: %v", err)
				}
				break
			}
			if ft != protocol.FrameTypeResponse || string(data) != protocol.Heartbeat {
				t.Fatalf("got %s frame %q, want heartbeats", ft, data)
			}
			beats++
		}
		el := time.Since(start)
		if el < 1500*time.Millisecond || el > 5*time.Second {
			t.Errorf("closed %v after IDENTIFY, want about two 1s intervals", el)
		}
		if beats < 1 {
			t.Errorf("closed without sending a heartbeat")
		}
	})
}

func TestSilentClientDropped(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	addr, _, _ := startNSQD(t, func(o *nsqd.Options) { o.ClientTimeout = timeout })
	cases := []struct {
		name  string
		magic string
	}{
		{"never sends the magic", ""},
		{"half a magic", "  "},
		{"magic then silence", protocol.MagicV2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			c, err := wiretest.DialMagic(addr, tc.magic)
			must(t, err)
			defer c.Close()
			must(t, c.ExpectClosed())
			if el := time.Since(start); el < timeout*9/10 {
				t.Errorf("dropped after %v, before the %v client timeout", el, timeout)
			}
		})
	}
}

func TestProtocolDisconnectRequeuesInFlight(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	a := dialRaw(t, addr)
	must(t, a.Subscribe("gone", "ch", 1))
	must(t, d.Publish("gone", [][]byte{[]byte("orphan")}, 0))
	m, err := a.ExpectMessage()
	must(t, err)
	b := dialRaw(t, addr)
	must(t, b.Subscribe("gone", "ch", 1))
	// The holder leaves without FIN: its message goes to the other client (Tern does so at
	// once; NSQ waits for the message timeout, 60 s here).
	a.Close()
	m2, err := b.ExpectMessage()
	must(t, err)
	if m2.ID != m.ID || m2.Body != "orphan" || m2.Attempts != 2 {
		t.Errorf("got %s %q attempts %d, want %s again with attempts 2", m2.ID, m2.Body, m2.Attempts, m.ID)
	}
}

func TestProtocolMaxChannelConsumers(t *testing.T) {
	t.Parallel()
	addr, _, _ := startNSQD(t, func(o *nsqd.Options) { o.MaxChannelConsumers = 1 })
	first := dialRaw(t, addr)
	must(t, first.Subscribe("full", "ch", 0))
	second := dialRaw(t, addr)
	must(t, second.Send(protocol.Subscribe("full", "ch")))
	must(t, second.ExpectError("E_SUB_FAILED"))
	must(t, second.ExpectClosed())
	// Another channel of the topic has room.
	third := dialRaw(t, addr)
	must(t, third.Subscribe("full", "other", 0))
	must(t, first.Usable())
}

// frameOrErr is one read from a connection drained by a goroutine.
type frameOrErr struct {
	ft   protocol.FrameType
	data []byte
	at   time.Time
	err  error
}

// readAll reads c's frames into a channel until a read fails, so a test can read with a
// timeout while it keeps writing. It owns c's reader from then on.
func readAll(c *wiretest.Conn) <-chan frameOrErr {
	out := make(chan frameOrErr, 64)
	go func() {
		defer close(out)
		for {
			ft, data, err := c.ReadFrame(30 * time.Second)
			out <- frameOrErr{ft: ft, data: data, at: time.Now(), err: err}
			if err != nil {
				return
			}
		}
	}()
	return out
}

func TestProtocolTouchCappedByMaxMsgTimeout(t *testing.T) {
	t.Parallel()
	const maxMsgTimeout = 2 * time.Second
	addr, d, _ := startNSQD(t, func(o *nsqd.Options) { o.MaxMsgTimeout = maxMsgTimeout })
	c := dialRaw(t, addr)
	_, err := c.Identify(`"msg_timeout":1000`)
	must(t, err)
	must(t, c.Subscribe("capped", "ch", 1))
	must(t, d.Publish("capped", [][]byte{[]byte("forever")}, 0))
	frames := readAll(c)

	var first frameOrErr
	select {
	case first = <-frames:
		if first.err != nil || first.ft != protocol.FrameTypeMessage {
			t.Fatalf("want a message, got %s %q %v", first.ft, first.data, first.err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("no message")
	}
	_, _, id, _, err := protocol.DecodeMessage(first.data)
	must(t, err)

	// Touch faster than the 1 s timeout; the message must still time out once it has been out
	// for --max-msg-timeout.
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	giveUp := time.After(2*maxMsgTimeout + time.Second)
	for {
		select {
		case <-tick.C:
			must(t, c.Send(protocol.Touch(id)))
			continue
		case <-giveUp:
			t.Fatalf("TOUCH kept the message for more than twice --max-msg-timeout")
		case f := <-frames:
			if f.err != nil {
				t.Fatalf("connection failed while touching: %v", f.err)
			}
			if f.ft != protocol.FrameTypeMessage {
				continue // heartbeats; a late TOUCH may also race the timeout and fail
			}
			_, attempts, id2, _, err := protocol.DecodeMessage(f.data)
			must(t, err)
			if id2 != id || attempts != 2 {
				t.Fatalf("got %s attempts %d, want %s attempts 2", id2, attempts, id)
			}
			if gap := f.at.Sub(first.at); gap < maxMsgTimeout*9/10 {
				t.Errorf("redelivered %v after the first delivery, before --max-msg-timeout %v", gap, maxMsgTimeout)
			}
			return
		}
	}
}

func TestStalledReaderDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	addr, d, _ := startNSQD(t, nil)
	// A client that asks for everything, keeps talking (so the read deadline never drops it)
	// but never reads: the daemon's writes to it block until the write deadline, one
	// heartbeat interval.
	stalled := dialRaw(t, addr)
	must(t, stalled.Send(wiretest.IdentifyJSON(`{"heartbeat_interval":1000}`)))
	must(t, stalled.ExpectResponse(protocol.OK))
	must(t, stalled.Subscribe("stall", "ch", 2500))
	stopNOP := make(chan struct{})
	var nops sync.WaitGroup
	nops.Go(func() {
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopNOP:
				return
			case <-tick.C:
				if stalled.Send(protocol.Nop()) != nil {
					return
				}
			}
		}
	})
	t.Cleanup(func() { close(stopNOP); nops.Wait() })

	// Enough data to fill the socket buffers many times over.
	body := strings.Repeat("z", 64<<10)
	var bodies []string
	p := newProducer(t, addr, nil)
	for i := range 300 {
		b := fmt.Sprintf("%03d%s", i, body)
		bodies = append(bodies, b)
		must(t, p.Publish("stall", []byte(b)))
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		cs, _ := d.ChannelStats("stall", "ch")
		return cs.ClientCount == 0
	}, "stalled client dropped")

	// Everything it held goes to a healthy consumer.
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 50
	col := &collector{}
	newConsumer(t, addr, "stall", "ch", cfg, col, 1)
	col.waitFor(t, len(bodies), 20*time.Second)
	testutil.Eventually(t, 5*time.Second, func() bool { return drained(d, "stall", "ch") }, "channel drained")
	checkExactlyOnce(t, col.bodies(), bodies)
}
