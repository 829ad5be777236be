package nsq

import (
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
	if c.bo.paused {
		for _, cc := range conns {
			cc.setRDYLocked(0)
		}
		return
	}
	if c.bo.counter > 0 {
		if c.bo.probe == nil {
			c.bo.probe = conns[c.rot%n]
			c.rot = (c.rot + 1) % n
		}
		for _, cc := range conns {
			if cc == c.bo.probe {
				cc.setRDYLocked(1)
			} else {
				cc.setRDYLocked(0)
			}
		}
		return
	}
	maxInFlight := c.cfg.MaxInFlight
	if maxInFlight >= n {
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
		// Lower counts first, so that the sum never exceeds MaxInFlight on the wire even
		// transiently (each connection's commands are in order, but not across them).
		want := make([]int, n)
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
		return
	}
	c.rotateLocked(tick, maxInFlight)
}

// rotateLocked distributes maxInFlight, fewer than the connections, as RDY 1 each.
func (c *Consumer) rotateLocked(tick bool, maxInFlight int) {
	conns := c.conns
	n := len(conns)
	waiting, holders := 0, 0
	for _, cc := range conns {
		cc.released = false
		if cc.rdy > 1 {
			cc.setRDYLocked(1)
		}
		if cc.rdy == 0 {
			waiting++
		}
	}
	for _, cc := range conns {
		if cc.rdy == 0 {
			continue
		}
		if tick && (!cc.busy.Load() || (waiting > 0 && cc.held >= 1)) || holders >= maxInFlight {
			cc.setRDYLocked(0)
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
		for i := 0; i < n && free > 0; i++ {
			j := (start + i) % n
			cc := conns[j]
			if cc.rdy != 0 || (pass == 0 && cc.released) {
				continue
			}
			cc.setRDYLocked(1)
			cc.held = 0
			free--
			c.rot = (j + 1) % n
		}
	}
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
