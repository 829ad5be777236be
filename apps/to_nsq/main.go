// Command to_nsq publishes the lines of its standard input (or records split by
// --delimiter) to an NSQ topic on one or more nsqds, as NSQ 1.3's to_nsq does. All the work
// is in package publish; shared flags and the run loop are in package toolflag.
package main

import (
	"context"
	"flag"
	"io"
	"os"

	"github.com/ternmq/tern/internal/tools/publish"
	"github.com/ternmq/tern/internal/tools/toolflag"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is main without the exit, so tests can drive it: it returns the process exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return toolflag.Command[publish.Options]{
		Name:     publish.Name,
		Flags:    flags,
		Validate: (*publish.Options).Validate,
		New: func(o *publish.Options, env toolflag.Env) (toolflag.Tool, error) {
			return publish.New(o, env.Logger, env.Stdin)
		},
	}.Main(ctx, args, stdin, stdout, stderr)
}

// flags defines NSQ's flags of to_nsq, with NSQ's names and defaults.
func flags(fs *flag.FlagSet) *publish.Options {
	o := publish.NewOptions()
	fs.StringVar(&o.Topic, "topic", o.Topic, "NSQ topic to publish to")
	fs.StringVar(&o.Delimiter, "delimiter", o.Delimiter, "character to split input from stdin")
	toolflag.StringsVar(fs, &o.NSQDTCPAddrs, "nsqd-tcp-address", "destination nsqd TCP address (may be given multiple times)")
	toolflag.StringsVar(fs, &o.ProducerOpts, "producer-opt", "option to passthrough to nsq.Producer (may be given multiple times, go-nsq's key,value names)")
	fs.Int64Var(&o.Rate, "rate", o.Rate, "Throttle messages to n/second. 0 to disable")
	return o
}
