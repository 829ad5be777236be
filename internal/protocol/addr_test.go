package protocol_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ternmq/tern/internal/protocol"
)

func TestNetwork(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:4150": "tcp",
		"0.0.0.0:0":      "tcp",
		"[::1]:4150":     "tcp",
		":4150":          "tcp",
		"/var/run/nsqd":  "unix",
		"nsqd.sock":      "unix",
	} {
		if got := protocol.Network(addr); got != want {
			t.Errorf("Network(%q) = %q, want %q", addr, got, want)
		}
	}
}

func TestListenUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nsqd.sock")
	ln, err := protocol.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if protocol.ListenPort(ln.Addr()) != -1 {
		t.Errorf("port of a unix socket = %d, want -1", protocol.ListenPort(ln.Addr()))
	}
	// A live socket is not taken over.
	if _, err := protocol.Listen(path); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("listening on a live socket: %v", err)
	}
	ln.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("closing the listener left the socket file: %v", err)
	}

	// A stale socket file, left by a process that died, is replaced.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	ln, err = protocol.Listen(path)
	if err != nil {
		t.Fatalf("a stale socket file was not replaced: %v", err)
	}
	ln.Close()

	// A file that is not a socket is left alone.
	plain := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(plain, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := protocol.Listen(plain); err == nil {
		t.Error("listened on a path that is a regular file")
	}
	if b, _ := os.ReadFile(plain); string(b) != "data" {
		t.Error("a regular file was replaced")
	}
	if protocol.ListenPort(nil) != 0 || protocol.ListenPort(&net.TCPAddr{Port: 4150}) != 4150 {
		t.Error("ListenPort of nil or TCP")
	}
}
