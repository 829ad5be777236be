// Command nsqscale measures an nsqd at scale: many connections, many topics, and a consumer
// that stops while publishing goes on. It starts the nsqd binary --nsqd-bin itself (Tern's or
// NSQ's: it speaks only the V2 protocol and NSQ's HTTP API), on free loopback ports with a
// fresh temporary data path, and reads the daemon's memory (/proc/<pid>/status) and CPU time
// (/proc/<pid>/stat). --profile-dir saves the daemon's CPU and heap profiles from
// /debug/pprof, which both Tern's nsqd and NSQ's serve, at the moments that matter.
//
// --test picks the parts, run one after the other, each on a daemon of its own:
//
//   - connections: --conns TCP clients with heartbeats on, half publishing (one PUB every
//     --pub-interval each, across --conn-topics topics), half consuming (RDY 1, FIN each).
//     It reports the daemon's RSS before, with every client connected but idle (identified
//     and subscribed, no messages) and busy, and after they left; the memory per idle
//     connection; and, while every client is connected and busy, the latency of GET /ping
//     and of a separate publisher's PUB round trip (--samples each).
//   - topics: --topics topics with two channels and one message each; then SIGTERM, a
//     restart on the same data path, and the start-up time (until /ping answers, until /stats
//     lists every topic and channel), the RSS, the open files and the response times of
//     /stats?format=json and /metrics (the median of --repeat; /metrics is skipped when it
//     answers 404, as NSQ's does), with the daemon's CPU time per request beside it.
//   - slow: one topic with two channels, each drained by one consumer, while one connection
//     publishes --rate messages a second; after --before one consumer stalls for --stall
//     (--stall-mode: stops FINning, sends RDY 0, or disconnects), then resumes. It reports
//     the RSS over the stall, the healthy channel's delivery rate and latency before and
//     during it, the stalled channel's backlog, the time to catch up, and checks at the end
//     that both channels received every message.
//
// The results are a table on stdout, one row per measure; progress goes to stderr. The
// process raises its own RLIMIT_NOFILE to the hard limit first, and the daemon inherits it:
// --conns connections need that many descriptors on each side.
//
// The parts: main.go reads the flags and prints the table; daemon.go starts, restarts,
// measures and stops the nsqd; client.go is a raw V2 connection; connections.go, topics.go
// and slow.go are the three parts.
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
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	os.Exit(runMain(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// parts are the --test values, in the order "all" runs them.
var parts = []string{"connections", "topics", "slow"}

// config is the command line.
type config struct {
	Tests     []string
	NSQDBin   string
	NSQDFlags []string
	// ProfileDir, when set, receives the daemon's profiles from /debug/pprof.
	ProfileDir string

	// connections
	Conns       int
	ConnTopics  int
	PubInterval time.Duration
	Heartbeat   time.Duration
	Samples     int
	Settle      time.Duration
	SourceIPs   int

	// topics
	Topics int
	Repeat int

	// slow
	Rate      int
	Size      int
	RDY       int
	Before    time.Duration
	Stall     time.Duration
	StallMode string
	CatchUp   time.Duration
}

func defaultConfig() config {
	return config{
		Tests:       parts,
		NSQDBin:     "bin/nsqd",
		Conns:       10_000,
		ConnTopics:  100,
		PubInterval: 5 * time.Second,
		Heartbeat:   30 * time.Second,
		Samples:     1000,
		Settle:      3 * time.Second,
		Topics:      10_000,
		Repeat:      5,
		Rate:        2000,
		Size:        1024,
		RDY:         100,
		Before:      20 * time.Second,
		Stall:       60 * time.Second,
		StallMode:   stallNoFin,
		CatchUp:     5 * time.Minute,
	}
}

// validate reports every bad value at once.
func (c config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, t := range c.Tests {
		if !slices.Contains(parts, t) {
			bad("--test %q: want connections, topics, slow or all", t)
		}
	}
	if c.Conns < 2 {
		bad("--conns must be at least 2, got %d", c.Conns)
	}
	if c.ConnTopics < 1 || c.Topics < 1 {
		bad("--conn-topics and --topics must be positive")
	}
	if c.PubInterval <= 0 || c.Heartbeat < time.Second || c.Settle < 0 {
		bad("--pub-interval must be positive, --heartbeat-interval at least 1s, --settle not negative")
	}
	if c.Samples < 1 || c.Repeat < 1 {
		bad("--samples and --repeat must be positive")
	}
	if c.SourceIPs < 0 || c.SourceIPs > 254 {
		bad("--source-ips must be in [0,254], got %d", c.SourceIPs)
	}
	if c.Rate < 1 || c.Size < 16 || c.RDY < 1 {
		bad("--rate and --rdy must be positive and --size at least 16 (a sequence number and a send time)")
	}
	if c.Before <= 0 || c.Stall <= 0 || c.CatchUp <= 0 {
		bad("--before, --stall and --catch-up must be positive")
	}
	if !slices.Contains(stallModes, c.StallMode) {
		bad("--stall-mode %q: want one of %s", c.StallMode, strings.Join(stallModes, ", "))
	}
	return errors.Join(errs...)
}

// parseFlags turns the command line into a config and checks it. Usage goes to errOut on
// --help or a bad flag.
func parseFlags(args []string, errOut io.Writer) (config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("nsqscale", flag.ContinueOnError)
	fs.SetOutput(errOut)
	test := fs.String("test", "all", "parts to run, comma separated: connections, topics, slow or all")
	fs.StringVar(&cfg.NSQDBin, "nsqd-bin", cfg.NSQDBin, "nsqd binary to start (Tern's, or NSQ's e.g. .cache/nsq-v1.3.0/nsqd)")
	fs.StringVar(&cfg.ProfileDir, "profile-dir", "", "save the daemon's /debug/pprof profiles here: heap with the clients idle, CPU while they are busy, CPU of the /stats and /metrics requests, heap at the end of the stall")
	fs.Func("nsqd-flag", "flag passed to the started nsqd, e.g. --nsqd-flag=--mem-queue-size=1000 (repeatable)",
		func(v string) error { cfg.NSQDFlags = append(cfg.NSQDFlags, v); return nil })

	fs.IntVar(&cfg.Conns, "conns", cfg.Conns, "connections: clients, half publishing and half consuming")
	fs.IntVar(&cfg.ConnTopics, "conn-topics", cfg.ConnTopics, "connections: topics the clients publish to and consume from")
	fs.DurationVar(&cfg.PubInterval, "pub-interval", cfg.PubInterval, "connections: time between two PUBs of one publishing client")
	fs.DurationVar(&cfg.Heartbeat, "heartbeat-interval", cfg.Heartbeat, "connections: heartbeat_interval every client asks for in IDENTIFY")
	fs.IntVar(&cfg.Samples, "samples", cfg.Samples, "connections: /ping and PUB latency samples, one every 10ms each")
	fs.DurationVar(&cfg.Settle, "settle", cfg.Settle, "wait this long before reading the RSS of a quiet daemon")
	fs.IntVar(&cfg.SourceIPs, "source-ips", cfg.SourceIPs, "connections: dial from 127.0.0.1..127.0.0.N, for more ephemeral ports; 0 picks one per 20,000 connections")

	fs.IntVar(&cfg.Topics, "topics", cfg.Topics, "topics: topics to create, each with two channels and one message")
	fs.IntVar(&cfg.Repeat, "repeat", cfg.Repeat, "topics: /stats and /metrics requests, of which the median is reported")

	fs.IntVar(&cfg.Rate, "rate", cfg.Rate, "slow: messages published per second")
	fs.IntVar(&cfg.Size, "size", cfg.Size, "slow: message size in bytes")
	fs.IntVar(&cfg.RDY, "rdy", cfg.RDY, "slow: RDY of each consumer")
	fs.DurationVar(&cfg.Before, "before", cfg.Before, "slow: time both consumers drain before the stall")
	fs.DurationVar(&cfg.Stall, "stall", cfg.Stall, "slow: how long one consumer stalls")
	fs.StringVar(&cfg.StallMode, "stall-mode", cfg.StallMode, "slow: how the consumer stalls: "+strings.Join(stallModes, ", "))
	fs.DurationVar(&cfg.CatchUp, "catch-up", cfg.CatchUp, "slow: longest wait for the stalled consumer to catch up")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *test != "all" {
		cfg.Tests = strings.Split(*test, ",")
	}
	if cfg.SourceIPs == 0 {
		cfg.SourceIPs = (cfg.Conns + 19_999) / 20_000
	}
	if err := cfg.validate(); err != nil {
		return config{}, err
	}
	return cfg, nil
}

// runMain is main without the exit: it parses args, runs the parts, prints the table to
// stdout and returns the process exit code.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "nsqscale: %v\n", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	limit, err := raiseFileLimit()
	if err != nil {
		fmt.Fprintf(stderr, "nsqscale: %v\n", err)
		return 1
	}
	if slices.Contains(cfg.Tests, "connections") && uint64(cfg.Conns)+256 > limit {
		fmt.Fprintf(stderr, "nsqscale: --conns %d needs more file descriptors than RLIMIT_NOFILE allows (%d)\n", cfg.Conns, limit)
		return 1
	}
	if cfg.ProfileDir != "" {
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			fmt.Fprintf(stderr, "nsqscale: %v\n", err)
			return 1
		}
	}

	rep := &report{}
	code := 0
	for _, part := range cfg.Tests {
		var err error
		switch part {
		case "connections":
			err = runConnections(ctx, cfg, logger, rep.section("connections"))
		case "topics":
			err = runTopics(ctx, cfg, logger, rep.section("topics"))
		case "slow":
			err = runSlow(ctx, cfg, logger, rep.section("slow"))
		}
		if err != nil {
			fmt.Fprintf(stderr, "nsqscale: %s: %v\n", part, err)
			code = 1
		}
		if ctx.Err() != nil {
			break
		}
	}
	rep.write(stdout, cfg.NSQDBin)
	return code
}

