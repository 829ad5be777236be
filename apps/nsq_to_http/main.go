// Command nsq_to_http consumes an NSQ topic and makes an HTTP GET or POST per message to
// one or more endpoints, finishing a message only once its request succeeded, as NSQ 1.3's
// nsq_to_http does. All the work is in package tohttp; shared flags and the run loop are in
// package toolflag.
package main

import (
	"context"
	"flag"
	"io"
	"os"

	"github.com/ternmq/tern/internal/tools/tohttp"
	"github.com/ternmq/tern/internal/tools/toolflag"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, so tests can drive it: it returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return toolflag.Command[tohttp.Options]{
		Name:     tohttp.Name,
		Flags:    flags,
		Validate: (*tohttp.Options).Validate,
		New: func(o *tohttp.Options, env toolflag.Env) (toolflag.Tool, error) {
			return tohttp.New(o, env.Logger)
		},
	}.Main(ctx, args, os.Stdin, stdout, stderr)
}

// flags defines NSQ's flags of nsq_to_http, with NSQ's names and defaults.
func flags(fs *flag.FlagSet) *tohttp.Options {
	o := tohttp.NewOptions()
	fs.StringVar(&o.Topic, "topic", o.Topic, "nsq topic")
	fs.StringVar(&o.Channel, "channel", o.Channel, "nsq channel")
	fs.IntVar(&o.MaxInFlight, "max-in-flight", o.MaxInFlight, "max number of messages to allow in flight")
	fs.IntVar(&o.NumPublishers, "n", o.NumPublishers, "number of concurrent publishers")
	fs.StringVar(&o.Mode, "mode", o.Mode, "the upstream request mode options: round-robin, hostpool (default), epsilon-greedy, multicast (every endpoint)")
	fs.Float64Var(&o.Sample, "sample", o.Sample, "% of messages to publish (float b/w 0 -> 1)")
	fs.DurationVar(&o.HTTPClientConnectTimeout, "http-client-connect-timeout", o.HTTPClientConnectTimeout, "timeout for HTTP connect")
	fs.DurationVar(&o.HTTPClientRequestTimeout, "http-client-request-timeout", o.HTTPClientRequestTimeout, "timeout for HTTP request")
	fs.IntVar(&o.StatusEvery, "status-every", o.StatusEvery, "the # of requests between logging status (per handler), 0 disables")
	fs.StringVar(&o.ContentType, "content-type", o.ContentType, "the Content-Type used for POST requests")
	toolflag.StringsVar(fs, &o.Post, "post", "HTTP address to make a POST request to.  data will be in the body (may be given multiple times)")
	toolflag.StringsVar(fs, &o.Headers, "header", "Custom header for HTTP requests, 'Key: value' (may be given multiple times)")
	toolflag.StringsVar(fs, &o.Get, "get", "HTTP address to make a GET request to. '%s' will be printf replaced with data (may be given multiple times)")
	o.Source.Flags(fs)
	toolflag.StringsVar(fs, &o.ConsumerOpts, "consumer-opt", "option to passthrough to nsq.Consumer (may be given multiple times, go-nsq's key,value names)")
	return o
}
