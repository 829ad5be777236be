package cmdline

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

	"github.com/ternmq/tern/internal/logging"
	"github.com/ternmq/tern/internal/version"
)

// Daemon is what a binary runs: it serves until ctx ends, then shuts down and returns.
type Daemon interface {
	Run(ctx context.Context) error
}

// Reloader is a Daemon that re-reads files on SIGHUP (nsqd: its TLS certificates). A daemon
// that is not one keeps SIGHUP's default, as NSQ's daemons do.
type Reloader interface {
	Reload() error
}

// Binary is everything that differs between Tern's daemon binaries; Main does the rest.
type Binary[T any] struct {
	// Name is the program name, used in messages and --version.
	Name string
	// Spec describes the flags and config keys.
	Spec *Spec[T]
	// Validate checks the resolved options, reporting every problem.
	Validate func(*T) error
	// LogLevel returns the --log-level option's value.
	LogLevel func(*T) string
	// DeprecationAdvice says what to use instead of a deprecated flag.
	DeprecationAdvice func(flag string) string
	// New builds the daemon. Its logger lets every level through: daemons filter their own
	// records at --log-level (package logging). reg already holds the Go runtime and process
	// collectors; the daemon registers its own metrics on it.
	New func(opts *T, logger *slog.Logger, reg *prometheus.Registry) (Daemon, error)
}

// Main is a daemon binary's main without the exit, so tests can drive it: it resolves the
// options (defaults < --config file < flags given), runs the daemon until SIGINT or SIGTERM
// (a second signal kills the process at once) and returns the exit code: 0 after a clean
// stop or for --help and --version, 1 for bad options, a failed start or a failed run.
func (b Binary[T]) Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, res, err := b.Spec.Load(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		b.Spec.PrintUsage(stdout)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "%s: %v\nRun %s --help for usage.\n", b.Name, err, b.Name)
		return 1
	case res.Version:
		fmt.Fprintln(stdout, version.String(b.Name))
		return 0
	}
	if err := b.Validate(opts); err != nil {
		fmt.Fprintf(stderr, "%s: invalid options:\n%v\n", b.Name, err)
		return 1
	}

	level, err := logging.ParseLevel(b.LogLevel(opts))
	if err != nil {
		level = slog.LevelInfo // Validate has refused bad names; this is belt and braces
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	daemonLogger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, name := range res.Deprecated {
		logger.Warn("deprecated flag used", "flag", "--"+name, "advice", b.DeprecationAdvice(name))
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

	// The Go runtime and process collectors describe this process, not the daemon.
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	// Logged once the signal handler is installed: from here on SIGTERM means a clean stop.
	logger.Info("starting", "version", version.String(b.Name), "config", res.ConfigPath)
	daemon, err := b.New(opts, daemonLogger, reg)
	if err != nil {
		fmt.Fprintf(stderr, "%s: failed to start: %v\n", b.Name, err)
		return 1
	}
	if r, ok := daemon.(Reloader); ok {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for {
				select {
				case <-hup:
					_ = r.Reload() // the daemon logs the outcome
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	if err := daemon.Run(ctx); err != nil {
		logger.Error("stopped with an error", "error", err)
		return 1
	}
	return 0
}