// raiseFileLimit sets RLIMIT_NOFILE's soft limit to the hard one and returns it. Go raises
// its own soft limit at start-up but gives children the original one; setting it explicitly
// makes the started nsqd inherit it.
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read RLIMIT_NOFILE: %w", err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", lim.Max, err)
	}
	return lim.Cur, nil
}

// report is the results table: sections of rows, each a measure and its value.
type report struct {
	sections []*section
}

// section is the rows of one part.
type section struct {
	name string
	rows [][2]string
}

func (r *report) section(name string) *section {
	s := &section{name: name}
	r.sections = append(r.sections, s)
	return s
}

// add appends a row; the value is formatted with fmt.Sprintf.
func (s *section) add(measure, format string, args ...any) {
	s.rows = append(s.rows, [2]string{measure, fmt.Sprintf(format, args...)})
}

// write prints the table, a blank line between sections; a section that measured nothing is
// left out.
func (r *report) write(w io.Writer, bin string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "nsqd: %s\n", bin)
	for _, s := range r.sections {
		if len(s.rows) == 0 {
			continue
		}
		fmt.Fprintln(tw)
		for _, row := range s.rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", s.name, row[0], row[1])
		}
	}
	_ = tw.Flush()
}

// mib formats bytes as MiB with one decimal.
func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// ms formats a duration in milliseconds with two decimals.
func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// percentile returns the p-quantile (0 < p < 1) of sorted durations, or 0 for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(int(p*float64(len(sorted))), len(sorted)-1)]
}

// latencies formats the p50 and p99 of durations, which it sorts.
func latencies(d []time.Duration) string {
	if len(d) == 0 {
		return "no samples"
	}
	slices.Sort(d)
	return fmt.Sprintf("p50 %s  p99 %s  max %s  (%d samples)", ms(percentile(d, 0.5)), ms(percentile(d, 0.99)), ms(d[len(d)-1]), len(d))
}

// median returns the median of durations, which it sorts.
func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return percentile(d, 0.5)
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
