// Command nsqadmin runs Tern's web UI, a drop-in replacement for NSQ 1.3's nsqadmin.
//
// It takes NSQ's flags and NSQ's TOML config keys (--config), resolves them with the
// precedence defaults < config file < flags given on the command line (package cmdline), and
// hands the result to package admin, which does all the work. The daemon runs until SIGINT or
// SIGTERM, then exits 0; bad flags, a bad config file or a failed start exit 1 with a message
// on stderr.
package main

import (
	"context"
	"io"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ternmq/tern/admin"
	"github.com/ternmq/tern/internal/cmdline"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, so tests can drive it: it returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cmdline.Binary[admin.Options]{
		Name:              "nsqadmin",
		Spec:              spec(),
		Validate:          (*admin.Options).Validate,
		LogLevel:          func(o *admin.Options) string { return o.LogLevel },
		DeprecationAdvice: func(string) string { return "it has no effect; use --log-level" },
		New: func(o *admin.Options, logger *slog.Logger, reg *prometheus.Registry) (cmdline.Daemon, error) {
			return admin.New(o, logger, reg)
		},
	}.Main(ctx, args, stdout, stderr)
}
