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
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ternmq/tern/internal/version"
	"github.com/ternmq/tern/lookupd"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, so tests can drive it: it returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, cl, err := spec().Load(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		spec().PrintUsage(stdout)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "nsqlookupd: %v\nRun nsqlookupd --help for usage.\n", err)
		return 1
	case cl.Version:
		fmt.Fprintln(stdout, version.String("nsqlookupd"))
		return 0
	}
	if err := opts.Validate(); err != nil {
		fmt.Fprintf(stderr, "nsqlookupd: invalid options:\n%v\n", err)
		return 1
	}

	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: logLevel(opts.LogLevel)}))
	for _, name := range cl.Deprecated {
		logger.Warn("deprecated flag used", "flag", "--"+name, "advice", "it has no effect; use --log-level")
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Once shutdown has begun, a second signal should kill the process at once rather than
	// wait for a shutdown the operator has given up on: stopping the notification restores
	// the default disposition.
	go func() {
		<-ctx.Done()
		stop()
	}()

	// The Go runtime and process collectors describe this process, not the daemon, so they
	// are registered here; package lookupd registers its own metrics on the same registry.
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	// Logged once the signal handler is installed: from here on SIGTERM means a clean stop.
	logger.Info("starting", "version", version.String("nsqlookupd"), "config", cl.ConfigPath)
	daemon, err := lookupd.New(opts, logger, reg)
	if err != nil {
		fmt.Fprintf(stderr, "nsqlookupd: failed to start: %v\n", err)
		return 1
	}
	if err := daemon.Run(ctx); err != nil {
		logger.Error("stopped with an error", "error", err)
		return 1
	}
	return 0
}

// logLevel maps NSQ's log levels onto slog's; slog has no fatal, and only main exits.
// Validate has already refused any other name.
func logLevel(name string) slog.Level {
	switch name {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error", "fatal":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}
