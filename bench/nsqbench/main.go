// Command nsqbench measures an nsqd's throughput on one fixed load and checks that the load
// arrives exactly once.
//
// The load is NSQ's bench_writer and bench_reader in sequence: --publishers connections
// publish --count messages of --size bytes in synchronous MPUB batches of --batch (each
// connection waits for OK before its next batch), and once everything is acknowledged
// --consumers connections subscribe one channel, which receives the topic's backlog, and drain
// it with RDY --rdy, answering every message with FIN. Each body starts with a unique 8-byte
// sequence number; a bitmap of those numbers counts what was lost or delivered twice.
//
// With --channels N the topic is fanned out: N channels exist before the publish, each
// receives every message and is drained by its own consumers, and every delivery on every
// channel is checked. The result then counts every delivery, and says what the started
// daemon wrote to disk.
//
// The tool speaks the V2 protocol on raw TCP with the frame and command helpers of
// internal/protocol rather than through a client library, and batches its own writes, so
// that the daemon, not the tool, is what is measured.
//
// Without --nsqd-tcp-address it starts the nsqd binary --nsqd-bin itself, on a free loopback
// port with a fresh temporary data path, reports the daemon's peak resident memory (VmHWM)
// and stops it with SIGTERM at the end. The results go to stdout, one line per measure:
//
//	publish: 1000000 msgs in 1.52s = 657000 msgs/s (65.7 MB/s)
//	consume: 1000000 msgs in 1.40s = 714000 msgs/s (71.4 MB/s)
//	peak RSS: 180 MiB
//	lost: 0 duplicated: 0
//
// The exit status is 0 only when every message was published and consumed exactly once. A
// consume phase that receives nothing new for --stall-timeout ends and reports what is
// missing, rather than waiting for --timeout. --cpuprofile profiles the tool itself, to check
// that it is not the bottleneck.
//
// The parts: main.go reads the flags and prints the result; bench.go is the run itself (the
// publish phase, the consume phase and the exactly-once tracker); daemon.go starts, measures
// and stops an nsqd process.
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
	"runtime/pprof"
	"syscall"
	"time"
)

