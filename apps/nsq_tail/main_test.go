package main

import (
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
	c := tooltest.Start(t, 1, false)
	c.Publish(t, 0, "t", "first", "second")
	nsqd := "--nsqd-tcp-address=" + c.TCP(0)
	testutil.CheckRun(t, run, []testutil.RunCase{
		{Name: "version", Args: []string{"--version"}, Stdout: version.String("nsq_tail") + "\n"},
		{Name: "help", Args: []string{"--help"}, Stdout: "Usage of nsq_tail:"},
		{Name: "bad flag", Args: []string{"--n=lots"}, Code: 1, Stderr: `nsq_tail: invalid value "lots" for flag -n`},
		{Name: "no source", Args: []string{"--topic=t"}, Code: 1, Stderr: "--nsqd-tcp-address or --lookupd-http-address required"},
		{Name: "no topic", Args: []string{nsqd}, Code: 1, Stderr: "--topic required"},
		{Name: "both sources", Args: []string{"--topic=t", nsqd, "--lookupd-http-address=127.0.0.1:1"}, Code: 1, Stderr: "use --nsqd-tcp-address or --lookupd-http-address not both"},
		{Name: "max_in_flight option", Args: []string{"--topic=t", nsqd, "--consumer-opt=max_in_flight,5"}, Code: 1, Stderr: "use --max-in-flight to set max_in_flight"},
		{Name: "tls option without tls_v1", Args: []string{"--topic=t", nsqd, "--consumer-opt=tls_insecure_skip_verify,true"}, Code: 1, Stderr: "no effect without tls_v1"},
		{Name: "shows n messages", Args: []string{"--topic=t", nsqd, "--n=2", "--print-topic", "--consumer-opt=heartbeat_interval,5s"}, Stdout: "t | first\nt | second\n", Stderr: "msg=starting"},
		{Name: "unreachable", Args: []string{"--topic=t", "--nsqd-tcp-address=127.0.0.1:1"}, Code: 1, Stderr: "connect to nsqd 127.0.0.1:1"},
	})
}

// TestBinary builds nsq_tail and runs it as an operator does: --version, a bad flag, and a
// run stopped by SIGTERM.
func TestBinary(t *testing.T) {
	c := tooltest.Start(t, 1, false)
	testutil.CheckBinary(t, "nsq_tail", "--max-in-flight=many", []string{"--topic=bin", "--nsqd-tcp-address=" + c.TCP(0)})
}
