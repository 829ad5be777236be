// Command nsq_to_nsq consumes NSQ topics and publishes their messages to other nsqds,
// finishing a message only once a destination acknowledged it, as NSQ 1.3's nsq_to_nsq
// does. All the work is in package tonsq; shared flags and the run loop are in package
// toolflag.
package main

import (
	"context"
	"flag"
	"io"
	"os"

	"github.com/ternmq/tern/internal/tools/tonsq"
	"github.com/ternmq/tern/internal/tools/toolflag"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, so tests can drive it: it returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return toolflag.Command[tonsq.Options]{
		Name:     tonsq.Name,
		Flags:    flags,
		Validate: (*tonsq.Options).Validate,
		New: func(o *tonsq.Options, env toolflag.Env) (toolflag.Tool, error) {
			return tonsq.New(o, env.Logger)
		},
	}.Main(ctx, args, os.Stdin, stdout, stderr)
}

// flags defines NSQ's flags of nsq_to_nsq, with NSQ's names and defaults.
func flags(fs *flag.FlagSet) *tonsq.Options {
	o := tonsq.NewOptions()
	fs.StringVar(&o.Channel, "channel", o.Channel, "nsq channel")
	fs.StringVar(&o.DestinationTopic, "destination-topic", o.DestinationTopic, "use this destination topic for all consumed topics (default is consumed topic name)")
	fs.IntVar(&o.MaxInFlight, "max-in-flight", o.MaxInFlight, "max number of messages to allow in flight")
	fs.IntVar(&o.StatusEvery, "status-every", o.StatusEvery, "the # of requests between logging status (per destination), 0 disables")
	fs.StringVar(&o.Mode, "mode", o.Mode, "the upstream request mode options: round-robin, hostpool (default), epsilon-greedy")
	o.Source.Flags(fs)
	toolflag.StringsVar(fs, &o.DestNSQDTCPAddrs, "destination-nsqd-tcp-address", "destination nsqd TCP address (may be given multiple times)")
	toolflag.StringsVar(fs, &o.Topics, "topic", "nsq topic (may be given multiple times)")
	toolflag.StringsVar(fs, &o.WhitelistJSONFields, "whitelist-json-field", "for JSON messages: pass this field (may be given multiple times)")
	fs.StringVar(&o.RequireJSONField, "require-json-field", o.RequireJSONField, "for JSON messages: only pass messages that contain this field")
	fs.StringVar(&o.RequireJSONValue, "require-json-value", o.RequireJSONValue, "for JSON messages: only pass messages in which the required field has this value")
	toolflag.StringsVar(fs, &o.ConsumerOpts, "consumer-opt", "option to passthrough to nsq.Consumer (may be given multiple times, go-nsq's key,value names)")
	toolflag.StringsVar(fs, &o.ProducerOpts, "producer-opt", "option to passthrough to nsq.Producer (may be given multiple times, go-nsq's key,value names)")
	return o
}
