package testutil

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// RealNSQ is a cluster of NSQ 1.3's own daemons for the interop tests: one nsqlookupd and
// the nsqds registered with it, all on 127.0.0.1, each address "host:port".
type RealNSQ struct {
	LookupdTCP, LookupdHTTP string
	NodesTCP, NodesHTTP     []string
}

// StartRealNSQ runs NSQ's nsqlookupd and n nsqds from $TERN_NSQ_BIN until the test ends.
func StartRealNSQ(t *testing.T, n int) *RealNSQ {
	t.Helper()
	addrs := FreeAddresses(t, 2+2*n)
	r := &RealNSQ{LookupdTCP: addrs[0], LookupdHTTP: addrs[1]}
	StartProcess(t, r.LookupdHTTP, NSQBinary(t, "nsqlookupd"),
		"--tcp-address="+r.LookupdTCP, "--http-address="+r.LookupdHTTP, "--broadcast-address=127.0.0.1")
	for i := range n {
		tcp, http := addrs[2+2*i], addrs[3+2*i]
		StartProcess(t, http, NSQBinary(t, "nsqd"), "--tcp-address="+tcp, "--http-address="+http,
			"--broadcast-address=127.0.0.1", "--lookupd-tcp-address="+r.LookupdTCP, "--data-path="+t.TempDir())
		r.NodesTCP = append(r.NodesTCP, tcp)
		r.NodesHTTP = append(r.NodesHTTP, http)
	}
	return r
}

// NSQBinary returns the path of one of NSQ 1.3's binaries in $TERN_NSQ_BIN, which
// `make interop-test` fills from the Go module proxy (contrib/nsq-reference.sh).
func NSQBinary(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv("TERN_NSQ_BIN")
	if dir == "" {
		t.Fatal("TERN_NSQ_BIN must name a directory with NSQ 1.3's binaries: run make interop-test")
	}
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("NSQ's %s: %v", name, err)
	}
	return path
}

// StartProcess runs a daemon until the test ends (SIGINT, then a kill after 10 s) and waits
// until its HTTP API at httpAddr answers /ping. Its output is logged if the test fails.
func StartProcess(t *testing.T, httpAddr, path string, args ...string) {
	t.Helper()
	out := NewOutput()
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(path), out.String())
		}
	})
	Eventually(t, 10*time.Second, func() bool {
		resp, err := http.Get("http://" + httpAddr + "/ping")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == 200
	}, "%s answers on %s", filepath.Base(path), httpAddr)
}

// FreeAddress returns a 127.0.0.1 address with a port nothing listens on now, for a daemon
// started in another process, which cannot be handed a listener.
func FreeAddress(tb testing.TB) string {
	tb.Helper()
	return FreeAddresses(tb, 1)[0]
}

// FreeAddresses returns n distinct such addresses. They are held open together until all
// are chosen: one closed before the next is picked could be picked again.
func FreeAddresses(tb testing.TB, n int) []string {
	tb.Helper()
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		defer func() { _ = ln.Close() }()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs
}
