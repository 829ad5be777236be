// Package logstore is the storage under every nsqd topic: a segmented append-only log on
// disk with group commit and an in-memory hot tail.
//
// A topic appends each published message once ([Log.Append]); each channel of the topic is a
// cursor into the log ([Reader]). The log only stores, reads, and deletes whole old segments
// when told ([Log.TruncateFront]); the nsqd engine owns channel state, checkpoints and
// retention.
//
// # Records and positions
//
// Every record gets a dense sequence number (seq), counting from 0 for the life of the log,
// even across [Log.Empty]. Head is the oldest retained seq and Tail the seq the next record
// gets. A [Pos] is a seq and the byte offset of the record in the segment that holds it, so a
// reader or [Log.ReadAt] finds a record with one pread and no index.
//
// # On-disk format
//
// A log is a directory of segment files named <base>.seg, where base is the seq of the
// segment's first record written as 20 zero-padded decimal digits (so names sort in seq
// order). A segment is records back to back, with no header:
//
//	[4] N          big-endian length of the rest of the record (28 + body length)
//	[4] CRC        CRC-32C (Castagnoli) of the rest: ID, timestamp, deliver-at and body
//	[8] ID         message ID, big-endian
//	[8] Timestamp  publish time, Unix ns, big-endian
//	[8] DeliverAt  not before this time, Unix ns, big-endian; 0 when not deferred
//	[N-28] body
//
// N must lie in [28, 28+MaxBodyBytes]; anything else is corruption. The segment that holds a
// seq is the one with the largest base <= seq: a segment's records run from its base up to
// the next segment's base. The log rolls to a new segment when the next record would take
// the active (last) one past SegmentBytes, so a record larger than that is alone in its
// segment. A batch that spans a roll is written with one write per segment.
//
// # Writing: group commit
//
// Appenders encode their records into the pending batch under a short lock. The first
// appender of a batch leads it: it waits until no other write is under way, takes the batch
// (which has gathered everything that arrived meanwhile), writes it with one pwrite, and
// publishes it; the others wait for that. Append returns once the write reached the OS
// (after fsync too with FsyncAlways), which is when its records become visible to readers:
// publication is atomic under the read lock, never half a batch. A failed write is undone
// (segments created by the batch removed, the file cut back to its last good size) and every
// appender of the batch gets the error; if the undo itself fails it is retried before
// anything else is written, so no later record ever follows a torn one. (A crash before the
// undo may leave complete records of the failed batch in the log: an appender that saw an
// error may find its records stored, never the reverse.)
//
// Sealed segments are fsynced when the log rolls past them, and the directory when a
// segment is created, so Sync (and SyncEvery) only ever sync the active segment.
//
// # Crash recovery
//
// Kill -9 loses nothing that Append acknowledged, because an acknowledged record has reached
// the OS. A power loss can lose what was not yet fsynced: nothing with FsyncAlways, at most
// SyncEvery records (or what the engine's periodic Sync leaves) otherwise.
//
// Open scans the active segment, validating every record's length and CRC, and cuts off a
// torn tail: damage that ends the segment with no valid record after it, the unfinished end
// of a write (or a last record gone bad, which cannot be told apart from one). The cut is
// logged at warn level and its bytes counted in [Stats].TornBytes, not as corruption; Tail
// and LastID come from what survives.
//
// Damage that valid records follow is not a torn write. A lone corrupt record (its length
// plausible and within the file, its checksum wrong, the record after it valid and none
// inside it) is a flipped bit: Open keeps the segment whole and the record in its seq, so
// Tail, LastID and every later seq stay what they were; it logs the record at error level
// and counts it in [Stats].CorruptRecords, and readers step over it (see below). Appends go
// on after the kept bytes, and every later Open finds and keeps the record again. Any other
// damage (a length out of bounds, or one that spans valid records) is cut off like a torn
// tail, but the cut bytes are first saved to <segment>.<offset>.corrupt, the cut is logged
// at error level, and the damaged record and the valid records found after it are counted
// in CorruptRecords, so data is never discarded silently.
//
// Older segments are not scanned at Open: damage in them is met by readers.
//
// # Reading: hot tail and segments
//
// The newest records stay in memory, bounded by MemRecords and MemBytes (which counts
// encoded record sizes): they alias the buffer each batch was encoded into, so keeping them
// costs no copy. A reader positioned in
// the hot tail copies entries without a syscall; one that lags reads its segment through
// the log's shared file handle, a large chunk per pread, and slices the bodies out of that
// freshly allocated chunk. Bodies are never written after they are returned, so the engine
// can keep them in flight for as long as it likes (a kept body keeps its chunk or batch
// buffer alive). A reader below Head (segments deleted, a memory log overflowed, Empty)
// jumps to Head and counts the records in [Reader.Skipped].
//
// A memory-only log (Dir "") is the hot tail alone, bounded by MemRecords, dropping its
// oldest records on overflow; its positions have Offset 0.
//
// # Reading past damage
//
// A reader that meets a record whose length is plausible and fits the segment but whose
// checksum is wrong steps over that record alone when it is damaged on its own: the record
// after it is valid (or it is the segment's last and the next base agrees), and no valid
// record lies inside it. This is the rule Open keeps such a record by, and it matches a
// flipped bit anywhere but in the length; the reader goes on to deliver every other record
// of the segment. Any other damage makes it skip the rest of the segment, since where the
// next record starts is then unknown: a length out of bounds, or a wrong one (the checksum
// does not cover it), which makes the record after it invalid or spans valid records; a bad
// record followed by another; a segment shorter than its records; a read error that
// persists. Either way the reader counts the records it lost in [Reader.Skipped], and
// [Log.ReadAt] of a damaged record returns [ErrCorrupt].
//
// Damage is logged at error level and counted in [Stats].CorruptRecords once per damaged
// spot, however many readers (one per channel) meet it and however often [Log.ReadAt] is
// asked for it: the log remembers, for each segment, the spots found in it and the verdict
// of the first reader to meet each, which later readers follow.
//
// # Concurrency
//
// A [Log] is safe for concurrent use; a [Reader] belongs to one goroutine at a time. The log
// starts no goroutines. Locks are taken in the order wmu (writes and segment changes), then
// qmu (the gathering batch) or mu (the state readers see), never qmu and mu together; no
// I/O happens under mu. Each segment's own lock (its file handle and its damaged spots) is
// only ever held alone, for a field or map access.
package logstore
