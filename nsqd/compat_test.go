package nsqd_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/wiretest"
	"github.com/ternmq/tern/nsqd"
)

// These tests pin nsqd's answers to NSQ 1.3's byte for byte, where a client, a log parser or
// NSQ's own tools could tell the difference. The answers Tern gives deliberately differently
// are in TestWireDeliberateDifferences, and in the README's compatibility notes.

// expectExactError reads the next frame and checks that it is the error frame want exactly.
func expectExactError(t testing.TB, c *wiretest.Conn, want string) {
	t.Helper()
	ft, data, err := c.Next()
	if err != nil {
		t.Fatalf("want error frame %q: %v", want, err)
	}
	if ft != protocol.FrameTypeError || string(data) != want {
		t.Fatalf("want error frame %q, got %s frame %q", want, ft, data)
	}
}

func TestWireBadMagicIsTheBareCode(t *testing.T) {
	addr, _, _ := startNSQD(t, nil)
	for _, magic := range []string{protocol.MagicV1, "GET ", "\x00\x00\x00\x00"} {
		c, err := wiretest.DialMagic(addr, magic)
		must(t, err)
		expectExactError(t, c, "E_BAD_PROTOCOL")
		must(t, c.ExpectClosed())
		c.Close()
	}
}

// TestWireFinReqTouchErrors checks the answers to FIN, REQ and TOUCH for a message that is
// not in flight and for one in flight to another client: non-fatal, with NSQ's words.
func TestWireFinReqTouchErrors(t *testing.T) {
	addr, _, _ := startNSQD(t, nil)
	owner, other := dialRaw(t, addr), dialRaw(t, addr)
	must(t, owner.Subscribe("wire", "ch", 1))
	must(t, other.Subscribe("wire", "ch", 0))
	must(t, dialRaw(t, addr).Publish("wire", "m"))
	m, err := owner.ExpectMessage()
	must(t, err)

	const unknown = "0000000000000001"
	id := string(m.ID[:])
	for _, tc := range []struct {
		c    *wiretest.Conn
		cmd  string
		want string
	}{
		{other, "FIN " + unknown, "E_FIN_FAILED FIN " + unknown + " failed ID not in flight"},
		{other, "REQ " + unknown + " 0", "E_REQ_FAILED REQ " + unknown + " failed ID not in flight"},
		{other, "TOUCH " + unknown, "E_TOUCH_FAILED TOUCH " + unknown + " failed ID not in flight"},
		{other, "FIN " + id, "E_FIN_FAILED FIN " + id + " failed client does not own message"},
		{other, "REQ " + id + " 0", "E_REQ_FAILED REQ " + id + " failed client does not own message"},
		{other, "TOUCH " + id, "E_TOUCH_FAILED TOUCH " + id + " failed client does not own message"},
	} {
		must(t, tc.c.Write([]byte(tc.cmd+"\n")))
		expectExactError(t, tc.c, tc.want)
	}
	// Non-fatal: both connections still work, and the owner still holds the message.
	must(t, other.Usable())
	must(t, owner.Send(protocol.Finish(m.ID)))
	must(t, owner.Usable())

	// A message ID of the wrong length is a fatal E_INVALID.
	short := dialRaw(t, addr)
	must(t, short.Subscribe("wire", "ch", 0))
	must(t, short.Write([]byte("FIN 0123\n")))
	expectExactError(t, short, "E_INVALID invalid message ID")
	must(t, short.ExpectClosed())
}

func TestWireMPUBEmptyMessage(t *testing.T) {
	addr, _, _ := startNSQD(t, nil)
	c := dialRaw(t, addr)
	// One message of zero bytes: body = count 1, size 0.
	must(t, c.Write(cat(line("MPUB wire"), u32(8), u32(1), u32(0))))
	expectExactError(t, c, "E_BAD_MESSAGE MPUB invalid message(0) body size 0")
	must(t, c.ExpectClosed())
}

// TestWireSecondIdentify checks that IDENTIFY may be repeated before SUB, as NSQ allows, each
// answered as the first is; only compression, which cannot be undone, is refused the second
// time.
func TestWireSecondIdentify(t *testing.T) {
	addr, d, _ := startNSQD(t, nil)
	c := dialRaw(t, addr)
	must(t, c.Send(wiretest.IdentifyJSON(`{"client_id":"first"}`)))
	must(t, c.ExpectResponse("OK"))
	must(t, c.Send(wiretest.IdentifyJSON(`{"client_id":"second","user_agent":"ua/2"}`)))
	must(t, c.ExpectResponse("OK"))
	resp, err := c.Identify(`"client_id":"third","msg_timeout":5000`)
	must(t, err)
	if resp["msg_timeout"] != float64(5000) {
		t.Errorf("third IDENTIFY answered %v", resp)
	}
	must(t, c.Subscribe("wire", "ch", 0))
	cs, ok := d.ChannelStats("wire", "ch")
	if !ok || len(cs.Clients) != 1 || cs.Clients[0].ClientID != "third" {
		t.Fatalf("stats show %+v, want the last IDENTIFY's client_id", cs.Clients)
	}

	z := dialRaw(t, addr)
	_, err = z.Identify(`"snappy":true`)
	must(t, err)
	must(t, z.Send(wiretest.IdentifyJSON(`{"feature_negotiation":true,"deflate":true}`)))
	expectExactError(t, z, "E_IDENTIFY_FAILED IDENTIFY cannot negotiate compression again")
	must(t, z.ExpectClosed())
}

