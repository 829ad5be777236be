// Command nsq_tail consumes topics and writes their messages to standard output, one a
// line, as NSQ 1.3's nsq_tail does. All the work is in package tail; shared flags and the
// run loop are in package toolflag.
package main

import (
	"context"
	"flag"
	"io"
	"os"

	"github.com/ternmq/tern/internal/tools/tail"
	"github.com/ternmq/tern/internal/tools/toolflag"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, so tests can drive it: it returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return toolflag.Command[tail.Options]{
		Name:     tail.Name,
		Flags:    flags,
		Validate: (*tail.Options).Validate,
		New: func(o *tail.Options, env toolflag.Env) (toolflag.Tool, error) {
			return tail.New(o, env.Logger, env.Stdout)
		},
	}.Main(ctx, args, os.Stdin, stdout, stderr)
}

// flags defines NSQ's flags of nsq_tail, with NSQ's names and defaults.
func flags(fs *flag.FlagSet) *tail.Options {
	o := tail.NewOptions()
	fs.StringVar(&o.Channel, "channel", o.Channel, "NSQ channel")
	fs.IntVar(&o.MaxInFlight, "max-in-flight", o.MaxInFlight, "max number of messages to allow in flight")
	fs.IntVar(&o.N, "n", o.N, "total messages to show (will wait if starved)")
	fs.BoolVar(&o.PrintTopic, "print-topic", o.PrintTopic, "print topic name where message was received")
	o.Source.Flags(fs)
	toolflag.StringsVar(fs, &o.Topics, "topic", "NSQ topic (may be given multiple times)")
	toolflag.StringsVar(fs, &o.ConsumerOpts, "consumer-opt", "option to passthrough to nsq.Consumer (may be given multiple times, go-nsq's key,value names)")
	return o
}
