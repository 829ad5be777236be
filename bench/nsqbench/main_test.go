package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/nsqd"
	"github.com/ternmq/tern/nsqd/nsqdtest"
)

// startNSQD runs an nsqd in-process on 127.0.0.1:0, without HTTP, with a fresh data path
// until the test ends. configure, when not nil, adjusts the options first.
func startNSQD(tb testing.TB, configure func(*nsqd.Options)) *nsqd.NSQD {
	tb.Helper()
	return nsqdtest.Start(tb, func(o *nsqd.Options) {
		o.HTTPAddress = ""
		if configure != nil {
			configure(o)
		}
	})
}

// channelStats returns the stats of one channel, failing the test if it does not exist.
func channelStats(t *testing.T, d *nsqd.NSQD, topic, channel string) nsqd.ChannelStats {
	t.Helper()
	cs, ok := d.ChannelStats(topic, channel)
	if !ok {
		t.Fatalf("no channel %s/%s", topic, channel)
	}
	return cs
}

func TestRun(t *testing.T) {
	d := startNSQD(t, nil)
	tests := []struct {
		name                       string
		count, size, batch         int
		publishers, consumers, rdy int
		topics                     int
	}{
		{name: "issue shape", count: 20_000, size: 100, batch: 200, publishers: 4, consumers: 1, rdy: 2500},
		{name: "short last batch", count: 10_007, size: 8, batch: 100, publishers: 3, consumers: 1, rdy: 50},
		{name: "two consumers", count: 5_000, size: 64, batch: 50, publishers: 2, consumers: 2, rdy: 100},
		{name: "one message", count: 1, size: 100, batch: 200, publishers: 4, consumers: 1, rdy: 1},
		{name: "three topics", count: 3_000, size: 100, batch: 100, publishers: 2, consumers: 1, rdy: 50, topics: 3},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := defaultConfig()
			cfg.NSQDTCPAddress = d.TCPAddr().String()
			cfg.Topic = "bench" + strconv.Itoa(i)
			cfg.Count, cfg.Size, cfg.Batch = tt.count, tt.size, tt.batch
			cfg.Publishers, cfg.Consumers, cfg.RDY = tt.publishers, tt.consumers, tt.rdy
			cfg.Topics = max(tt.topics, 1)
			cfg.Timeout = time.Minute

			ctx, cancel := context.WithTimeout(testutil.Context(t), cfg.Timeout)
			defer cancel()
			res, err := run(ctx, cfg, testutil.Logger(t))
			if err != nil {
				t.Fatalf("run: %v (result %+v)", err, res)
			}
			if !res.ok() || res.Lost != 0 || res.Duplicated != 0 || res.Invalid != 0 {
				t.Fatalf("lost %d, duplicated %d, invalid %d; want none (result %+v)",
					res.Lost, res.Duplicated, res.Invalid, res)
			}
			if res.Published != tt.count || res.Consumed != tt.count || res.Deliveries != tt.count {
				t.Errorf("published %d, consumed %d, deliveries %d; want %d each",
					res.Published, res.Consumed, res.Deliveries, tt.count)
			}
			if res.PublishElapsed <= 0 || res.ConsumeElapsed <= 0 {
				t.Errorf("elapsed publish %v consume %v; want both positive", res.PublishElapsed, res.ConsumeElapsed)
			}
			if res.PeakRSS != -1 {
				t.Errorf("PeakRSS = %d for an external nsqd; want -1", res.PeakRSS)
			}
			if res.Stalled || res.FinFailed != 0 {
				t.Errorf("stalled %v, fin_failed %d; want a clean run", res.Stalled, res.FinFailed)
			}
			// Every FIN the tool sent must have reached the daemon, and the load was spread.
			for i := range cfg.Topics {
				topic := cfg.topicName(i)
				testutil.Eventually(t, 10*time.Second, func() bool {
					cs := channelStats(t, d, topic, cfg.Channel)
					return cs.InFlightCount == 0 && cs.Depth == 0 && cs.FinishCount == uint64(tt.count/cfg.Topics)
				}, "channel %s drained, nothing in flight, its share finished", topic)
			}
		})
	}
}

