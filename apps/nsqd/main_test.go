package main

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

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
	if testing.Short() {
		t.Skip("builds the binary")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not on PATH")
	}
	bin := filepath.Join(t.TempDir(), "nsqd")
	build := exec.Command(goTool, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	t.Run("version", func(t *testing.T) {
		out, err := exec.Command(bin, "--version").Output()
		if err != nil {
			t.Fatalf("nsqd --version: %v", err)
		}
		if got, want := string(out), version.String("nsqd")+"\n"; got != want {
			t.Errorf("nsqd --version printed %q, want %q", got, want)
		}
	})

	t.Run("bad flag exits 1", func(t *testing.T) {
		err := exec.Command(bin, "--tls-required=sometimes").Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("nsqd with a bad flag: %v, want exit status 1", err)
		}
	})

	t.Run("SIGTERM shuts down cleanly", func(t *testing.T) {
		cmd := exec.Command(bin, loopbackArgs(t)...)
		log := newOutputWatcher()
		cmd.Stderr = log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })

		// "starting" is logged after the signal handler is installed, so from then on
		// SIGTERM means shutdown rather than death by signal.
		if !log.waitFor("msg=starting", 10*time.Second) {
			t.Fatalf("nsqd did not log its start; stderr:\n%s", log.String())
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("nsqd exited with %v after SIGTERM, want 0; stderr:\n%s", err, log.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("nsqd did not exit within 30s of SIGTERM; stderr:\n%s", log.String())
		}
	})
}

// outputWatcher collects a process's output and lets a test wait for a piece of it. It is
// an io.Writer given to exec.Cmd, so cmd.Wait returns only after all output was written.
type outputWatcher struct {
	mu      sync.Mutex
	buf     strings.Builder
	changed chan struct{} // closed and replaced on every write
}

func newOutputWatcher() *outputWatcher {
	return &outputWatcher{changed: make(chan struct{})}
}

// Write appends p and wakes any waiter.
func (w *outputWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	close(w.changed)
	w.changed = make(chan struct{})
	return len(p), nil
}

// waitFor reports whether output containing s arrives before the timeout.
func (w *outputWatcher) waitFor(s string, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		w.mu.Lock()
		found, changed := strings.Contains(w.buf.String(), s), w.changed
		w.mu.Unlock()
		if found {
			return true
		}
		select {
		case <-changed:
		case <-deadline:
			return false
		}
	}
}

// String returns everything written so far.
func (w *outputWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
