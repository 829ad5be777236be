package main

import (
	"context"
	"github.com/ternmq/tern/internal/testutil"
	"net"
	"strings"
	"testing"

	"github.com/ternmq/tern/internal/version"
)

// loopbackArgs keep a test daemon off the well-known ports and out of the working directory.
func loopbackArgs(t *testing.T) []string {
	t.Helper()
	return []string{
		"--tcp-address=127.0.0.1:0",
		"--http-address=127.0.0.1:0",
		"--https-address=127.0.0.1:0",
		"--broadcast-address=127.0.0.1",
		"--data-path=" + t.TempDir(),
	}
}

func TestRun(t *testing.T) {
	badConfig := writeConfig(t, "max_rdy = 1\n")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = busy.Close() })
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
		{name: "version", args: []string{"--version"}, code: 0, stdout: version.String("nsqd") + "\n"},
		{name: "version ignores a broken config", args: []string{"--config=" + badConfig, "--version"}, code: 0, stdout: version.String("nsqd") + "\n"},
		{name: "help", args: []string{"--help"}, code: 0, stdout: "Usage: nsqd"},
		{name: "bad flag", args: []string{"--max-rdy-count=x"}, code: 1, stderr: "nsqd: invalid value \"x\" for flag -max-rdy-count"},
		{name: "unknown flag", args: []string{"--frobnicate"}, code: 1, stderr: "--help for usage"},
		{name: "bad config", args: []string{"--config=" + badConfig}, code: 1, stderr: `unknown key "max_rdy"`},
		{name: "invalid options", args: []string{"--max-deflate-level=12", "--node-id=4096"}, code: 1, stderr: "--max-deflate-level"},
		{name: "failed start", args: append(loopbackArgs(t), "--tcp-address="+busy.Addr().String()), code: 1, stderr: "nsqd: failed to start:"},
		{name: "clean shutdown", args: append(loopbackArgs(t), "--log-level=debug"), code: 0, stderr: "msg=starting", cancelled: true},
		{name: "deprecated flags warn", args: append(loopbackArgs(t), "--verbose", "--worker-id=3"), code: 0, stderr: "flag=--worker-id", cancelled: true},
		{name: "log level error hides info", args: append(loopbackArgs(t), "--log-level=error"), code: 0, notStderr: "msg=starting", cancelled: true},
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

// TestBinary builds nsqd and runs it the way an operator does: --version, a bad flag, and a
// start followed by SIGTERM, which must end in a clean exit 0.
func TestBinary(t *testing.T) {
	testutil.CheckBinary(t, "nsqd", "--tls-required=sometimes", loopbackArgs(t))
}
