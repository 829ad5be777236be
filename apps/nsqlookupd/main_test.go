package main

import (
	"context"
	"github.com/ternmq/tern/internal/testutil"
	"io"
	"net"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/version"
)

// loopbackArgs keep a test daemon off the well-known ports.
var loopbackArgs = []string{"--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0", "--broadcast-address=127.0.0.1"}

func TestRun(t *testing.T) {
	badConfig := writeConfig(t, "max_rdy = 1\n")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = busy.Close() })
	with := func(extra ...string) []string { return append(append([]string{}, loopbackArgs...), extra...) }
	testutil.CheckRun(t, run, []testutil.RunCase{
		{Name: "version", Args: []string{"--version"}, Stdout: version.String("nsqlookupd") + "\n"},
		{Name: "version ignores a broken config", Args: []string{"--config=" + badConfig, "--version"}, Stdout: version.String("nsqlookupd") + "\n"},
		{Name: "help", Args: []string{"--help"}, Stdout: "Usage: nsqlookupd"},
		{Name: "bad flag", Args: []string{"--tombstone-lifetime=x"}, Code: 1, Stderr: `nsqlookupd: invalid value "x" for flag -tombstone-lifetime`},
		{Name: "unknown flag", Args: []string{"--frobnicate"}, Code: 1, Stderr: "--help for usage"},
		{Name: "bad config", Args: []string{"--config=" + badConfig}, Code: 1, Stderr: `unknown key "max_rdy"`},
		{Name: "invalid options", Args: []string{"--tombstone-lifetime=0s", "--log-level=loud"}, Code: 1, Stderr: "--tombstone-lifetime must be positive"},
		{Name: "failed start", Args: with("--tcp-address=" + busy.Addr().String()), Code: 1, Stderr: "nsqlookupd: failed to start:"},
		{Name: "clean shutdown", Args: with("--log-level=debug"), Stderr: "msg=starting", Cancelled: true},
		{Name: "verbose warns", Args: with("--verbose"), Stderr: "flag=--verbose", Cancelled: true},
		{Name: "log level error hides info", Args: with("--log-level=error"), NotStderr: "msg=starting", Cancelled: true},
	})
}

// httpAddrRE finds the HTTP address in the "nsqlookupd started" log record.
var httpAddrRE = regexp.MustCompile(`http_address=(\S+)`)

// TestRunServes runs the daemon through run, queries it, and stops it by cancelling.
func TestRunServes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := testutil.NewOutput()
	done := make(chan int, 1)
	go func() { done <- run(ctx, loopbackArgs, io.Discard, log) }()
	if !log.WaitFor("nsqlookupd started", 10*time.Second) {
		t.Fatalf("no start in the log:\n%s", log.String())
	}
	m := httpAddrRE.FindStringSubmatch(log.String())
	if m == nil {
		t.Fatalf("no http_address in the log:\n%s", log.String())
	}
	resp, err := http.Get("http://" + m[1] + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "OK" {
		t.Fatalf("/ping: %d %q", resp.StatusCode, body)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit code %d after cancel; log:\n%s", code, log.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return within 10s of cancel")
	}
}

// TestBinary builds nsqlookupd and runs it the way an operator does: --version, a bad flag,
// and a start followed by SIGTERM, which must end in a clean exit 0.
func TestBinary(t *testing.T) {
	testutil.CheckBinary(t, "nsqlookupd", "--inactive-producer-timeout=soon", loopbackArgs)
}
