package logstore

import "sync/atomic"

// ring is the hot tail: the newest records of the log, in seq order, so that readers that
// keep up copy entries instead of reading files. It always ends at the log's tail: every
// published record enters it, and the oldest leave when the record or byte bound is passed,
// or when the budget the ring shares with other logs' rings is. Bodies alias the buffer the
// records were encoded into, which is never written again.
//
// A ring is guarded by Log.mu; its share of the budget is an atomic the other rings read.
type ring struct {
	buf      []Entry // len is zero or a power of two; grows on demand up to the record bound
	head     uint64  // seq of the oldest entry (the tail when empty)
	n        int     // entries held
	bytes    int64   // encoded size of the entries held
	max      int     // record bound; 0 disables the ring
	maxBytes int64   // byte bound
	budget   *Budget // shared bound, or nil
	owed     int64   // change of bytes not yet reported to the budget (see settle)
}

// Budget bounds the bytes that the hot tails of many logs hold together: memory stays bounded
// however many topics there are. A log that appends while the budget is spent evicts its own
// oldest records, down to the record just appended if need be, so readers that fall out of
// the budget read the segment files. A Budget is safe for concurrent use.
type Budget struct {
	limit int64
	used  atomic.Int64
}

// NewBudget returns a budget of limit bytes of encoded records.
func NewBudget(limit int64) *Budget { return &Budget{limit: limit} }

// Limit returns the budget's bound in bytes.
func (b *Budget) Limit() int64 { return b.limit }

// Used returns the bytes the hot tails hold now.
func (b *Budget) Used() int64 { return b.used.Load() }

// account changes the bytes held by delta; the budget learns of it at the next settle.
func (r *ring) account(delta int64) {
	r.bytes += delta
	r.owed += delta
}

// settle reports to the budget what the ring's bytes changed by since the last settle, with
// one atomic add for a whole batch of pushes, then drops the oldest entries while the budget
// is spent. Whoever changes the ring settles before releasing Log.mu.
func (r *ring) settle() {
	if r.budget == nil {
		r.owed = 0
		return
	}
	used := r.budget.used.Add(r.owed)
	r.owed = 0
	for r.n > 0 && used > r.budget.limit {
		r.pop()
		used = r.budget.used.Add(r.owed)
		r.owed = 0
	}
}

// minRingSlots is the ring's first allocation, so that a log that holds few records does not
// pay for its full bound up front.
const minRingSlots = 256

func (r *ring) enabled() bool { return r.max > 0 }

// has reports whether seq is held.
func (r *ring) has(seq uint64) bool { return seq >= r.head && seq-r.head < uint64(r.n) }

func (r *ring) at(seq uint64) *Entry { return &r.buf[seq&uint64(len(r.buf)-1)] }

// push adds e, whose seq must be head+n, then drops the oldest entries past the ring's own
// bounds; the shared budget is kept by settle, after a batch of pushes.
func (r *ring) push(e Entry) {
	if r.n == len(r.buf) {
		if len(r.buf) < r.max {
			r.grow()
		} else {
			r.pop()
		}
	}
	*r.at(e.Pos.Seq) = e
	r.n++
	r.account(int64(recordSize(len(e.Body))))
	for r.n > 0 && (r.n > r.max || r.bytes > r.maxBytes) {
		r.pop()
	}
}

func (r *ring) grow() {
	size := max(minRingSlots, 2*len(r.buf))
	limit := 1
	for limit < r.max {
		limit *= 2
	}
	size = min(size, limit)
	nb := make([]Entry, size)
	mask := uint64(size - 1)
	for i := range r.n {
		seq := r.head + uint64(i)
		nb[seq&mask] = *r.at(seq)
	}
	r.buf = nb
}

// pop drops the oldest entry, clearing its slot so the body's buffer can be collected.
func (r *ring) pop() {
	e := r.at(r.head)
	r.account(-int64(recordSize(len(e.Body))))
	*e = Entry{}
	r.head++
	r.n--
}

// dropBelow drops every entry with a seq below seq; an empty ring moves its head up to seq
// (never past tail).
func (r *ring) dropBelow(seq, tail uint64) {
	for r.n > 0 && r.head < seq {
		r.pop()
	}
	if r.n == 0 && r.head < seq {
		r.head = min(seq, tail)
	}
	r.settle()
}

// reset empties the ring and starts it at tail.
func (r *ring) reset(tail uint64) {
	clear(r.buf)
	r.account(-r.bytes)
	r.head, r.n = tail, 0
	r.settle()
}

// copyFrom appends up to k entries starting at seq (which must be held) to dst and returns
// the position that follows the last one copied; tailPos is the log's tail position, the
// answer when the copy reaches the end.
func (r *ring) copyFrom(dst []Entry, seq uint64, k int, tailPos Pos) ([]Entry, Pos) {
	k = min(k, r.n-int(seq-r.head))
	mask := uint64(len(r.buf) - 1)
	for k > 0 {
		i := int(seq & mask)
		run := min(k, len(r.buf)-i)
		dst = append(dst, r.buf[i:i+run]...)
		seq += uint64(run)
		k -= run
	}
	if r.has(seq) {
		return dst, r.at(seq).Pos
	}
	return dst, tailPos
}
