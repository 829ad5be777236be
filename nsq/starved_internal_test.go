package nsq

import "testing"

// TestIsStarvedRule checks go-nsq's rule, connection by connection: in flight at least 85%
// of the connection's RDY (truncated) and above 0, on a connection that is not closing.
func TestIsStarvedRule(t *testing.T) {
	t.Parallel()
	type conn struct {
		rdy, inFlight int
		closing, dead bool
	}
	tests := []struct {
		name  string
		conns []conn
		want  bool
	}{
		{"no connection", nil, false},
		{"nothing in flight", []conn{{rdy: 10}}, false},
		{"below 85%", []conn{{rdy: 10, inFlight: 7}}, false},
		{"85% truncated", []conn{{rdy: 10, inFlight: 8}}, true},
		{"just below 85 of 100", []conn{{rdy: 100, inFlight: 84}}, false},
		{"85 of 100", []conn{{rdy: 100, inFlight: 85}}, true},
		{"RDY 1 held", []conn{{rdy: 1, inFlight: 1}}, true},
		{"RDY 0 with messages held", []conn{{rdy: 0, inFlight: 1}}, true},
		{"closing", []conn{{rdy: 10, inFlight: 10, closing: true}}, false},
		{"lost", []conn{{rdy: 10, inFlight: 10, dead: true}}, false},
		// The Consumer holds 12 of 20, far from 85%, but one connection is full.
		{"one of two full", []conn{{rdy: 10, inFlight: 2}, {rdy: 10, inFlight: 10}}, true},
		{"neither of two full", []conn{{rdy: 10, inFlight: 7}, {rdy: 10, inFlight: 7}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Consumer{}
			for _, x := range tt.conns {
				cc := &consConn{rdy: x.rdy}
				cc.inFlight.Store(int64(x.inFlight))
				cc.closing.Store(x.closing)
				cc.dead.Store(x.dead)
				c.conns = append(c.conns, cc)
			}
			if got := c.IsStarved(); got != tt.want {
				t.Errorf("IsStarved = %v, want %v", got, tt.want)
			}
		})
	}
}
