package nsq

import (
	"fmt"
	"time"

	"github.com/ternmq/tern/internal/protocol"
)

// RDY distribution and backoff. nsqd delivers on a connection while its messages in flight
// are fewer than the connection's RDY, so a Consumer spreads Config.MaxInFlight over its
// connections as RDY counts whose sum never exceeds it. go-nsq splits it evenly and
// statically, which leaves an idle nsqd holding its share while a busy one is throttled,
// and which starves connections outright when MaxInFlight is below the number of
// connections (go-nsq #179, #277). Here the split follows need:
//
//   - With at least as much MaxInFlight as connections, a connection that received nothing
//     during the last RDYRedistributeInterval and has nothing in flight keeps RDY 1,
//     enough to notice work, and the busy ones share the rest evenly. A message on an idle connection makes it busy and
//     triggers a redistribution at once, so work is not throttled for a whole interval.
//   - With less, RDY 1 rotates: at each interval a holder that received nothing, or that
//     has held it for a full interval while others waited, gives it up, and the free
//     slots go round-robin to connections without RDY, those that just gave one up last.
//
// Backoff overrides both: while paused every connection has RDY 0, and while testing the
// waters exactly one connection, chosen round-robin, has RDY 1.
//
// Whatever the split, what the connections can hold together never exceeds MaxInFlight
// (capLocked): a connection whose RDY is lowered keeps the messages it has, and the room it
// gives up goes to the others only once they are answered and the lower RDY has had time to
// reach nsqd.

// backoffState is the Consumer's backoff, guarded by Consumer.mu.
type backoffState struct {
	counter int         // unrecovered failures
	paused  bool        // the timer runs: RDY 0 everywhere, signals ignored
	timer   *time.Timer // ends the pause
	probe   *consConn   // the connection testing the waters
}

// rdyLoop redistributes RDY every Config.RDYRedistributeInterval and when asked to. It is
// started by NewConsumer and returns when Stop begins.
func (c *Consumer) rdyLoop() {
	defer c.loops.Done()
	ticker := time.NewTicker(c.cfg.RDYRedistributeInterval)
	defer ticker.Stop()
	for {
		select {
		case <-c.stopCh:
			return
		case <-ticker.C:
			c.mu.Lock()
			c.rebalanceLocked(true)
			c.mu.Unlock()
		case <-c.rebalCh:
			c.mu.Lock()
			c.rebalanceLocked(false)
			c.mu.Unlock()
		}
	}
}

// requestRebalance asks the RDY loop to redistribute; it does not block, so the read loops
// may call it.
func (c *Consumer) requestRebalance() {
	select {
	case c.rebalCh <- struct{}{}:
	default:
	}
}

// rebalanceLocked sets every connection's RDY; tick says an interval has passed, which is
// when connections are judged idle.
func (c *Consumer) rebalanceLocked(tick bool) {
	conns := c.conns
	n := len(conns)
	if tick {
		for _, cc := range conns {
			// A connection whose handlers hold its messages is busy too: it receives
			// nothing only because its RDY is used up.
			cc.busy.Store(cc.recv.Swap(0) > 0 || cc.inFlight.Load() > 0)
		}
	}
	if n == 0 || c.stopping {
		return
	}
	want := c.want[:0]
	for range conns {
		want = append(want, 0)
	}
	c.want = want
	switch maxInFlight := c.maxInFlight; {
	case c.bo.paused || maxInFlight == 0:
		// every connection RDY 0
	case c.bo.counter > 0:
		if c.bo.probe == nil {
			c.bo.probe = conns[c.rot%n]
			c.rot = (c.rot + 1) % n
		}
		for i, cc := range conns {
			if cc == c.bo.probe {
				want[i] = 1
			}
		}
	case maxInFlight >= n:
		busy := 0
		for _, cc := range conns {
			if cc.busy.Load() {
				busy++
			}
		}
		idle := n - busy
		if busy == 0 {
			busy, idle = n, 0 // nobody is busy: nobody is preferred
		}
		budget := maxInFlight - idle
		share, extra := budget/busy, budget%busy
		for i, cc := range conns {
			switch {
			case idle > 0 && !cc.busy.Load():
				want[i] = 1
			case extra > 0:
				want[i] = share + 1
				extra--
			default:
				want[i] = share
			}
		}
	default:
		c.rotateLocked(tick, maxInFlight, want)
	}
	c.capLocked(want)
	// Lower counts first, so that the sum never exceeds MaxInFlight on the wire even
	// transiently (each connection's commands are in order, but not across them).
	for i, cc := range conns {
		if want[i] < cc.rdy {
			cc.setRDYLocked(want[i])
		}
	}
	for i, cc := range conns {
		if want[i] > cc.rdy {
			cc.setRDYLocked(want[i])
		}
	}
}

