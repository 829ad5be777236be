package nsqd

import (
	"math"

	"github.com/ternmq/tern/nsqd/logstore"
)

// noEnd and noLimit leave scanLog unbounded.
const (
	noEnd   = math.MaxUint64
	noLimit = math.MaxInt
)

// scanLog reads l from `from` with a reader of its own and hands f its records in order, below
// seq end and at most limit of them, until f returns false. It returns where a reader would
// go on from: the record f refused, or the one after the last it accepted; and whether the
// records below end ran out (rather than f, limit or a read error stopping the scan).
// Inspection, the TTL sweep, quotas, seeks and dead-letter listings all read the log so.
func scanLog(l *logstore.Log, from logstore.Pos, end uint64, limit int, f func(*logstore.Entry) bool) (next logstore.Pos, exhausted bool, err error) {
	r := l.NewReader(from)
	defer func() { _ = r.Close() }()
	next = from
	var ents []logstore.Entry
	for seen := 0; seen < limit; {
		if r.Pos().Seq >= end {
			return r.Pos(), true, nil
		}
		if ents, err = r.ReadBelow(ents[:0], min(limit-seen, 256), end); err != nil {
			return next, false, err
		}
		if len(ents) == 0 {
			return r.Pos(), true, nil
		}
		for i := range ents {
			seen++
			if !f(&ents[i]) {
				return ents[i].Pos, false, nil
			}
			next = r.Pos()
			if i+1 < len(ents) {
				next = ents[i+1].Pos
			}
		}
	}
	return next, false, nil
}