// TestRunMain runs the command as a user does, against an in-process nsqd, and checks that
// the output is the parseable lines the tool promises.
func TestRunMain(t *testing.T) {
	d := startNSQD(t, nil)
	var stdout, stderr bytes.Buffer
	code := runMain(testutil.Context(t), []string{
		"--nsqd-tcp-address", d.TCPAddr().String(), "--count", "3000", "--topic", "main",
	}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, stderr.String())
	}
	want := []*regexp.Regexp{
		regexp.MustCompile(`^publish: 3000 msgs in \d+\.\d\ds = \d+ msgs/s \(\d+\.\d MB/s\)$`),
		regexp.MustCompile(`^consume: 3000 msgs in \d+\.\d\ds = \d+ msgs/s \(\d+\.\d MB/s\)$`),
		regexp.MustCompile(`^peak RSS: n/a$`),
		regexp.MustCompile(`^lost: 0 duplicated: 0$`),
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("stdout has %d lines, want %d:\n%s", len(lines), len(want), stdout.String())
	}
	for i, re := range want {
		if !re.MatchString(lines[i]) {
			t.Errorf("line %d = %q; want it to match %s", i+1, lines[i], re)
		}
	}
}

func TestTracker(t *testing.T) {
	body := func(seq uint64, size int) []byte {
		b := make([]byte, size)
		binary.BigEndian.PutUint64(b, seq)
		return b
	}
	tests := []struct {
		name                          string
		count                         int
		bodies                        [][]byte
		distinct, duplicated, invalid int64
		complete                      bool
	}{
		{name: "all once", count: 3, bodies: [][]byte{body(2, 10), body(0, 10), body(1, 10)}, distinct: 3, complete: true},
		{name: "missing one", count: 3, bodies: [][]byte{body(0, 10), body(2, 10)}, distinct: 2},
		{name: "duplicate", count: 2, bodies: [][]byte{body(1, 10), body(1, 10), body(0, 10)}, distinct: 2, duplicated: 1, complete: true},
		{name: "duplicate after completion", count: 1, bodies: [][]byte{body(0, 10), body(0, 10)}, distinct: 1, duplicated: 1, complete: true},
		{name: "word boundaries", count: 130, bodies: [][]byte{body(63, 10), body(64, 10), body(129, 10), body(64, 10)}, distinct: 3, duplicated: 1},
		{name: "out of range", count: 2, bodies: [][]byte{body(2, 10), body(1<<63, 10)}, invalid: 2},
		{name: "wrong size", count: 2, bodies: [][]byte{body(0, 9), body(0, 11), body(0, 10)}, distinct: 1, invalid: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker(tt.count, 1, 10)
			for _, b := range tt.bodies {
				tr.record(b, 0)
			}
			if got := tr.distinct.Load(); got != tt.distinct {
				t.Errorf("distinct = %d, want %d", got, tt.distinct)
			}
			if got := tr.duplicated.Load(); got != tt.duplicated {
				t.Errorf("duplicated = %d, want %d", got, tt.duplicated)
			}
			if got := tr.invalid.Load(); got != tt.invalid {
				t.Errorf("invalid = %d, want %d", got, tt.invalid)
			}
			select {
			case <-tr.complete:
				if !tt.complete {
					t.Error("complete closed; want open")
				}
			default:
				if tt.complete {
					t.Error("complete open; want closed")
				}
			}
		})
	}
}

// TestTrackerConcurrent records every sequence number twice from two goroutines: each must
// be counted once as new and once as a duplicate, whichever goroutine comes first.
func TestTrackerConcurrent(t *testing.T) {
	const count = 10_000
	tr := newTracker(count, 1, seqLen)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			b := make([]byte, seqLen)
			for seq := range uint64(count) {
				binary.BigEndian.PutUint64(b, seq)
				tr.record(b, 0)
			}
		})
	}
	wg.Wait()
	if d, dup := tr.distinct.Load(), tr.duplicated.Load(); d != count || dup != count {
		t.Fatalf("distinct %d duplicated %d; want %d each", d, dup, count)
	}
}

