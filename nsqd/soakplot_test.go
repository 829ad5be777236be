package nsqd

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ternmq/tern/internal/faultcheck"
)

// soakPlot draws a soak run as an SVG of three panels sharing the time axis: deliveries and
// acknowledged publishes a second, p50 and p99 latency a second, and the daemon's RSS, with
// a red line at every kill.
func soakPlot(r faultcheck.Report, kills []time.Duration) []byte {
	const (
		width, panelH, left, right, top, gap = 900, 160, 70, 20, 30, 50
	)
	n := max(len(r.Windows), 1)
	x := func(sec float64) float64 { return left + sec/float64(n)*(width-left-right) }
	type series struct {
		name   string
		color  string
		values []float64
	}
	var acked, deliv, p50, p99, rss []float64
	for _, w := range r.Windows {
		acked = append(acked, float64(w.Acked))
		deliv = append(deliv, float64(w.Delivered))
		lat := slices.Sorted(slices.Values(w.Latencies))
		p50 = append(p50, faultcheck.Quantile(lat, 0.5))
		p99 = append(p99, faultcheck.Quantile(lat, 0.99))
		if w.RSS == 0 && len(rss) > 0 { // no sample that second: the daemon was restarting
			rss = append(rss, rss[len(rss)-1])
		} else {
			rss = append(rss, float64(w.RSS)/(1<<20))
		}
	}
	panels := []struct {
		title  string
		unit   string
		series []series
	}{
		{"throughput", "msgs/s", []series{{"acknowledged", "#1f77b4", acked}, {"delivered", "#2ca02c", deliv}}},
		{"publish-to-delivery latency", "ms", []series{{"p50", "#9467bd", p50}, {"p99", "#ff7f0e", p99}}},
		{"nsqd RSS", "MiB", []series{{"RSS", "#8c564b", rss}}},
	}
	height := top + len(panels)*(panelH+gap)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="14">Soak: %d s, %d kills (red), %d acknowledged, %d lost, %d duplicates</text>`+"\n",
		left, len(r.Windows), len(kills), r.Acked, r.LostCount, r.Duplicates)
	for i, p := range panels {
		y0 := float64(top + i*(panelH+gap) + 20)
		y1 := y0 + panelH
		hi := 0.0
		for _, s := range p.series {
			for _, v := range s.values {
				hi = max(hi, v)
			}
		}
		hi = max(hi*1.1, 1)
		y := func(v float64) float64 { return y1 - v/hi*panelH }
		fmt.Fprintf(&b, `<text x="%d" y="%.0f" font-size="13">%s (%s)</text>`+"\n", left, y0-6, p.title, p.unit)
		fmt.Fprintf(&b, `<rect x="%d" y="%.0f" width="%d" height="%d" fill="none" stroke="#999"/>`+"\n", left, y0, width-left-right, panelH)
		for _, f := range []float64{0, 0.5, 1} {
			v := hi / 1.1 * f
			fmt.Fprintf(&b, `<text x="%d" y="%.0f" text-anchor="end">%.4g</text>`+"\n", left-6, y(v)+4, v)
		}
		for _, k := range kills {
			kx := x(k.Seconds())
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="red" stroke-dasharray="3,3"/>`+"\n", kx, y0, kx, y1)
		}
		for j, s := range p.series {
			var pts []string
			for sec, v := range s.values {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(float64(sec)+0.5), y(v)))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", s.color, strings.Join(pts, " "))
			fmt.Fprintf(&b, `<text x="%d" y="%.0f" fill="%s" text-anchor="end">%s</text>`+"\n", width-right-4-j*110, y0-6, s.color, s.name)
		}
		if i == len(panels)-1 {
			for sec := 0; sec <= n; sec += max(1, n/10) {
				fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%ds</text>`+"\n", x(float64(sec)), y1+16, sec)
			}
		}
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}