func main() {
	os.Exit(runMain(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// runMain is main without the exit: it parses args, runs the benchmark, prints the result to
// stdout and returns the process exit code.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "nsqbench: %v\n", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	if cfg.CPUProfile != "" {
		stopProfile, err := startCPUProfile(cfg.CPUProfile)
		if err != nil {
			fmt.Fprintf(stderr, "nsqbench: %v\n", err)
			return 1
		}
		defer func() {
			if err := stopProfile(); err != nil {
				fmt.Fprintf(stderr, "nsqbench: %v\n", err)
			}
		}()
	}

	res, err := run(ctx, cfg, logger)
	writeResult(stdout, cfg, res)
	if err != nil {
		fmt.Fprintf(stderr, "nsqbench: %v\n", err)
		return 1
	}
	if !res.ok() {
		fmt.Fprintln(stderr, "nsqbench: messages were lost, duplicated or corrupted")
		return 1
	}
	return 0
}

// parseFlags turns the command line into a config and checks it. Usage goes to errOut on
// --help or a bad flag.
func parseFlags(args []string, errOut io.Writer) (config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("nsqbench", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.StringVar(&cfg.NSQDTCPAddress, "nsqd-tcp-address", cfg.NSQDTCPAddress,
		"<addr>:<port> of a running nsqd; empty starts --nsqd-bin")
	fs.StringVar(&cfg.NSQDBin, "nsqd-bin", cfg.NSQDBin, "nsqd binary to start when --nsqd-tcp-address is empty")
	fs.Func("nsqd-flag", "flag passed to the started nsqd, e.g. --nsqd-flag=--mem-queue-size=100000 (repeatable)",
		func(v string) error { cfg.NSQDFlags = append(cfg.NSQDFlags, v); return nil })
	fs.StringVar(&cfg.Topic, "topic", cfg.Topic, "topic to publish to")
	fs.StringVar(&cfg.Channel, "channel", cfg.Channel, "channel to consume")
	fs.IntVar(&cfg.Topics, "topics", cfg.Topics, "spread the load over this many topics, --topic-0, --topic-1, ... (each drained by its own consumers)")
	fs.IntVar(&cfg.Channels, "channels", cfg.Channels, "fan the topic out to this many channels, --channel-0, --channel-1, ..., each receiving every message and drained by its own consumers")
	fs.IntVar(&cfg.Count, "count", cfg.Count, "number of messages")
	fs.IntVar(&cfg.Size, "size", cfg.Size, "message size in bytes (at least 8, for the sequence number)")
	fs.IntVar(&cfg.Batch, "batch", cfg.Batch, "messages per MPUB")
	fs.IntVar(&cfg.Publishers, "publishers", cfg.Publishers, "publishing connections")
	fs.IntVar(&cfg.RDY, "rdy", cfg.RDY, "RDY count of each consuming connection")
	fs.IntVar(&cfg.Consumers, "consumers", cfg.Consumers, "consuming connections, all on the one channel")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "overall time limit")
	fs.DurationVar(&cfg.StallTimeout, "stall-timeout", cfg.StallTimeout,
		"end the consume phase when no new message arrives for this long")
	fs.DurationVar(&cfg.Heartbeat, "heartbeat-interval", cfg.Heartbeat,
		"consumers' heartbeat interval; nsqd gives up a write to a consumer after one")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write the tool's own CPU profile to this file")
	fs.StringVar(&cfg.TopicSettings, "topic-settings", "",
		`Tern topic settings (JSON) applied to every topic before the load, e.g. '{"message_ttl_ms":60000}'`)
	fs.StringVar(&cfg.ChannelSettings, "channel-settings", "",
		`Tern channel settings (JSON) applied to the channel before the load, e.g. '{"max_attempts":5}'`)
	fs.StringVar(&cfg.NSQDHTTPAddress, "nsqd-http-address", "",
		"HTTP address of the nsqd at --nsqd-tcp-address, for --topic-settings and --channel-settings")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := cfg.validate(); err != nil {
		return config{}, err
	}
	return cfg, nil
}

// writeResult prints the measured phases, one stable line each; a phase that did not run is
// left out.
func writeResult(w io.Writer, cfg config, res result) {
	if res.PublishElapsed > 0 {
		fmt.Fprintf(w, "publish: %s\n", rateLine(res.Published, cfg.Size, res.PublishElapsed))
		if cfg.Topics > 1 && res.PublishPeakRSS >= 0 {
			fmt.Fprintf(w, "peak RSS publishing to %d topics: %d MiB\n", cfg.Topics, (res.PublishPeakRSS+1<<19)>>20)
		}
	}
	if res.ConsumeElapsed > 0 {
		what := "consume"
		if cfg.Channels > 1 {
			what = fmt.Sprintf("consume (%d channels, every delivery)", cfg.Channels)
		}
		fmt.Fprintf(w, "%s: %s\n", what, rateLine(res.Consumed, cfg.Size, res.ConsumeElapsed))
	}
	if !res.ConsumeRan {
		return
	}
	if res.PeakRSS < 0 {
		fmt.Fprintln(w, "peak RSS: n/a")
	} else {
		fmt.Fprintf(w, "peak RSS: %d MiB\n", (res.PeakRSS+1<<19)>>20)
	}
	if res.DiskWritten >= 0 {
		fmt.Fprintf(w, "disk written: %d MiB (%d KiB; %d KiB before the publish, setting up)\n",
			(res.DiskWritten+1<<19)>>20, res.DiskWritten>>10, res.DiskSetup>>10)
	}
	fmt.Fprintf(w, "lost: %d duplicated: %d\n", res.Lost, res.Duplicated)
	// Corruption, redelivery and failed FINs are rare enough that a line for them would be
	// noise; they are printed only when they happened.
	if res.Invalid > 0 || res.Redelivered > 0 || res.FinFailed > 0 {
		fmt.Fprintf(w, "invalid: %d redelivered: %d fin_failed: %d\n", res.Invalid, res.Redelivered, res.FinFailed)
	}
}

// startCPUProfile profiles the tool itself, to show that it is not the bottleneck; the
// returned function stops the profile and closes the file.
func startCPUProfile(path string) (func() error, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start CPU profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("write CPU profile: %w", err)
		}
		return nil
	}, nil
}

// rateLine formats "N msgs in 1.52s = R msgs/s (M MB/s)"; MB are 10^6 bytes of message body.
func rateLine(n, size int, elapsed time.Duration) string {
	secs := elapsed.Seconds()
	rate := float64(n) / secs
	return fmt.Sprintf("%d msgs in %.2fs = %.0f msgs/s (%.1f MB/s)", n, secs, rate, rate*float64(size)/1e6)
}
