package main

import (
	"context"
	"io"
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
	nsqd := "--nsqd-tcp-address=" + c.TCP(0)
	withStdin := func(in string) func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
			return run(ctx, args, strings.NewReader(in), stdout, stderr)
		}
	}
	testutil.CheckRun(t, withStdin(""), []testutil.RunCase{
		{Name: "version", Args: []string{"--version"}, Stdout: version.String("to_nsq") + "\n"},
		{Name: "help", Args: []string{"--help"}, Stdout: "Usage of to_nsq:"},
		{Name: "bad flag", Args: []string{"--rate=fast"}, Code: 1, Stderr: `to_nsq: invalid value "fast" for flag -rate`},
		{Name: "no topic", Args: []string{nsqd}, Code: 1, Stderr: "--topic required"},
		{Name: "no nsqd", Args: []string{"--topic=t"}, Code: 1, Stderr: "--nsqd-tcp-address required"},
		{Name: "delimiter", Args: []string{"--topic=t", nsqd, "--delimiter=ab"}, Code: 1, Stderr: "--delimiter must be a single byte"},
		{Name: "producer option refused", Args: []string{"--topic=t", nsqd, "--producer-opt=local_addr,1.2.3.4:0"}, Code: 1, Stderr: "option local_addr is not supported"},
		{Name: "unknown producer option", Args: []string{"--topic=t", nsqd, "--producer-opt=bogus,1"}, Code: 1, Stderr: `unknown option "bogus"`},
	})
	testutil.CheckRun(t, withStdin("one|two|three"), []testutil.RunCase{
		{Name: "publishes stdin", Args: []string{"--topic=piped", nsqd, "--delimiter=|", "--producer-opt=snappy"}, Stderr: "msg=starting"},
	})
	if got := c.Read(t, 0, "piped", "check", 3); strings.Join(got, " ") != "one two three" {
		t.Errorf("published %q", got)
	}
}
