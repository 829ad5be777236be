package admin

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// Charts are drawn by the server as inline SVG: the page is complete without JavaScript, and
// the live refresh replaces a chart like any other part of the page. The geometry below is in
// the SVG's own coordinates (its viewBox); CSS scales the whole chart to the page.
const (
	chartWidth  = 600
	chartHeight = 170
	plotLeft    = 52.0
	plotRight   = 592.0
	plotTop     = 12.0
	plotBottom  = 146.0
)

// chart is what templates/chart.html draws.
type chart struct {
	Title  string
	Width  int
	Height int
	Lines  []chartLine
	Grid   []chartMark // horizontal lines with their values
	Ticks  []chartMark // time labels along the bottom
	// Empty is true before the first sample: the chart says so instead of drawing nothing.
	Empty bool
	// Left, Right, Top and Bottom are the plot area's edges.
	Left, Right, Top, Bottom float64
}

// LabelX is where the value labels end, left of the plot.
func (c chart) LabelX() float64 { return c.Left - 6 }

// TickY is the baseline of the time labels.
func (c chart) TickY() float64 { return float64(c.Height) - 6 }

// MidX and MidY are the middle of the plot, for the "collecting samples" note.
func (c chart) MidX() float64 { return (c.Left + c.Right) / 2 }

// MidY is the vertical middle of the plot.
func (c chart) MidY() float64 { return (c.Top + c.Bottom) / 2 }

// chartLine is one series on a chart.
type chartLine struct {
	Label   string
	Class   string // a CSS class giving its colour
	Path    string // SVG path data
	Current string // the latest value, for the legend
}

// chartMark is a labelled position on an axis.
type chartMark struct {
	Pos   float64
	Label string
}

// lineSpec selects one value of each point for a line.
type lineSpec struct {
	label, class string
	value        func(point) (float64, bool)
	format       func(float64) string
}

var (
	depthLine = lineSpec{"depth", "depth", func(p point) (float64, bool) { return float64(p.depth), true }, formatCount}
	pubLine   = lineSpec{"in", "pub", func(p point) (float64, bool) { return p.pub, p.rates }, formatRate}
	finLine   = lineSpec{"processed", "fin", func(p point) (float64, bool) { return p.fin, p.rates }, formatRate}
)

// makeChart lays out pts (oldest first) over the hour ending at now.
func makeChart(title string, pts []point, now time.Time, interval time.Duration, specs ...lineSpec) chart {
	c := chart{
		Title: title, Width: chartWidth, Height: chartHeight,
		Left: plotLeft, Right: plotRight, Top: plotTop, Bottom: plotBottom,
	}
	f := newFrame(pts, now, interval, plotLeft, plotRight, plotTop, plotBottom, specs...)
	c.Empty = f.empty
	for i := range 5 {
		v := f.ymax * float64(i) / 4
		c.Grid = append(c.Grid, chartMark{Pos: plotBottom - (plotBottom-plotTop)*float64(i)/4, Label: specs[0].format(v)})
	}
	for i, label := range []string{"60 min ago", "45", "30", "15", "now"} {
		c.Ticks = append(c.Ticks, chartMark{Pos: plotLeft + (plotRight-plotLeft)*float64(i)/4, Label: label})
	}
	for _, s := range specs {
		path, current := f.path(pts, s)
		c.Lines = append(c.Lines, chartLine{Label: s.label, Class: s.class, Path: path, Current: current})
	}
	return c
}

// frame maps points to a box: time across the last hour, values from 0 to a round maximum.
type frame struct {
	left, right, top, bottom float64
	start, end               int64 // unix milliseconds
	gap                      int64
	ymax                     float64
	empty                    bool // no point has a value in the window
}

func newFrame(pts []point, now time.Time, interval time.Duration, left, right, top, bottom float64, specs ...lineSpec) frame {
	f := frame{left: left, right: right, top: top, bottom: bottom, end: now.UnixMilli(), empty: true}
	f.start = f.end - chartWindow.Milliseconds()
	// A gap of more than a few sample intervals (the admin was down, or every node failed)
	// breaks the line rather than drawing a straight line across it.
	f.gap = 3 * interval.Milliseconds()
	for _, p := range pts {
		if p.at < f.start {
			continue
		}
		for _, s := range specs {
			if v, ok := s.value(p); ok {
				f.ymax, f.empty = max(f.ymax, v), false
			}
		}
	}
	f.ymax = niceCeil(f.ymax)
	return f
}

// path returns the SVG path of one line and its latest value.
func (f frame) path(pts []point, s lineSpec) (path, current string) {
	var b strings.Builder
	last := int64(math.MinInt64)
	for _, p := range pts {
		v, ok := s.value(p)
		if p.at < f.start || !ok {
			continue
		}
		if last == math.MinInt64 || p.at-last > f.gap {
			b.WriteString("M")
		} else {
			b.WriteString("L")
		}
		b.WriteString(coord(f.left + (f.right-f.left)*float64(p.at-f.start)/float64(f.end-f.start)))
		b.WriteByte(' ')
		b.WriteString(coord(f.bottom - (f.bottom-f.top)*v/f.ymax))
		last = p.at
		current = s.format(v)
	}
	return b.String(), current
}

// coord formats an SVG coordinate to a tenth of a unit: finer is invisible and only makes
// the page bigger.
func coord(v float64) string { return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64) }

// niceCeil rounds v up to 1, 2 or 5 times a power of ten, so that the grid's values read
// well; the scale of an all-zero chart is 1.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	exp := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*exp*(1+1e-9) {
			return m * exp
		}
	}
	return 10 * exp
}

// formatCount writes a count compactly for a chart axis: 950, 12.5k, 3M.
func formatCount(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e9:
		return trimFloat(v/1e9) + "G"
	case a >= 1e6:
		return trimFloat(v/1e6) + "M"
	case a >= 1e3:
		return trimFloat(v/1e3) + "k"
	default:
		return trimFloat(v)
	}
}

// formatRate writes a rate per second for a chart axis or legend.
func formatRate(v float64) string { return formatCount(v) + "/s" }

// trimFloat writes v with at most two decimals and none that are zero.
func trimFloat(v float64) string {
	s := strconv.FormatFloat(v, 'f', 2, 64)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}