// TestMPUB checks the rewritten MPUB against the server's own parser: the batch must be
// valid and carry the sequence numbers asked for.
func TestMPUB(t *testing.T) {
	tests := []struct {
		name    string
		n, size int
		first   uint64
	}{
		{name: "one message", n: 1, size: 8, first: 0},
		{name: "batch", n: 200, size: 100, first: 1_000_000},
		{name: "large numbers", n: 3, size: 16, first: 1 << 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := newMPUB("t", tt.n, tt.size)
			if err != nil {
				t.Fatal(err)
			}
			m = m.clone()
			m.number(tt.first)
			line, payload, ok := bytes.Cut(m.wire, []byte("\n"))
			if !ok || string(line) != "MPUB t" {
				t.Fatalf("command line %q; want %q", line, "MPUB t")
			}
			msgs, err := protocol.ParseMPUB(bytes.NewReader(payload), int64(tt.size), int64(len(payload)))
			if err != nil {
				t.Fatalf("ParseMPUB: %v", err)
			}
			if len(msgs) != tt.n {
				t.Fatalf("%d messages, want %d", len(msgs), tt.n)
			}
			for i, msg := range msgs {
				if len(msg) != tt.size {
					t.Fatalf("message %d has %d bytes, want %d", i, len(msg), tt.size)
				}
				if got, want := binary.BigEndian.Uint64(msg), tt.first+uint64(i); got != want {
					t.Fatalf("message %d carries %d, want %d", i, got, want)
				}
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(config) bool
		wantErr string
	}{
		{
			name: "defaults",
			check: func(c config) bool {
				return c.NSQDTCPAddress == "" && c.NSQDBin == "bin/nsqd" && c.Topic == "bench" &&
					c.Channel == "ch" && c.Count == 1_000_000 && c.Size == 100 && c.Batch == 200 &&
					c.Publishers == 4 && c.RDY == 2500 && c.Consumers == 1 && c.Timeout == 5*time.Minute &&
					len(c.NSQDFlags) == 0
			},
		},
		{
			name: "repeated nsqd flags",
			args: []string{"--nsqd-flag=--mem-queue-size=5", "--nsqd-flag", "--sync-every=100", "--count=7"},
			check: func(c config) bool {
				return c.Count == 7 && len(c.NSQDFlags) == 2 &&
					c.NSQDFlags[0] == "--mem-queue-size=5" && c.NSQDFlags[1] == "--sync-every=100"
			},
		},
		{name: "size too small for the sequence", args: []string{"--size=7"}, wantErr: "--size 7 must be at least 8"},
		{name: "no messages", args: []string{"--count=0"}, wantErr: "--count 0"},
		{name: "bad topic", args: []string{"--topic=a b"}, wantErr: "invalid --topic"},
		{name: "tcp address is the tool's", args: []string{"--nsqd-flag=--tcp-address=:1"}, wantErr: "sets --tcp-address itself"},
		{name: "data path is the tool's", args: []string{"--nsqd-flag=-data-path=/x"}, wantErr: "sets --data-path itself"},
		{name: "nsqd flags need a started nsqd", args: []string{"--nsqd-tcp-address=127.0.0.1:1", "--nsqd-flag=--x"}, wantErr: "only to an nsqd the tool starts"},
		{name: "every problem at once", args: []string{"--batch=0", "--rdy=0"}, wantErr: "--batch 0 must be at least 1\n--rdy 0"},
		{name: "stray argument", args: []string{"extra"}, wantErr: `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseFlags(tt.args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v; want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFlags: %v", err)
			}
			if !tt.check(cfg) {
				t.Fatalf("unexpected config %+v", cfg)
			}
		})
	}
}

func TestWriteResult(t *testing.T) {
	cfg := defaultConfig()
	tests := []struct {
		name string
		res  result
		want string
	}{
		{
			name: "clean run against a started nsqd",
			res: result{Published: 1_000_000, PublishElapsed: 1520 * time.Millisecond, ConsumeRan: true,
				Consumed: 1_000_000, ConsumeElapsed: 1400 * time.Millisecond, PeakRSS: 180 << 20, DiskWritten: 120 << 20, DiskSetup: 20 << 10},
			want: "publish: 1000000 msgs in 1.52s = 657895 msgs/s (65.8 MB/s)\n" +
				"consume: 1000000 msgs in 1.40s = 714286 msgs/s (71.4 MB/s)\n" +
				"peak RSS: 180 MiB\n" +
				"disk written: 120 MiB (122880 KiB; 20 KiB before the publish, setting up)\n" +
				"lost: 0 duplicated: 0\n",
		},
		{
			name: "losses against an external nsqd",
			res: result{Published: 1_000_000, PublishElapsed: time.Second, ConsumeRan: true, Consumed: 999_990,
				ConsumeElapsed: 2 * time.Second, Lost: 10, Duplicated: 3, Redelivered: 3, PeakRSS: -1, DiskWritten: -1},
			want: "publish: 1000000 msgs in 1.00s = 1000000 msgs/s (100.0 MB/s)\n" +
				"consume: 999990 msgs in 2.00s = 499995 msgs/s (50.0 MB/s)\n" +
				"peak RSS: n/a\n" +
				"lost: 10 duplicated: 3\n" +
				"invalid: 0 redelivered: 3 fin_failed: 0\n",
		},
		{
			name: "publish failed",
			res:  result{PeakRSS: -1},
			want: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			writeResult(&b, cfg, tt.res)
			if b.String() != tt.want {
				t.Fatalf("got\n%s\nwant\n%s", b.String(), tt.want)
			}
		})
	}
}

// BenchmarkRun runs the whole load with b.N messages against an in-process nsqd, so that
// one CPU profile covers both the daemon and the tool:
//
//	go test -run '^$' -bench Run -benchtime 1000000x -cpuprofile cpu.out ./bench/nsqbench
func BenchmarkRun(b *testing.B) {
	// Errors only: a benchmark's log is always printed, and logging must not cost time.
	d := startNSQD(b, func(o *nsqd.Options) { o.LogLevel = "error" })
	cfg := defaultConfig()
	cfg.NSQDTCPAddress = d.TCPAddr().String()
	cfg.Topic = fmt.Sprintf("bench%d", b.N)
	cfg.Count = b.N
	b.ResetTimer()
	res, err := run(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	if !res.ok() {
		b.Fatalf("lost %d duplicated %d invalid %d", res.Lost, res.Duplicated, res.Invalid)
	}
	b.ReportMetric(float64(res.Published)/res.PublishElapsed.Seconds(), "pub_msgs/s")
	b.ReportMetric(float64(res.Consumed)/res.ConsumeElapsed.Seconds(), "sub_msgs/s")
}

// TestRunFanOut fans one topic out to three channels: every channel receives every message
// once, and the consume line counts every delivery.
func TestRunFanOut(t *testing.T) {
	d := startNSQD(t, nil)
	var stdout, stderr bytes.Buffer
	code := runMain(testutil.Context(t), []string{
		"--nsqd-tcp-address", d.TCPAddr().String(), "--count", "3000", "--topic", "fan", "--channels", "3",
	}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, stderr.String())
	}
	if !regexp.MustCompile(`(?m)^consume \(3 channels, every delivery\): 9000 msgs in `).MatchString(stdout.String()) ||
		!strings.Contains(stdout.String(), "lost: 0 duplicated: 0\n") {
		t.Errorf("stdout:\n%s", stdout.String())
	}
	for i := range 3 {
		if cs := channelStats(t, d, "fan", fmt.Sprintf("ch-%d", i)); cs.FinishCount != 3000 {
			t.Errorf("channel ch-%d finished %d, want 3000", i, cs.FinishCount)
		}
	}
	code = runMain(testutil.Context(t), []string{"--nsqd-tcp-address", d.TCPAddr().String(), "--channels", "2", "--topics", "2"}, &stdout, &stderr)
	if code == 0 {
		t.Error("--channels 2 --topics 2 accepted")
	}
}
