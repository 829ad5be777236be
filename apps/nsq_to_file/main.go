// Command nsq_to_file writes the messages of NSQ topics to files, one a line, with NSQ
// 1.3's nsq_to_file's file names, rotation, gzip and work directory. All the work is in
// package tofile; shared flags and the run loop are in package toolflag. SIGHUP closes the
// files, so that the next messages go to new ones.
package main

import (
	"context"
	"flag"
	"io"
	"os"

	"github.com/ternmq/tern/internal/tools/tofile"
	"github.com/ternmq/tern/internal/tools/toolflag"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, so tests can drive it: it returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return toolflag.Command[tofile.Options]{
		Name:      tofile.Name,
		Flags:     flags,
		Validate:  (*tofile.Options).Validate,
		LogLevel:  func(o *tofile.Options) string { return o.LogLevel },
		LogPrefix: func(o *tofile.Options) string { return o.LogPrefix },
		New: func(o *tofile.Options, env toolflag.Env) (toolflag.Tool, error) {
			return tofile.New(o, env.Logger)
		},
	}.Main(ctx, args, os.Stdin, stdout, stderr)
}

// flags defines NSQ's flags of nsq_to_file, with NSQ's names and defaults.
func flags(fs *flag.FlagSet) *tofile.Options {
	o := tofile.NewOptions()
	fs.StringVar(&o.LogLevel, "log-level", o.LogLevel, "set log verbosity: debug, info, warn, error, or fatal")
	fs.StringVar(&o.LogPrefix, "log-prefix", o.LogPrefix, "log message prefix")
	fs.StringVar(&o.Channel, "channel", o.Channel, "nsq channel")
	fs.IntVar(&o.MaxInFlight, "max-in-flight", o.MaxInFlight, "max number of messages to allow in flight")
	fs.StringVar(&o.OutputDir, "output-dir", o.OutputDir, "directory to write output files to")
	fs.StringVar(&o.WorkDir, "work-dir", o.WorkDir, "directory for in-progress files before moving to output-dir")
	fs.StringVar(&o.DatetimeFormat, "datetime-format", o.DatetimeFormat, "strftime compatible format for <DATETIME> in filename format")
	fs.StringVar(&o.FilenameFormat, "filename-format", o.FilenameFormat, "output filename format (<TOPIC>, <HOST>, <PID>, <DATETIME>, <REV> are replaced. <REV> is increased when file already exists)")
	fs.StringVar(&o.HostIdentifier, "host-identifier", o.HostIdentifier, "value to output in log filename in place of hostname. <SHORT_HOST> and <HOSTNAME> are valid replacement tokens")
	fs.IntVar(&o.GZIPLevel, "gzip-level", o.GZIPLevel, "gzip compression level (1-9, 1=BestSpeed, 9=BestCompression)")
	fs.BoolVar(&o.GZIP, "gzip", o.GZIP, "gzip output files.")
	fs.BoolVar(&o.SkipEmptyFiles, "skip-empty-files", o.SkipEmptyFiles, "skip writing empty files")
	fs.DurationVar(&o.TopicRefresh, "topic-refresh", o.TopicRefresh, "how frequently the topic list should be refreshed")
	fs.StringVar(&o.TopicPattern, "topic-pattern", o.TopicPattern, "only log topics matching the following pattern")
	fs.Int64Var(&o.RotateSize, "rotate-size", o.RotateSize, "rotate the file when it grows bigger than `rotate-size` bytes")
	fs.DurationVar(&o.RotateInterval, "rotate-interval", o.RotateInterval, "rotate the file every duration")
	fs.DurationVar(&o.SyncInterval, "sync-interval", o.SyncInterval, "sync file to disk every duration")
	fs.DurationVar(&o.HTTPClientConnectTimeout, "http-client-connect-timeout", o.HTTPClientConnectTimeout, "timeout for HTTP connect")
	fs.DurationVar(&o.HTTPClientRequestTimeout, "http-client-request-timeout", o.HTTPClientRequestTimeout, "timeout for HTTP request")
	o.Source.Flags(fs)
	toolflag.StringsVar(fs, &o.Topics, "topic", "nsq topic (may be given multiple times)")
	toolflag.StringsVar(fs, &o.ConsumerOpts, "consumer-opt", "option to passthrough to nsq.Consumer (may be given multiple times, go-nsq's key,value names)")
	return o
}
