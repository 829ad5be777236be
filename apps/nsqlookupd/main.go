// Command nsqlookupd runs Tern's lookup daemon, a drop-in replacement for NSQ 1.3's
// nsqlookupd.
//
// It takes NSQ's flags and NSQ's TOML config keys (--config), resolves them with the
// precedence defaults < config file < flags given on the command line (package cmdline), and
// hands the result to package lookupd, which does all the work. The daemon runs until SIGINT
// or SIGTERM, then closes its connections and exits 0; bad flags, a bad config file or a
// failed start exit 1 with a message on stderr.
package main

import (
	"context"
	"io"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ternmq/tern/internal/cmdline"
	"github.com/ternmq/tern/lookupd"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, so tests can drive it: it returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cmdline.Binary[lookupd.Options]{
		Name:              "nsqlookupd",
		Spec:              spec(),
		Validate:          (*lookupd.Options).Validate,
		LogLevel:          func(o *lookupd.Options) string { return o.LogLevel },
		DeprecationAdvice: func(string) string { return "it has no effect; use --log-level" },
		New: func(o *lookupd.Options, logger *slog.Logger, reg *prometheus.Registry) (cmdline.Daemon, error) {
			return lookupd.New(o, logger, reg)
		},
	}.Main(ctx, args, stdout, stderr)
}
