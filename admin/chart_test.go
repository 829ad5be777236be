package admin

import (
	"strings"
	"testing"
	"time"
)

func TestNiceCeil(t *testing.T) {
	for in, want := range map[float64]float64{0: 1, -3: 1, 0.3: 0.5, 1: 1, 1.1: 2, 3: 5, 7: 10, 10: 10, 101: 200, 4999: 5000} {
		if got := niceCeil(in); got != want {
			t.Errorf("niceCeil(%v) = %v, want %v", in, got, want)
		}
	}
}

func TestFormats(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{formatCount(950), "950"}, {formatCount(12500), "12.5k"}, {formatCount(3e6), "3M"}, {formatCount(2.5e9), "2.5G"},
		{formatRate(0.25), "0.25/s"}, {formatInt(1234567), "1,234,567"}, {formatInt(-1000), "-1,000"}, {formatInt(int32(12)), "12"},
		{formatPageRate(1234.4, true), "1,234/s"}, {formatPageRate(12.34, true), "12.3/s"}, {formatPageRate(0.5, true), "0.5/s"},
		{formatPageRate(5, false), "–"}, {formatNanos(1.5e9), "1.5s"}, {formatNanos(2.25e6), "2.25ms"}, {formatNanos(800), "0.8µs"},
		{formatDuration(45 * time.Second), "45s"}, {formatDuration(3*time.Hour + 5*time.Minute), "3h 5m"}, {formatDuration(50 * time.Hour), "2d 2h"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	l := &Latency{Count: 3, Percentiles: []Percentile{{Quantile: 0.99, Value: 2e6, HasValue: true}, {Quantile: 0.5, Max: 1e6}}}
	if got := formatLatency(l); got != "p99 2ms · p50 1ms" {
		t.Errorf("formatLatency = %q", got)
	}
	if got := formatLatency(&Latency{}); got != "–" {
		t.Errorf("formatLatency of nothing = %q", got)
	}
}

// TestChartGeometry: points map to the plot by time and value, the scale is round, a gap in
// the samples breaks the line, and points older than an hour are left out.
func TestChartGeometry(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	at := func(ago time.Duration) int64 { return now.Add(-ago).UnixMilli() }
	pts := []point{
		{at: at(2 * time.Hour), depth: 1000}, // outside the window
		{at: at(time.Hour), depth: 0},
		{at: at(59 * time.Minute), depth: 80},
		{at: at(30 * time.Minute), depth: 40}, // after a gap
		{at: at(0), depth: 40, pub: 2, rates: true},
	}
	c := makeChart("t", pts, now, time.Minute, depthLine, pubLine)
	if c.Empty || c.Grid[4].Label != "100" || c.Grid[0].Label != "0" {
		t.Fatalf("scale: %+v", c.Grid)
	}
	depth := c.Lines[0].Path
	if depth != "M52 146L61 38.8M322 92.4M592 92.4" {
		t.Errorf("depth path %q", depth)
	}
	if c.Lines[0].Current != "40" || c.Lines[1].Current != "2/s" || c.Lines[1].Path != "M592 143.3" {
		t.Errorf("lines %+v", c.Lines)
	}
	if empty := makeChart("t", nil, now, time.Second, depthLine); !empty.Empty || strings.Contains(empty.Lines[0].Path, "M") {
		t.Errorf("a chart without points: %+v", empty)
	}
}