// capLocked lowers the RDY counts in want until what the connections can hold together is
// within MaxInFlight. A connection holds the larger of its RDY and the messages it has in
// flight: nsqd takes nothing back when RDY is lowered, so the messages a connection holds
// beyond its new RDY count until they are answered. And a RDY being lowered reaches nsqd
// only after a moment, during which nsqd may still deliver up to the old count, so that
// count stands until the next distribution: room moves from one connection to another over
// two distributions, never within one. Room is taken back from the connections with the
// most RDY beyond what they hold; when none is left to take, answering a message asks for
// a new distribution (see consConn.answered).
func (c *Consumer) capLocked(want []int) {
	holds := func(i int, cc *consConn) int {
		h := max(want[i], int(cc.inFlight.Load()))
		if want[i] < cc.rdy {
			h = max(h, cc.rdy)
		}
		return h
	}
	over := -c.maxInFlight
	for i, cc := range c.conns {
		over += holds(i, cc)
	}
	trimmed := over > 0
	for ; over > 0; over-- {
		best, bestGap := -1, 0
		for i, cc := range c.conns {
			if gap := want[i] - max(int(cc.inFlight.Load()), cc.rdy); gap > bestGap {
				best, bestGap = i, gap
			}
		}
		if best < 0 {
			break // all of it is held; nothing unheld to take back
		}
		want[best]--
	}
	c.trimmed.Store(trimmed)
}

// rotateLocked distributes maxInFlight, fewer than the connections, as RDY 1 each, into
// want.
func (c *Consumer) rotateLocked(tick bool, maxInFlight int, want []int) {
	conns := c.conns
	n := len(conns)
	waiting, holders := 0, 0
	for i, cc := range conns {
		cc.released = false
		want[i] = min(cc.rdy, 1)
		if want[i] == 0 {
			waiting++
		}
	}
	for i, cc := range conns {
		if want[i] == 0 {
			continue
		}
		if tick && (!cc.busy.Load() || (waiting > 0 && cc.held >= 1)) || holders >= maxInFlight {
			want[i] = 0
			cc.released = true
			continue
		}
		if tick {
			cc.held++
		}
		holders++
	}
	free := maxInFlight - holders
	for pass := 0; pass < 2 && free > 0; pass++ {
		start := c.rot
		for k := 0; k < n && free > 0; k++ {
			j := (start + k) % n
			cc := conns[j]
			if want[j] != 0 || (pass == 0 && cc.released) {
				continue
			}
			want[j] = 1
			cc.held = 0
			free--
			c.rot = (j + 1) % n
		}
	}
}

// ChangeMaxInFlight changes how many messages the Consumer accepts in flight across its
// connections, and redistributes RDY at once; 0 stops delivery until it is raised again. It
// may be called while the Consumer runs, as go-nsq's.
func (c *Consumer) ChangeMaxInFlight(n int) error {
	if n < 0 {
		return fmt.Errorf("nsq: ChangeMaxInFlight(%d): must not be negative", n)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		return ErrStopped
	}
	c.maxInFlight = n
	c.rebalanceLocked(false)
	return nil
}

// setRDYLocked sends RDY n on cc unless it is in force already.
func (cc *consConn) setRDYLocked(n int) {
	n = min(n, cc.maxRdy)
	if n == cc.rdy {
		return
	}
	cc.rdy = n
	if cc.conn.write(protocol.Ready(n)) == nil {
		cc.conn.flush()
	}
}

// backoffSignal reports a handled message: success, or a failure that asks for backoff.
// Signals are ignored while paused, as go-nsq does: messages already in flight when the
// pause began say nothing about the state after it.
func (c *Consumer) backoffSignal(success bool) {
	if c.cfg.MaxBackoffDuration < 0 || (success && !c.inBackof.Load()) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bo.paused || c.stopping {
		return
	}
	if success {
		if c.bo.counter == 0 {
			return
		}
		c.bo.counter--
	} else if c.bo.counter == 0 || c.backoffDuration(c.bo.counter) < c.cfg.MaxBackoffDuration {
		// Levels beyond the one that reaches MaxBackoffDuration would only take longer
		// to recover from.
		c.bo.counter++
	}
	c.bo.probe = nil
	if c.bo.counter == 0 {
		c.inBackof.Store(false)
		c.logger.Info("backoff ended")
		c.rebalanceLocked(false)
		return
	}
	c.inBackof.Store(true)
	d := c.backoffDuration(c.bo.counter)
	c.logger.Debug("backing off", "level", c.bo.counter, "pause", d)
	c.bo.paused = true
	c.rebalanceLocked(false)
	c.bo.timer = time.AfterFunc(d, c.endPause)
}

// endPause ends a backoff pause: one connection gets RDY 1 to test the waters.
func (c *Consumer) endPause() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		return
	}
	c.bo.paused = false
	c.rebalanceLocked(false)
}

// backoffDuration is the pause after level consecutive failures: BackoffMultiplier *
// 2^(level-1), capped at MaxBackoffDuration.
func (c *Consumer) backoffDuration(level int) time.Duration {
	d := c.cfg.BackoffMultiplier
	for i := 1; i < level && d < c.cfg.MaxBackoffDuration; i++ {
		d *= 2
	}
	return min(d, c.cfg.MaxBackoffDuration)
}
