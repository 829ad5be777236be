package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
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
	log := newOutputWatcher()
	done := make(chan int, 1)
	go func() { done <- run(ctx, loopbackArgs, io.Discard, log) }()
	if !log.waitFor("nsqlookupd started", 10*time.Second) {
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
	if testing.Short() {
		t.Skip("builds the binary")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not on PATH")
	}
	bin := filepath.Join(t.TempDir(), "nsqlookupd")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	t.Run("version", func(t *testing.T) {
		out, err := exec.Command(bin, "--version").Output()
		if err != nil {
			t.Fatalf("nsqlookupd --version: %v", err)
		}
		if got, want := string(out), version.String("nsqlookupd")+"\n"; got != want {
			t.Errorf("printed %q, want %q", got, want)
		}
	})

	t.Run("bad flag exits 1", func(t *testing.T) {
		err := exec.Command(bin, "--inactive-producer-timeout=soon").Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("exit: %v, want status 1", err)
		}
	})

	t.Run("SIGTERM shuts down cleanly", func(t *testing.T) {
		cmd := exec.Command(bin, loopbackArgs...)
		log := newOutputWatcher()
		cmd.Stderr = log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		// "starting" is logged after the signal handler is installed, so from then on
		// SIGTERM means shutdown rather than death by signal.
		if !log.waitFor("msg=starting", 10*time.Second) {
			t.Fatalf("no start in the log:\n%s", log.String())
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("exit %v after SIGTERM, want 0; log:\n%s", err, log.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no exit within 30s of SIGTERM; log:\n%s", log.String())
		}
	})
}

// outputWatcher collects output and lets a test wait for a piece of it. It is safe for
// concurrent use.
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
