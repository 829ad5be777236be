package main

import (
	"context"
	"io"
	"testing"

	"go.uber.org/goleak"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/internal/tools/tooltest"
	"github.com/ternmq/tern/internal/version"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRun(t *testing.T) {
	c := tooltest.Start(t, 2, false)
	nsqd, dest := "--nsqd-tcp-address="+c.TCP(0), "--destination-nsqd-tcp-address="+c.TCP(1)
	testutil.CheckRun(t, run, []testutil.RunCase{
		{Name: "version", Args: []string{"--version"}, Stdout: version.String("nsq_to_nsq") + "\n"},
		{Name: "help", Args: []string{"--help"}, Stdout: "Usage of nsq_to_nsq:"},
		{Name: "bad flag", Args: []string{"--status-every=often"}, Code: 1, Stderr: `invalid value "often" for flag -status-every`},
		{Name: "no destination", Args: []string{nsqd, "--topic=t"}, Code: 1, Stderr: "--destination-nsqd-tcp-address required"},
		{Name: "producer option", Args: []string{nsqd, dest, "--topic=t", "--producer-opt=tls_v1,maybe"}, Code: 1, Stderr: `option tls_v1: want true or false, got "maybe"`},
		{Name: "stops cleanly", Args: []string{nsqd, dest, "--topic=t"}, Stderr: "msg=starting", Cancelled: true},
	})
	c.Publish(t, 0, "copy", "x")
	done := make(chan int, 1)
	ctx := testutil.Context(t)
	runCtx, cancel := context.WithCancel(ctx)
	go func() {
		done <- run(runCtx, []string{nsqd, dest, "--topic=copy", "--destination-topic=copied"}, io.Discard, testutil.NewOutput())
	}()
	if got := c.Read(t, 1, "copied", "check", 1); got[0] != "x" {
		t.Errorf("copied %q", got)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit %d", code)
	}
}

func TestBinary(t *testing.T) {
	c := tooltest.Start(t, 2, false)
	testutil.CheckBinary(t, "nsq_to_nsq", "--max-in-flight=x", []string{"--topic=bin", "--nsqd-tcp-address=" + c.TCP(0), "--destination-nsqd-tcp-address=" + c.TCP(1)})
}
