package logstore

// damage is what the log knows of one damaged spot of a segment: a record that is not
// valid, or where a segment's bytes end before its records do.
type damage struct {
	// judged says that readers' verdict on the spot is known. Readers that meet a judged
	// spot follow the verdict instead of judging again, so they all agree.
	judged bool
	// skip is the verdict: the size of a lone corrupt record that readers step over, or 0
	// when they skip the rest of the segment from the spot.
	skip int
	// counted is how many records the spot has added to Stats.CorruptRecords.
	counted uint64
}

// damageAt returns what is known of the spot at off in s.
func (s *segment) damageAt(off int64) (damage, bool) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	d, ok := s.bad[off]
	return d, ok
}

// noteDamage records what was just found at off in s and returns what the log now holds for
// the spot, with fresh true when the caller is the first to find the spot or to judge it (and
// so the one to log it). A verdict already reached stands, and a spot adds to
// Stats.CorruptRecords only the records it had not counted before: a corrupt record that
// ReadAt found and a reader then skips with the rest of its segment is counted once.
func (l *Log) noteDamage(s *segment, off int64, d damage) (_ damage, fresh bool) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	old, known := s.bad[off]
	if old.judged || known && !d.judged {
		return old, false
	}
	d.counted = max(d.counted, old.counted)
	l.stats.corrupt.Add(d.counted - old.counted)
	if s.bad == nil {
		s.bad = make(map[int64]damage)
	}
	s.bad[off] = d
	return d, true
}

// validWithin reports whether a valid record lies wholly inside b, starting after its first
// byte. b is a record that failed its checksum: a valid record inside it means that its
// length is what is damaged, and that it spans records that are fine.
func validWithin(b []byte, maxBody int) bool {
	for i := 1; i+headerSize <= len(b); i++ {
		n, ok := restLen(b[i:], maxBody)
		if !ok || i+n > len(b) {
			continue
		}
		if _, ok := decodeRecord(b[i : i+n]); ok {
			return true
		}
	}
	return false
}
