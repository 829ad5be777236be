package nsq

import (
	"bytes"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/protocol"
)

// TestFillMergesAndHolds checks what the write pump is given: PUBs held while anything is
// in flight, then grouped by topic into MPUBs; other commands pipelined in order.
func TestFillMergesAndHolds(t *testing.T) {
	t.Parallel()
	pub := func(topic, body string) *transaction {
		return &transaction{cmd: protocol.Publish(topic, []byte(body)), pub: true, msgs: 1}
	}
	dpub := func(topic, body string) *transaction {
		return &transaction{cmd: protocol.DeferredPublish(topic, time.Second, []byte(body)), msgs: 1}
	}
	mpub := func(topic string, bodies ...string) []byte {
		bs := make([][]byte, len(bodies))
		for i, b := range bodies {
			bs[i] = []byte(b)
		}
		cmd, err := protocol.MultiPublish(topic, bs)
		if err != nil {
			t.Fatal(err)
		}
		return cmd.AppendTo(nil)
	}
	wire := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	cmd := func(tr *transaction) []byte { return tr.cmd.AppendTo(nil) }

	cancelled := pub("a", "gone")
	cancelled.cancelled = true
	alone := pub("a", "alone")
	alone.alone = true
	d1 := dpub("a", "d1")
	a1 := pub("a", "a1")

	cases := []struct {
		name      string
		inFlight  int
		unsent    []*transaction
		want      []byte
		wantUnits []int // messages per unit pushed in flight
		wantLeft  int
	}{
		{"lone PUB goes at once", 0, []*transaction{pub("a", "1")}, cmd(pub("a", "1")), []int{1}, 0},
		{"PUBs grouped by topic", 0,
			[]*transaction{pub("a", "1"), pub("b", "2"), pub("a", "3")},
			wire(mpub("a", "1", "3"), cmd(pub("b", "2"))), []int{2, 1}, 0},
		{"PUB held while in flight", 1, []*transaction{pub("a", "1"), pub("a", "2")}, nil, nil, 2},
		{"DPUB pipelined, PUB behind it held", 1, []*transaction{d1, a1}, cmd(d1), []int{1}, 1},
		{"PUBs before a DPUB merge, those after wait", 0,
			[]*transaction{pub("a", "1"), pub("a", "2"), dpub("a", "d"), pub("a", "3")},
			wire(mpub("a", "1", "2"), cmd(dpub("a", "d"))), []int{2, 1}, 1},
		{"cancelled skipped", 0, []*transaction{pub("a", "1"), cancelled, pub("a", "2")},
			mpub("a", "1", "2"), []int{2}, 0},
		{"PUB resent alone is pipelined", 1, []*transaction{alone}, cmd(alone), []int{1}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewProducer("127.0.0.1:1", nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.cancel)
			c := &conn{}
			p.conn = c
			for range tc.inFlight {
				busy := pub("x", "busy")
				p.inflight.push(unit{busy})
			}
			for _, tr := range tc.unsent {
				tr.self[0] = tr
				tr.sent = false
			}
			p.unsent = append([]*transaction(nil), tc.unsent...)
			got, more := p.fill(c, nil)
			if !bytes.Equal(got, tc.want) {
				t.Errorf("wire:\n got %q\nwant %q", got, tc.want)
			}
			if more {
				t.Error("fill asked for another round")
			}
			for range tc.inFlight {
				p.inflight.pop()
			}
			var units []int
			for u := p.inflight.pop(); u != nil; u = p.inflight.pop() {
				units = append(units, len(u))
			}
			if !equalInts(units, tc.wantUnits) {
				t.Errorf("units in flight %v, want %v", units, tc.wantUnits)
			}
			if len(p.unsent) != tc.wantLeft {
				t.Errorf("%d left unsent, want %d", len(p.unsent), tc.wantLeft)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestFillBounds checks the limits on one merged MPUB.
func TestFillBounds(t *testing.T) {
	t.Parallel()
	p, err := NewProducer("127.0.0.1:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.cancel)
	c := &conn{}
	p.conn = c
	body := bytes.Repeat([]byte("x"), 1000)
	const n = maxMergedBytes/1000 + 10
	for range n {
		tr := &transaction{cmd: protocol.Publish("a", body), pub: true, msgs: 1}
		tr.self[0] = tr
		p.unsent = append(p.unsent, tr)
	}
	big := &transaction{cmd: protocol.Publish("a", make([]byte, maxMergedBody+1)), pub: true, msgs: 1}
	big.self[0] = big
	p.unsent = append(p.unsent, big)
	p.fill(c, nil)
	total := 0
	for u := p.inflight.pop(); u != nil; u = p.inflight.pop() {
		size := 0
		for _, tr := range u {
			size += len(tr.cmd.Body)
		}
		if size > maxMergedBytes || len(u) > maxMergedMsgs {
			t.Errorf("merged unit of %d messages, %d bytes", len(u), size)
		}
		total += len(u)
	}
	// The large PUB is not mergeable, so it is pipelined behind the batches like a DPUB.
	if total != n+1 || len(p.unsent) != 0 {
		t.Errorf("%d PUBs sent and %d left, want %d and 0", total, len(p.unsent), n+1)
	}
}
