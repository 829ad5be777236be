package quantile

import (
	"math"
	"testing"
	"time"
)

func TestStreamPercentilesOfUniformValues(t *testing.T) {
	s := New(time.Minute, []float64{0.5, 0.99, 1})
	for i := 1; i <= 100000; i++ {
		s.Observe(float64(i))
	}
	r := s.Result()
	if r.Count != 100000 {
		t.Fatalf("count %d, want 100000", r.Count)
	}
	want := []float64{50000, 99000, 100000}
	for i, p := range r.Percentiles {
		// A 1,024-sample reservoir estimates a percentile of 100,000 values to a few percent.
		if got := p["value"]; math.Abs(got-want[i]) > 0.06*100000 {
			t.Errorf("quantile %v = %v, want about %v", p["quantile"], got, want[i])
		}
	}
}

func TestStreamEmptyAndNil(t *testing.T) {
	var nilStream *Stream
	if nilStream.Result() != nil {
		t.Fatal("a nil stream must report null")
	}
	r := New(time.Minute, []float64{0.5}).Result()
	if r.Count != 0 || len(r.Percentiles) != 1 || r.Percentiles[0]["value"] != 0 {
		t.Fatalf("empty stream gave %+v", r)
	}
}

func TestMergeWeightsByCount(t *testing.T) {
	a := &Result{Count: 3, Percentiles: []map[string]float64{{"quantile": 0.5, "value": 10}}}
	b := &Result{Count: 1, Percentiles: []map[string]float64{{"quantile": 0.5, "value": 50}}}
	m := Merge(a, nil, b)
	if m.Count != 4 || m.Percentiles[0]["value"] != 20 {
		t.Fatalf("merge gave %+v, want count 4 value 20", m)
	}
	if Merge(nil, nil) != nil {
		t.Fatal("merging nothing must give nil")
	}
}
