package lookupd

import (
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/ternmq/tern/internal/protocol"
)

// BenchmarkV1Ping measures one PING round trip over loopback TCP: the cost nsqd's keepalive
// puts on lookupd.
func BenchmarkV1Ping(b *testing.B) {
	l := startLookupd(b, func(o *Options) { o.LogLevel = "error" })
	p := registerPeer(b, l, 4150, 4151, "orders")
	ping := protocol.Ping().AppendTo(nil)
	for b.Loop() {
		if _, err := p.conn.Write(ping); err != nil {
			b.Fatal(err)
		}
		if ans, err := protocol.ReadV1Response(p.r, 64); err != nil || string(ans) != protocol.OK {
			b.Fatalf("PING: %q, %v", ans, err)
		}
	}
}

// BenchmarkHTTPLookup measures GET /lookup for a topic on 10 nsqd nodes with 5 channels, the
// query every consumer repeats every poll interval.
func BenchmarkHTTPLookup(b *testing.B) {
	l := startLookupd(b, func(o *Options) { o.LogLevel = "error" })
	for i := range 10 {
		p := registerPeer(b, l, 4150+i*10, 4151+i*10)
		for ch := range 5 {
			p.expectOK(protocol.Register("orders", "c"+strconv.Itoa(ch)))
		}
	}
	url := "http://" + l.HTTPAddr().String() + "/lookup?topic=orders"
	client := &http.Client{}
	for b.Loop() {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}
