package testutil

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// Promlint fails the test for every problem Prometheus's linter finds in what g gathers, and
// for every metric c describes that has no series in it: a metric without a series would go
// unlinted, so the scenario before the call must make every metric appear.
func Promlint(t *testing.T, g prometheus.Gatherer, c prometheus.Collector) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	descs := make(chan *prometheus.Desc, 64)
	go func() {
		c.Describe(descs)
		close(descs)
	}()
	for d := range descs {
		// A Desc prints as Desc{fqName: "name", ...}: the name is the first quoted string.
		name := d.String()
		name = name[strings.Index(name, `"`)+1:]
		name = name[:strings.Index(name, `"`)]
		if !names[name] {
			t.Errorf("%s has no series, so it went unlinted", name)
		}
	}
}

// CounterValue reads the counter name whose series has every label in labels, as g gathers
// it; the test fails if there is no such series.
func CounterValue(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			matched := 0
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want == lp.GetValue() {
					matched++
				}
			}
			if matched == len(labels) {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no counter %s with labels %v", name, labels)
	return 0
}
