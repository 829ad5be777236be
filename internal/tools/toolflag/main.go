package toolflag

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
	"time"

	"github.com/ternmq/tern/internal/logging"
	"github.com/ternmq/tern/internal/version"
)

// DrainTimeout bounds a tool's graceful stop: consumers finish (and deliver) the messages
// they hold, outputs are flushed. Past it, what is still in flight is left to nsqd, which
// delivers it again after its message timeout; nothing is lost either way.
const DrainTimeout = 30 * time.Second

// Tool is a tool ready to run. Run does the tool's work until it is done (to_nsq at the end
// of its input, nsq_tail after --n messages) or ctx ends, then stops cleanly and returns;
// an error means the tool failed and the process exits 1.
type Tool interface {
	Run(ctx context.Context) error
}

// Rotator is implemented by a tool that closes its output files on SIGHUP, to open fresh
// ones (nsq_to_file); Main wires the signal to Rotate.
type Rotator interface {
	Rotate()
}

// Env is what a tool takes from its process.
type Env struct {
	// Logger is the tool's logger, writing to stderr.
	Logger *slog.Logger
	// Stdin is the process's input (to_nsq reads it).
	Stdin io.Reader
	// Stdout is where the tool's output goes (nsq_tail's messages, nsq_stat's table).
	Stdout io.Writer
}

// Command is everything that differs between the tools' command lines; Main does the rest.
// O is the tool's Options type.
type Command[O any] struct {
	// Name is the program's name, as NSQ spells it.
	Name string
	// Flags returns fresh default options with every flag of the tool defined on fs,
	// writing into them. --version is defined by Main.
	Flags func(fs *flag.FlagSet) *O
	// Validate reports every problem with the parsed options at once.
	Validate func(*O) error
	// LogLevel, when not nil, returns the --log-level option; without it the tool logs at
	// info.
	LogLevel func(*O) string
	// LogPrefix, when not nil, returns the --log-prefix option, which starts every log line,
	// as NSQ's log prefix does.
	LogPrefix func(*O) string
	// New builds the tool from valid options.
	New func(o *O, env Env) (Tool, error)
}

// Main is a tool's main without the exit, so tests can drive it. It parses args; prints the
// help for --help and the version for --version (exit 0); reports bad flags and every
// invalid option (exit 1); then runs the tool until it is done or SIGINT or SIGTERM asks it
// to stop, which it does gracefully (a second signal kills the process at once). It returns
// 0 after a clean stop and 1 if the tool failed.
func (c Command[O]) Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	showVersion := fs.Bool("version", false, "print version string")
	opts := c.Flags(fs)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintf(stdout, "Usage of %s:\n", c.Name)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "%s: %v\nRun %s --help for usage.\n", c.Name, err, c.Name)
		return 1
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "%s: unexpected argument %q\nRun %s --help for usage.\n", c.Name, fs.Arg(0), c.Name)
		return 1
	case *showVersion:
		fmt.Fprintln(stdout, version.String(c.Name))
		return 0
	}
	if err := c.Validate(opts); err != nil {
		fmt.Fprintf(stderr, "%s: invalid options:\n%v\n", c.Name, err)
		return 1
	}

	level := slog.LevelInfo
	if c.LogLevel != nil {
		if l, err := logging.ParseLevel(c.LogLevel(opts)); err == nil {
			level = l
		}
	}
	logOut := stderr
	if c.LogPrefix != nil {
		if prefix := c.LogPrefix(opts); prefix != "" {
			logOut = &prefixWriter{w: stderr, prefix: prefix}
		}
	}
	logger := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A second signal during the drain should kill the process rather than wait: stopping
	// the notification restores the default disposition.
	go func() {
		<-ctx.Done()
		stop()
	}()

	tool, err := c.New(opts, Env{Logger: logger, Stdin: stdin, Stdout: stdout})
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", c.Name, err)
		return 1
	}
	if r, ok := tool.(Rotator); ok {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for {
				select {
				case <-hup:
					r.Rotate()
				case <-ctx.Done():
					return
				}
			}
		}()
	}

	// Logged once the signal handlers are installed: from here on SIGTERM means a clean stop.
	logger.Info("starting", "version", version.String(c.Name))
	if err := tool.Run(ctx); err != nil {
		logger.Error("stopped with an error", "error", err)
		return 1
	}
	return 0
}

// UserAgent is the user agent a tool's connections report: NSQ's "<tool>/<version>" and
// Tern's client.
func UserAgent(tool string) string {
	return fmt.Sprintf("%s/%s tern-nsq/%s", tool, version.Binary, version.Tern)
}

// prefixWriter starts every write with prefix. slog's handlers write each record, one
// line, with a single Write, under their own lock: every log line gets the prefix, as
// NSQ's log.Logger prefix does.
type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	line := make([]byte, 0, len(p.prefix)+len(b))
	line = append(append(line, p.prefix...), b...)
	if _, err := p.w.Write(line); err != nil {
		return 0, err
	}
	return len(b), nil
}
