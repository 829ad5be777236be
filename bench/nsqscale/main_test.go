package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
		check   func(t *testing.T, cfg config)
	}{
		{name: "defaults", check: func(t *testing.T, cfg config) {
			if !slices.Equal(cfg.Tests, parts) || cfg.Conns != 10_000 || cfg.Topics != 10_000 || cfg.Stall != time.Minute {
				t.Errorf("defaults %+v", cfg)
			}
			if cfg.SourceIPs != 1 {
				t.Errorf("source IPs %d for 10,000 connections, want 1", cfg.SourceIPs)
			}
		}},
		{name: "two parts", args: []string{"--test", "topics,slow"}, check: func(t *testing.T, cfg config) {
			if !slices.Equal(cfg.Tests, []string{"topics", "slow"}) {
				t.Errorf("tests %q", cfg.Tests)
			}
		}},
		{name: "source IPs follow the connections", args: []string{"--conns", "50000"}, check: func(t *testing.T, cfg config) {
			if cfg.SourceIPs != 3 {
				t.Errorf("source IPs %d for 50,000 connections, want 3", cfg.SourceIPs)
			}
		}},
		{name: "unknown part", args: []string{"--test", "conections"}, wantErr: `--test "conections"`},
		{name: "unknown stall mode", args: []string{"--stall-mode", "sleep"}, wantErr: `--stall-mode "sleep"`},
		{name: "every problem at once", args: []string{"--conns", "1", "--size", "8"}, wantErr: "--conns must be at least 2"},
		{name: "argument", args: []string{"extra"}, wantErr: `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var errOut bytes.Buffer
			cfg, err := parseFlags(tt.args, &errOut)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, cfg)
		})
	}
}

func TestTracker(t *testing.T) {
	var tr tracker
	for _, seq := range []uint64{0, 1, 2, 64, 65, 2, 130} {
		tr.record(seq, time.Millisecond)
	}
	if u, d := tr.counts(); u != 6 || d != 7 {
		t.Errorf("counts %d unique, %d deliveries; want 6, 7", u, d)
	}
	for _, tt := range []struct{ n, missing uint64 }{
		{0, 0}, {3, 0}, {4, 1}, {64, 61}, {66, 61}, {131, 125}, {200, 194},
	} {
		if got := tr.missingBelow(tt.n); got != tt.missing {
			t.Errorf("missingBelow(%d) = %d, want %d", tt.n, got, tt.missing)
		}
	}
	if lat := tr.takeLatencies(); len(lat) != 6 {
		t.Errorf("%d latencies, want one per unique message (6)", len(lat))
	}
	if lat := tr.takeLatencies(); len(lat) != 0 {
		t.Errorf("%d latencies after taking them, want 0", len(lat))
	}
}

func TestParseStatCPU(t *testing.T) {
	// utime 150 and stime 50 ticks; the command name holds a space and a parenthesis.
	stat := "4242 (nsqd (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 150 50 0 0 20 0 9 0 100 1000 200"
	if got, err := parseStatCPU(stat); err != nil || got != 2*time.Second {
		t.Errorf("parseStatCPU = %v, %v; want 2s", got, err)
	}
	if _, err := parseStatCPU("4242 (nsqd) S 1"); err == nil {
		t.Error("a short stat parsed")
	}
}

// TestRun builds Tern's nsqd and runs every part at a tiny size, with each way of stalling:
// what it checks is that the tool measures and reports, and that every message arrives.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts nsqd")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build nsqd with")
	}
	bin := filepath.Join(t.TempDir(), "nsqd")
	if out, err := exec.Command(goBin, "build", "-o", bin, "github.com/ternmq/tern/apps/nsqd").CombinedOutput(); err != nil {
		t.Fatalf("build nsqd: %v\n%s", err, out)
	}
	small := []string{"--nsqd-bin", bin, "--settle", "0s",
		"--conns", "20", "--conn-topics", "3", "--pub-interval", "200ms", "--samples", "20",
		"--topics", "20", "--repeat", "1",
		"--rate", "200", "--size", "64", "--rdy", "10", "--before", "2s", "--stall", "2s", "--catch-up", "30s"}
	for _, tt := range []struct {
		mode string
		test string
		want []string
	}{
		{mode: stallNoFin, test: "all", want: []string{
			`connections  memory per idle client +[0-9.]+ KiB`,
			`connections  GET /ping while busy +p50 [0-9.]+ ms  p99 [0-9.]+ ms  max [0-9.]+ ms  \(20 samples\)`,
			`connections  messages +([0-9]+) published, ([0-9]+) delivered; 10 consumers subscribed per /stats; 0 clients dropped, 0 error frames`,
			`topics +restart: exec to /stats listing every topic and channel +[0-9.]+ s`,
			`topics +after the restart: GET /metrics +[0-9.]+ ms, daemon CPU [0-9.]+ ms \(medians of 1\)`,
			`slow +fast channel during the stall +[0-9]+ msgs/s`,
			`slow +catch-up +[0-9.]+ s for the [0-9]+ messages behind`,
			`slow +delivered +([0-9]+) published; fast: all ([0-9]+)`,
		}},
		{mode: stallRDY0, test: "slow", want: []string{`slow +delivered +[0-9]+ published`}},
		{mode: stallDisconnect, test: "slow", want: []string{`slow +delivered +[0-9]+ published`}},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := append(slices.Clone(small), "--test", tt.test, "--stall-mode", tt.mode)
			if code := runMain(t.Context(), args, &out, &errOut); code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
			}
			for _, w := range tt.want {
				m := regexp.MustCompile(`(?m)^` + w).FindStringSubmatch(out.String())
				if m == nil {
					t.Errorf("no line matching %q in:\n%s", w, out.String())
					continue
				}
				if len(m) == 3 && m[1] != m[2] {
					t.Errorf("line %q: %s and %s differ", m[0], m[1], m[2])
				}
			}
		})
	}
}
