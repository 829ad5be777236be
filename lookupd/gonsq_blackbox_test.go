package lookupd_test

import (
	"bufio"
	"encoding/json"
	"io"
	"log"
	"net"
	"testing"
	"time"

	nsq "github.com/nsqio/go-nsq"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/lookupd/lookupdtest"
)

// TestGoNSQDiscovery is a black-box test with go-nsq v1.1.0: a fake nsqd registers with the
// lookupd over V1, and a go-nsq consumer that knows only the lookupd's HTTP address must find
// it through /lookup and connect to it.
func TestGoNSQDiscovery(t *testing.T) {
	l := lookupdtest.Start(t, nil)

	// The fake nsqd: a listener that reports each connection's protocol magic.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	magics := make(chan string, 4)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			var magic [4]byte
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.ReadFull(conn, magic[:])
			_ = conn.Close()
			select {
			case magics <- string(magic[:]):
			default:
			}
		}
	}()

	// Register it, as nsqd does on connecting.
	conn, err := net.DialTimeout("tcp", l.TCPAddr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	identify, err := protocol.Identify(map[string]any{
		"broadcast_address": "127.0.0.1",
		"tcp_port":          ln.Addr().(*net.TCPAddr).Port,
		"http_port":         1,
		"version":           "1.3.0",
	})
	if err != nil {
		t.Fatal(err)
	}
	buf := append([]byte(protocol.MagicV1), identify.AppendTo(nil)...)
	buf = protocol.Register("orders", "workers").AppendTo(buf)
	if _, err := conn.Write(buf); err != nil {
		t.Fatal(err)
	}
	ans, err := protocol.ReadV1Response(r, 1<<16)
	if err != nil || !json.Valid(ans) {
		t.Fatalf("IDENTIFY answered %q, %v", ans, err)
	}
	if ans, err := protocol.ReadV1Response(r, 1<<16); err != nil || string(ans) != "OK" {
		t.Fatalf("REGISTER answered %q, %v", ans, err)
	}

	cfg := nsq.NewConfig()
	cfg.LookupdPollInterval = time.Second
	consumer, err := nsq.NewConsumer("orders", "workers", cfg)
	if err != nil {
		t.Fatal(err)
	}
	consumer.SetLogger(log.New(io.Discard, "", 0), nsq.LogLevelError)
	consumer.AddHandler(nsq.HandlerFunc(func(*nsq.Message) error { return nil }))
	t.Cleanup(consumer.Stop)
	if err := consumer.ConnectToNSQLookupd(l.HTTPAddr().String()); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-magics:
		if m != protocol.MagicV2 {
			t.Fatalf("go-nsq opened with %q, want the V2 magic", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("go-nsq did not connect to the nsqd the lookupd lists")
	}
}
