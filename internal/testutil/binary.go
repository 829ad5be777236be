package testutil

import (
	"context"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/version"
)

// Output collects a process's output and lets a test wait for a piece of it. Give it to
// exec.Cmd as Stdout or Stderr; cmd.Wait then returns only after all output was written.
type Output struct {
	mu      sync.Mutex
	buf     strings.Builder
	changed chan struct{} // closed and replaced on every write
}

// NewOutput returns an empty Output.
func NewOutput() *Output { return &Output{changed: make(chan struct{})} }

// Write appends p and wakes any waiter.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	close(o.changed)
	o.changed = make(chan struct{})
	return len(p), nil
}

// WaitFor reports whether output containing s arrives before the timeout.
func (o *Output) WaitFor(s string, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		o.mu.Lock()
		found, changed := strings.Contains(o.buf.String(), s), o.changed
		o.mu.Unlock()
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
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// CheckBinary builds the main package in the current directory, as the binary name, and runs
// it the way an operator does: --version prints version.String(name); badFlag, an invalid
// flag, exits 1; and started with args it logs "msg=starting" and, on SIGTERM, exits 0.
func CheckBinary(t *testing.T, name, badFlag string, args []string) {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to build %s: %v", name, err)
	}
	bin := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	t.Run("version", func(t *testing.T) {
		out, err := exec.Command(bin, "--version").Output()
		if err != nil {
			t.Fatalf("%s --version: %v", name, err)
		}
		if got, want := string(out), version.String(name)+"\n"; got != want {
			t.Errorf("%s --version printed %q, want %q", name, got, want)
		}
	})

	t.Run("bad flag exits 1", func(t *testing.T) {
		err := exec.Command(bin, badFlag).Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("%s %s: %v, want exit status 1", name, badFlag, err)
		}
	})

	t.Run("SIGTERM shuts down cleanly", func(t *testing.T) {
		cmd := exec.Command(bin, args...)
		log := NewOutput()
		cmd.Stderr = log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		// "starting" is logged after the signal handler is installed, so from then on
		// SIGTERM means shutdown rather than death by signal.
		if !log.WaitFor("msg=starting", 10*time.Second) {
			t.Fatalf("%s did not log its start; stderr:\n%s", name, log.String())
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s exited with %v after SIGTERM, want 0; stderr:\n%s", name, err, log.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not exit within 30s of SIGTERM; stderr:\n%s", name, log.String())
		}
	})
}

// RunCase is one call of a binary's run function (main without the exit) and what it must
// produce.
type RunCase struct {
	Name      string
	Args      []string
	Code      int    // the exit code
	Stdout    string // a prefix of stdout
	Stderr    string // a part of stderr
	NotStderr string // something stderr must not contain, if set
	// Cancelled starts the context cancelled, so a daemon that starts returns at once: the
	// shutdown path without a signal.
	Cancelled bool
}

// CheckRun calls run for every case, each as a subtest, and checks its exit code and output.
func CheckRun(t *testing.T, run func(ctx context.Context, args []string, stdout, stderr io.Writer) int, cases []RunCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			if tc.Cancelled {
				cancel()
			}
			var stdout, stderr strings.Builder
			if code := run(ctx, tc.Args, &stdout, &stderr); code != tc.Code {
				t.Errorf("exit code = %d, want %d; stderr:\n%s", code, tc.Code, stderr.String())
			}
			if !strings.HasPrefix(stdout.String(), tc.Stdout) {
				t.Errorf("stdout = %q, want it to start with %q", stdout.String(), tc.Stdout)
			}
			if !strings.Contains(stderr.String(), tc.Stderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tc.Stderr)
			}
			if tc.NotStderr != "" && strings.Contains(stderr.String(), tc.NotStderr) {
				t.Errorf("stderr = %q, want it not to contain %q", stderr.String(), tc.NotStderr)
			}
		})
	}
}
