package protocol

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

func TestAcceptHandsOverConnectionsUntilClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan net.Conn, 2)
	done := make(chan struct{})
	go func() {
		Accept(context.Background(), ln, slog.New(slog.DiscardHandler), func(c net.Conn) bool {
			got <- c
			return true
		})
		close(done)
	}()
	for range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		select {
		case s := <-got:
			s.Close()
		case <-time.After(5 * time.Second):
			t.Fatal("connection not handed over")
		}
	}
	ln.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after the listener closed")
	}
}

func TestAcceptClosesAndStopsWhenRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		Accept(context.Background(), ln, slog.New(slog.DiscardHandler), func(net.Conn) bool { return false })
		close(done)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("refused connection read %v, want EOF (closed by the server)", err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after a refusal")
	}
}
