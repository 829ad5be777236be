package main

import (
	"net/http"
	"strings"
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
	for _, u := range []string{"/topic/create?topic=t", "/channel/create?topic=t&channel=c"} {
		resp, err := http.Post("http://"+c.HTTP(0)+u, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	node := "--nsqd-http-address=" + c.HTTP(0)
	testutil.CheckRun(t, run, []testutil.RunCase{
		{Name: "version", Args: []string{"--version"}, Stdout: version.String("nsq_stat") + "\n"},
		{Name: "help", Args: []string{"--help"}, Stdout: "Usage of nsq_stat:"},
		{Name: "count zero", Args: []string{"--count=0"}, Code: 1, Stderr: "--count should be positive"},
		{Name: "count not a number", Args: []string{"--count=x"}, Code: 1, Stderr: `invalid value "x" for flag -count: want an integer`},
		{Name: "required", Args: []string{node}, Code: 1, Stderr: "--topic and --channel are required"},
		{Name: "interval", Args: []string{node, "--topic=t", "--channel=c", "--interval=0s"}, Code: 1, Stderr: "--interval should be positive"},
		{Name: "two reports", Args: []string{node, "--topic=t", "--channel=c", "--interval=10ms", "--count=2"}, Stdout: "------rate------+"},
		{Name: "missing channel", Args: []string{node, "--topic=t", "--channel=nope", "--count=1"}, Code: 1, Stderr: "failed to find channel(nope)"},
	})
	var out strings.Builder
	if code := run(testutil.Context(t), []string{node, "--topic=t", "--channel=c", "--interval=10ms", "--count=3"}, &out, &strings.Builder{}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if n := strings.Count(out.String(), "\n"); n != 2+3 {
		t.Errorf("--count=3 printed %d lines:\n%s", n, out.String())
	}
}

func TestBinary(t *testing.T) {
	c := tooltest.Start(t, 1, false)
	for _, u := range []string{"/topic/create?topic=t", "/channel/create?topic=t&channel=c"} {
		resp, err := http.Post("http://"+c.HTTP(0)+u, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	testutil.CheckBinary(t, "nsq_stat", "--interval=often", []string{"--nsqd-http-address=" + c.HTTP(0), "--topic=t", "--channel=c"})
}
