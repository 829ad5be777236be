package main

import (
	"bytes"
	"regexp"
	"strconv"
	"testing"

	"github.com/ternmq/tern/nsqd/nsqdtest"
)

// TestMeasures runs a short measure against an in-process nsqd with two consumers: every
// message after the warm-up is measured, and the line says so. (How fast is for the
// benchmark to say, not for a test.)
func TestMeasures(t *testing.T) {
	d := nsqdtest.Start(t, nil)
	var out, errOut bytes.Buffer
	code := runMain(t.Context(), []string{
		"--nsqd-tcp-address", d.TCPAddr().String(), "--rate", "400", "--consumers", "2", "--rdy", "5",
		"--duration", "1500ms", "--warmup", "500ms",
	}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	m := regexp.MustCompile(`^rate 400/s, 2 consumers, RDY 5: p50 [0-9.]+ms p99 [0-9.]+ms p99.9 [0-9.]+ms max [0-9.]+ms \(([0-9]+) messages, delivered [0-9]+/s\)\n$`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("result line %q", out.String())
	}
	// 600 messages in all, about 400 after the warm-up (the pacing is per millisecond).
	if n, _ := strconv.Atoi(m[1]); n < 350 || n > 450 {
		t.Errorf("%d messages measured, want about 400", n)
	}
	if code := runMain(t.Context(), []string{"--rate", "0"}, &out, &errOut); code != 2 {
		t.Errorf("--rate 0: exit %d, want 2", code)
	}
}
