// Command nsqd runs Tern's message daemon, a drop-in replacement for NSQ 1.3's nsqd.
//
// It takes NSQ's flags and NSQ's TOML config keys (--config), resolves them with the
// precedence defaults < config file < flags given on the command line (options.go), and
// hands the result to package nsqd, which does all the work. The daemon runs until SIGINT or
// SIGTERM, then drains, persists its state and exits 0; bad flags, a bad config file or a
// failed start exit 1 with a message on stderr.
package main

import (
	"context"
	"io"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ternmq/tern/internal/cmdline"
	"github.com/ternmq/tern/nsqd"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, so tests can drive it: it returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cmdline.Binary[nsqd.Options]{
		Name:              "nsqd",
		Spec:              spec(),
		Validate:          (*nsqd.Options).Validate,
		LogLevel:          func(o *nsqd.Options) string { return o.LogLevel },
		DeprecationAdvice: deprecationAdvice,
		New: func(o *nsqd.Options, logger *slog.Logger, reg *prometheus.Registry) (cmdline.Daemon, error) {
			return nsqd.New(o, logger, reg)
		},
	}.Main(ctx, args, stdout, stderr)
}

// deprecationAdvice says what to use instead of a deprecated flag.
func deprecationAdvice(name string) string {
	if target := aliasOf(name); target != "" {
		return "use --" + target
	}
	return "it has no effect; use --log-level"
}
