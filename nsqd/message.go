package nsqd

import (
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/nsqd/logstore"
)

// nodeIDShift places the 10-bit node ID above a 54-bit counter in every message ID.
const nodeIDShift = 54

// idGenerator hands out message IDs unique on this node: the node ID in the high bits and a
// counter below it. The counter starts at the wall clock in milliseconds shifted left by 10
// (room for 1,024 IDs per millisecond of downtime) or past the newest ID found on disk,
// whichever is larger, so IDs are not reused after a restart even if no state survived; and,
// unlike NSQ's generator, a clock stepping backwards never stalls publishing.
type idGenerator struct {
	node    uint64
	counter atomic.Uint64
}

func newIDGenerator(nodeID int64, newestSeen uint64) *idGenerator {
	g := &idGenerator{node: uint64(nodeID) << nodeIDShift}
	start := uint64(time.Now().UnixMilli()) << 10
	if seen := newestSeen & (1<<nodeIDShift - 1); seen+1 > start {
		start = seen + 1
	}
	g.counter.Store(start - 1)
	return g
}

// next reserves n consecutive IDs and returns the first.
func (g *idGenerator) next(n int) uint64 {
	last := g.counter.Add(uint64(n))
	return g.node | (last - uint64(n) + 1)
}

// pendingState is where a message the channel's cursor has passed stands.
type pendingState uint8

const (
	stateReady    pendingState = iota // waiting in the ready queue for (re)delivery
	stateAssigned                     // in a subscriber's outbox, waiting for its pump
	stateInFlight                     // delivered, waiting for FIN, REQ, TOUCH or timeout
	stateDeferred                     // waiting in the timer heap until due
	stateDying                        // on its way to the dead-letter topic (deadletter.go)
	stateDone                         // finished or dropped; kept only until the order queue passes it
)

// pending is a message the channel's cursor has passed but that is not finished yet. It holds
// the body (shared with the log's hot tail or read chunk, never copied per channel).
type pending struct {
	pos       logstore.Pos
	id        uint64
	timestamp int64
	body      []byte

	attempts    uint16
	state       pendingState
	deadReason  uint8         // why it is dying
	injected    bool          // a redriven message: not in the topic's log, nor in the order queue
	owner       *subscription // while assigned or in flight
	deliveredAt int64         // Unix ns of the current delivery, for TOUCH's cap
	firstDeliv  int64         // Unix ns of the first delivery, for a dead letter's metadata
	due         int64         // in-flight deadline or deferred due time, Unix ns
	releasedDue int64         // when a timer released it to the ready queue, the time it was due
	heapIndex   int           // position in the channel's timer heap, -1 when absent
}

// observe moves the counter past an ID found on disk, so IDs are never handed out twice.
func (g *idGenerator) observe(id uint64) {
	seen := id & (1<<nodeIDShift - 1)
	for {
		cur := g.counter.Load()
		if cur >= seen || g.counter.CompareAndSwap(cur, seen) {
			return
		}
	}
}

// delivery is what the pump writes for one message, copied out of the channel's state under
// its lock so the write needs no lock.
type delivery struct {
	id        uint64
	timestamp int64
	attempts  uint16
	body      []byte
	due       int64 // for a message a timer released, when it was due; 0 otherwise
}
