package logstore

// ring is the hot tail: the newest records of the log, in seq order, so that readers that
// keep up copy entries instead of reading files. It always ends at the log's tail: every
// published record enters it, and the oldest leave when the record or byte bound is passed.
// Bodies alias the buffer the records were encoded into, which is never written again.
//
// A ring is guarded by Log.mu.
type ring struct {
	buf      []Entry // len is zero or a power of two; grows on demand up to the record bound
	head     uint64  // seq of the oldest entry (the tail when empty)
	n        int     // entries held
	bytes    int64   // encoded size of the entries held
	max      int     // record bound; 0 disables the ring
	maxBytes int64   // byte bound
}

// minRingSlots is the ring's first allocation, so that a log that holds few records does not
// pay for its full bound up front.
const minRingSlots = 256

func (r *ring) enabled() bool { return r.max > 0 }

// has reports whether seq is held.
func (r *ring) has(seq uint64) bool { return seq >= r.head && seq-r.head < uint64(r.n) }

func (r *ring) at(seq uint64) *Entry { return &r.buf[seq&uint64(len(r.buf)-1)] }

// push adds e, whose seq must be head+n, then drops the oldest entries past the bounds.
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
	r.bytes += int64(recordSize(len(e.Body)))
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
	r.bytes -= int64(recordSize(len(e.Body)))
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
}

// reset empties the ring and starts it at tail.
func (r *ring) reset(tail uint64) {
	clear(r.buf)
	r.head, r.n, r.bytes = tail, 0, 0
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
