package main

import (
	"context"
	"github.com/ternmq/tern/internal/testutil"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
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
	tests := []struct {
		name      string
		args      []string
		code      int
		stdout    string // a prefix of stdout
		stderr    string // a part of stderr
		notStderr string
		// cancelled makes the context start cancelled, so a daemon that starts returns at
		// once: the shutdown path without a signal.
		cancelled bool
	}{
		{name: "version", args: []string{"--version"}, stdout: version.String("nsqlookupd") + "\n"},
		{name: "version ignores a broken config", args: []string{"--config=" + badConfig, "--version"}, stdout: version.String("nsqlookupd") + "\n"},
		{name: "help", args: []string{"--help"}, stdout: "Usage: nsqlookupd"},
		{name: "bad flag", args: []string{"--tombstone-lifetime=x"}, code: 1, stderr: `nsqlookupd: invalid value "x" for flag -tombstone-lifetime`},
		{name: "unknown flag", args: []string{"--frobnicate"}, code: 1, stderr: "--help for usage"},
		{name: "bad config", args: []string{"--config=" + badConfig}, code: 1, stderr: `unknown key "max_rdy"`},
		{name: "invalid options", args: []string{"--tombstone-lifetime=0s", "--log-level=loud"}, code: 1, stderr: "--tombstone-lifetime must be positive"},
		{name: "failed start", args: with("--tcp-address=" + busy.Addr().String()), code: 1, stderr: "nsqlookupd: failed to start:"},
		{name: "clean shutdown", args: with("--log-level=debug"), stderr: "msg=starting", cancelled: true},
		{name: "verbose warns", args: with("--verbose"), stderr: "flag=--verbose", cancelled: true},
		{name: "log level error hides info", args: with("--log-level=error"), notStderr: "msg=starting", cancelled: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			if tt.cancelled {
				cancel()
			}
			var stdout, stderr strings.Builder
			code := run(ctx, tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit code = %d, want %d; stderr:\n%s", code, tt.code, stderr.String())
			}
			if !strings.HasPrefix(stdout.String(), tt.stdout) {
				t.Errorf("stdout = %q, want it to start with %q", stdout.String(), tt.stdout)
			}
			if !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tt.stderr)
			}
			if tt.notStderr != "" && strings.Contains(stderr.String(), tt.notStderr) {
				t.Errorf("stderr = %q, want it not to contain %q", stderr.String(), tt.notStderr)
			}
		})
	}
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
