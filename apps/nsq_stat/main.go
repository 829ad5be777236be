// Command nsq_stat polls the stats of one channel across the nsqds that have its topic and
// prints NSQ's table of rates, depths and counters every --interval, as NSQ 1.3's nsq_stat
// does. All the work is in package stat; the run loop is in package toolflag.
package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"strconv"

	"github.com/ternmq/tern/internal/tools/stat"
	"github.com/ternmq/tern/internal/tools/toolflag"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, so tests can drive it: it returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return toolflag.Command[stat.Options]{
		Name:     stat.Name,
		Flags:    flags,
		Validate: (*stat.Options).Validate,
		New: func(o *stat.Options, env toolflag.Env) (toolflag.Tool, error) {
			return stat.New(o, env.Logger, env.Stdout)
		},
	}.Main(ctx, args, os.Stdin, stdout, stderr)
}

// flags defines NSQ's flags of nsq_stat, with NSQ's names and defaults.
func flags(fs *flag.FlagSet) *stat.Options {
	o := stat.NewOptions()
	fs.StringVar(&o.Topic, "topic", o.Topic, "NSQ topic")
	fs.StringVar(&o.Channel, "channel", o.Channel, "NSQ channel")
	fs.DurationVar(&o.Interval, "interval", o.Interval, "duration of time between polling/printing output")
	fs.DurationVar(&o.HTTPClientConnectTimeout, "http-client-connect-timeout", o.HTTPClientConnectTimeout, "timeout for HTTP connect")
	fs.DurationVar(&o.HTTPClientRequestTimeout, "http-client-request-timeout", o.HTTPClientRequestTimeout, "timeout for HTTP request")
	fs.Var((*count)(&o.Count), "count", "number of reports")
	toolflag.StringsVar(fs, &o.NSQDHTTPAddrs, "nsqd-http-address", "nsqd HTTP address (may be given multiple times)")
	toolflag.StringsVar(fs, &o.LookupdHTTPAddrs, "lookupd-http-address", "lookupd HTTP address (may be given multiple times)")
	return o
}

// count is --count: unset means no limit, and a value given must be positive.
type count int

func (c *count) String() string { return "N" }

func (c *count) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return errors.New("want an integer")
	}
	if n <= 0 {
		return errors.New("--count should be positive")
	}
	*c = count(n)
	return nil
}