// TestWireIdentifyResponse checks the IDENTIFY answer's fields: exactly NSQ 1.3's, and its
// deflate_level worked out as NSQ does (6 unless deflate is asked for with a level, never
// above --max-deflate-level).
func TestWireIdentifyResponse(t *testing.T) {
	nsq13 := []string{
		"auth_required", "deflate", "deflate_level", "max_deflate_level", "max_msg_timeout",
		"max_rdy_count", "msg_timeout", "output_buffer_size", "output_buffer_timeout",
		"sample_rate", "snappy", "tls_v1", "version",
	}
	for _, tc := range []struct {
		name     string
		maxLevel int
		fields   string
		level    float64
	}{
		{"no deflate", 6, ``, 6},
		{"no deflate, a level", 6, `"deflate_level":3`, 6},
		{"no deflate, low maximum", 4, ``, 4},
		{"deflate", 6, `"deflate":true`, 6},
		{"deflate with a level", 6, `"deflate":true,"deflate_level":2`, 2},
		{"deflate above the maximum", 5, `"deflate":true,"deflate_level":9`, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _, _ := startNSQD(t, func(o *nsqd.Options) {
				o.MaxDeflateLevel = tc.maxLevel
				o.TopologyRegion, o.TopologyZone = "r", "z"
			})
			c := dialRaw(t, addr)
			body := `{"feature_negotiation":true}`
			if tc.fields != "" {
				body = `{"feature_negotiation":true,` + tc.fields + `}`
			}
			must(t, c.Send(wiretest.IdentifyJSON(body)))
			ft, data, err := c.Next()
			must(t, err)
			var resp map[string]any
			if ft != protocol.FrameTypeResponse || json.Unmarshal(data, &resp) != nil {
				t.Fatalf("IDENTIFY answered %s %q", ft, data)
			}
			keys := slices.Sorted(func(yield func(string) bool) {
				for k := range resp {
					if !yield(k) {
						return
					}
				}
			})
			if !slices.Equal(keys, nsq13) {
				t.Errorf("IDENTIFY response fields %v, want NSQ 1.3's %v", keys, nsq13)
			}
			if resp["deflate_level"] != tc.level {
				t.Errorf("deflate_level = %v, want %v", resp["deflate_level"], tc.level)
			}
		})
	}
}

// TestWireDeliberateDifferences checks the answers Tern gives where NSQ's behaviour is
// harmful; the README's compatibility notes explain them. The others are checked where their
// feature is: a second compression (TestWireSecondIdentify), a peer that never sends the
// magic (TestSilentClientDropped), REQ delays past --max-req-timeout
// (TestProtocolRequeueHugeDelay).
func TestWireDeliberateDifferences(t *testing.T) {
	addr, _, _ := startNSQD(t, func(o *nsqd.Options) { smallLimits(o) })
	for _, tc := range []struct {
		name, why string
		send      []byte
		reply     string
	}{
		{
			"MPUB body size not matching its messages",
			"NSQ reads past the declared body and desynchronises the stream",
			cat(line("MPUB wire"), mpubBody(20, 1, sized("abcde"), []byte("1234567"))),
			"E_BAD_BODY MPUB body size 20 does not match its messages (7 bytes left over)",
		},
		{
			"command line over 1 KiB",
			"NSQ reads a line of any length into memory",
			line("PUB " + string(make([]byte, 2000))),
			"E_INVALID",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, addr)
			must(t, c.Write(tc.send))
			must(t, c.ExpectError(tc.reply))
			must(t, c.ExpectClosed())
			t.Logf("differs from NSQ because %s", tc.why)
		})
	}
}

// TestIdentifyWhileStatsRead has a producer IDENTIFY again and again while /stats lists it
// among the producers: under the race detector this fails if stats read what IDENTIFY writes
// without synchronisation.
func TestIdentifyWhileStatsRead(t *testing.T) {
	addr, d, _ := startNSQD(t, nil)
	c := dialRaw(t, addr)
	must(t, c.Publish("race", "m"))
	done := make(chan error, 1)
	go func() {
		for i := range 50 {
			err := c.Send(wiretest.IdentifyJSON(fmt.Sprintf(`{"client_id":"c%d","hostname":"h%d","user_agent":"ua/%d"}`, i, i, i)))
			if err == nil {
				err = c.ExpectResponse("OK")
			}
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for {
		select {
		case err := <-done:
			must(t, err)
			r := d.StatsReport(nsqd.StatsFilter{IncludeClients: true})
			if len(r.Producers) != 1 || r.Producers[0].ClientID != "c49" || r.Producers[0].UserAgent != "ua/49" {
				t.Fatalf("producers %+v, want the last IDENTIFY's", r.Producers)
			}
			return
		default:
			_ = d.StatsReport(nsqd.StatsFilter{IncludeClients: true})
		}
	}
}
