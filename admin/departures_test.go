package admin

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDepartures(t *testing.T) {
	node := func(port int) *Producer {
		return &Producer{BroadcastAddress: "10.0.0.1", TCPPort: port, HTTPPort: port + 1}
	}
	a, b := node(4150), node(4250)
	t0 := time.Date(2026, 12, 6, 15, 0, 0, 0, time.UTC)
	var d departures
	steps := []struct {
		name     string
		listed   []*Producer
		complete bool
		after    time.Duration
		want     []string // the HTTP addresses warned about
	}{
		{"both listed", []*Producer{a, b}, true, 0, nil},
		{"b unlisted while a lookupd failed: maybe not gone", []*Producer{a}, false, time.Second, nil},
		{"b unlisted by every lookupd", []*Producer{a}, true, 2 * time.Second, []string{"10.0.0.1:4251"}},
		{"still warned while a lookupd fails", []*Producer{a}, false, 3 * time.Second, []string{"10.0.0.1:4251"}},
		{"both gone", nil, true, 4 * time.Second, []string{"10.0.0.1:4151", "10.0.0.1:4251"}},
		{"b back", []*Producer{b}, true, 5 * time.Second, []string{"10.0.0.1:4151"}},
		{"a forgotten after an hour", []*Producer{b}, true, 4*time.Second + departureMemory + time.Second, nil},
	}
	for _, s := range steps {
		warnings := d.update(s.listed, s.complete, t0.Add(s.after))
		var got []string
		for _, w := range warnings {
			var de *daemonError
			if !errors.As(w, &de) || !errors.Is(w, errDeparted) {
				t.Fatalf("%s: warning %v is not a departure", s.name, w)
			}
			got = append(got, de.addr)
		}
		if strings.Join(got, " ") != strings.Join(s.want, " ") {
			t.Errorf("%s: warned about %v, want %v", s.name, got, s.want)
		}
	}
	if w := d.update(nil, true, t0.Add(3*departureMemory)); len(w) != 0 {
		t.Errorf("a node was warned about after being forgotten: %v", w)
	}
	d.update([]*Producer{a}, true, t0)
	d.reset()
	if w := d.update([]*Producer{b}, true, t0.Add(time.Second)); len(w) != 0 {
		t.Errorf("after a reset (the lookupds changed), the old cluster's nodes are warned about: %v", w)
	}
}
