package nsq_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/nsq"
	"github.com/ternmq/tern/nsqd"
	"github.com/ternmq/tern/nsqd/nsqdtest"
)

// TestUnixSockets runs nsqd with its TCP protocol and HTTP API on unix domain sockets, as
// NSQ 1.2+ does when --tcp-address and --http-address are paths, and uses it with the
// client's Producer and Consumer, whose addresses are those paths.
func TestUnixSockets(t *testing.T) {
	dir, err := os.MkdirTemp("", "tern-unix") // short: a socket path is limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	tcpPath, httpPath := filepath.Join(dir, "nsqd.sock"), filepath.Join(dir, "http.sock")
	d := nsqdtest.Start(t, func(o *nsqd.Options) {
		o.TCPAddress, o.HTTPAddress = tcpPath, httpPath
	})
	if d.TCPAddr().Network() != "unix" || d.HTTPAddr().Network() != "unix" {
		t.Fatalf("listening on %s %s and %s %s", d.TCPAddr().Network(), d.TCPAddr(), d.HTTPAddr().Network(), d.HTTPAddr())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := nsq.NewProducer(tcpPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if err := p.Publish(ctx, "unix", []byte("over a socket")); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	c, err := nsq.NewConsumer("unix", "ch", nsq.HandlerFunc(func(m *nsq.Message) error {
		got <- string(m.Body)
		return nil
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Stop(ctx) }()
	if err := c.ConnectToNSQD(ctx, tcpPath); err != nil {
		t.Fatal(err)
	}
	select {
	case body := <-got:
		if body != "over a socket" {
			t.Fatalf("got %q", body)
		}
	case <-ctx.Done():
		t.Fatal("no message over the unix socket")
	}

	// The HTTP API answers on its socket, and /info reports -1 for the ports, as NSQ does.
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", httpPath)
		},
	}}
	resp, err := hc.Get("http://nsqd/info")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info struct {
		TCPPort  int `json:"tcp_port"`
		HTTPPort int `json:"http_port"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		t.Fatal(err)
	}
	if info.TCPPort != -1 || info.HTTPPort != -1 {
		t.Errorf("/info ports %d and %d, want -1 for unix sockets", info.TCPPort, info.HTTPPort)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		cs, _ := d.ChannelStats("unix", "ch")
		return cs.FinishCount == 1
	}, "the FIN reached nsqd")
}
