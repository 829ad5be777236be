package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/internal/tools/tooltest"
	"github.com/ternmq/tern/internal/version"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRun(t *testing.T) {
	c := tooltest.Start(t, 1, false)
	nsqd := "--nsqd-tcp-address=" + c.TCP(0)
	testutil.CheckRun(t, run, []testutil.RunCase{
		{Name: "version", Args: []string{"--version"}, Stdout: version.String("nsq_to_file") + "\n"},
		{Name: "help", Args: []string{"--help"}, Stdout: "Usage of nsq_to_file:"},
		{Name: "bad flag", Args: []string{"--rotate-size=big"}, Code: 1, Stderr: `invalid value "big" for flag -rotate-size`},
		{Name: "no topic", Args: []string{nsqd}, Code: 1, Stderr: "--topic or --topic-pattern required"},
		{Name: "gzip level", Args: []string{nsqd, "--topic=t", "--gzip-level=0"}, Code: 1, Stderr: "invalid --gzip-level value (0), should be 1-9"},
		{Name: "missing REV", Args: []string{nsqd, "--topic=t", "--gzip", "--filename-format=<TOPIC>.log"}, Code: 1, Stderr: "missing <REV> in --filename-format"},
		{Name: "consumer option", Args: []string{nsqd, "--topic=t", "--consumer-opt=read_timeout"}, Code: 1, Stderr: "option read_timeout needs a value"},
		{Name: "log prefix", Args: []string{nsqd, "--topic=t", "--output-dir=" + t.TempDir(), "--log-prefix=[files] "}, Cancelled: true, Stderr: "[files] time="},
		{Name: "NSQ's log prefix", Args: []string{nsqd, "--topic=t", "--output-dir=" + t.TempDir()}, Cancelled: true, Stderr: "[nsq_to_file] time="},
		{Name: "no log prefix", Args: []string{nsqd, "--topic=t", "--output-dir=" + t.TempDir(), "--log-prefix="}, Cancelled: true, Stderr: "msg=starting", NotStderr: "[nsq_to_file]"},
	})
}

// TestShutdown builds nsq_to_file and runs it as an operator does (--version, a bad flag,
// SIGTERM), then checks that a stop syncs, closes and moves the file, and exits 0.
func TestShutdown(t *testing.T) {
	c := tooltest.Start(t, 1, false)
	testutil.CheckBinary(t, "nsq_to_file", "--gzip-level=x", []string{"--topic=bin", "--nsqd-tcp-address=" + c.TCP(0), "--output-dir=" + t.TempDir()})

	c.Publish(t, 0, "sig", "one")
	work, out := t.TempDir(), t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	log := testutil.NewOutput()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--topic=sig", "--nsqd-tcp-address=" + c.TCP(0), "--work-dir=" + work, "--output-dir=" + out, "--sync-interval=20ms"}, os.Stdout, log)
	}()
	testutil.Eventually(t, tooltest.Timeout, func() bool { return c.MessageCount(0, "sig") == 1 && strings.Contains(log.String(), "opening") }, "file opened")
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, log.String())
		}
	case <-time.After(tooltest.Timeout):
		t.Fatal("no exit after cancel")
	}
	names, _ := filepath.Glob(filepath.Join(out, "sig.*-000000.*.log"))
	if len(names) != 1 {
		t.Fatalf("output dir holds %q", names)
	}
	if b, _ := os.ReadFile(names[0]); string(b) != "one\n" {
		t.Errorf("file holds %q", b)
	}
}
