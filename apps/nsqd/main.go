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
	"github.com/ternmq/tern/nsqd"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, so tests can drive it: it returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, cl, err := loadOptions(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(stdout)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "nsqd: %v\nRun nsqd --help for usage.\n", err)
		return 1
	case cl.version:
		fmt.Fprintln(stdout, version.String("nsqd"))
		return 0
	}
	if err := opts.Validate(); err != nil {
		fmt.Fprintf(stderr, "nsqd: invalid options:\n%v\n", err)
		return 1
	}

	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: logLevel(opts.LogLevel)}))
	// The daemon filters its own records at a level PUT /config/log_level can change, so the
	// handler it gets lets every level through.
	daemonLogger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, name := range cl.deprecated {
		logger.Warn("deprecated flag used", "flag", "--"+name, "advice", deprecationAdvice(name))
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Once shutdown has begun, a second signal should kill the process at once rather than
	// wait for a drain the operator has given up on: stopping the notification restores the
	// default disposition.
	go func() {
		<-ctx.Done()
		stop()
	}()

	// The Go runtime and process collectors describe this process, not the daemon, so they
	// are registered here; package nsqd registers its own metrics on the same registry.
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	// Logged once the signal handler is installed: from here on SIGTERM means a clean stop.
	logger.Info("starting", "version", version.String("nsqd"), "config", cl.configPath)
	daemon, err := nsqd.New(opts, daemonLogger, reg)
	if err != nil {
		fmt.Fprintf(stderr, "nsqd: failed to start: %v\n", err)
		return 1
	}
	if err := daemon.Run(ctx); err != nil {
		logger.Error("stopped with an error", "error", err)
		return 1
	}
	return 0
}

// logLevel maps NSQ's log levels onto slog's; slog has no fatal, and only main exits.
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

// deprecationAdvice says what to use instead of a deprecated flag.
func deprecationAdvice(name string) string {
	if target := aliasOf(name); target != "" {
		return "use --" + target
	}
	return "it has no effect; use --log-level"
}
