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
	nsqd := "--nsqd-tcp-address=" + c.TCP(0)
	testutil.CheckRun(t, run, []testutil.RunCase{
		{Name: "version", Args: []string{"--version"}, Stdout: version.String("nsq_to_http") + "\n"},
		{Name: "help", Args: []string{"--help"}, Stdout: "Usage of nsq_to_http:"},
		{Name: "bad flag", Args: []string{"--sample=half"}, Code: 1, Stderr: `invalid value "half" for flag -sample`},
		{Name: "old flag refused", Args: []string{"--throttle-fraction=0.5"}, Code: 1, Stderr: "flag provided but not defined: -throttle-fraction"},
		{Name: "no endpoint", Args: []string{nsqd, "--topic=t"}, Code: 1, Stderr: "--get or --post required"},
		{Name: "header", Args: []string{nsqd, "--topic=t", "--post=http://127.0.0.1:1/", "--header=X"}, Code: 1, Stderr: `--header "X": want 'Key: value'`},
		{Name: "mode", Args: []string{nsqd, "--topic=t", "--post=http://127.0.0.1:1/", "--mode=fastest"}, Code: 1, Stderr: `--mode "fastest"`},
		{Name: "stops cleanly", Args: []string{nsqd, "--topic=t", "--post=http://127.0.0.1:1/"}, Stderr: "msg=starting", Cancelled: true},
	})
}

func TestBinary(t *testing.T) {
	c := tooltest.Start(t, 1, false)
	testutil.CheckBinary(t, "nsq_to_http", "--n=x", []string{"--topic=bin", "--nsqd-tcp-address=" + c.TCP(0), "--get=http://127.0.0.1:1/?m=%s"})
}
