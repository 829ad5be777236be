package logstore

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

const (
	benchBatch = 200
	benchBody  = 100
)

func benchRecords() []Record {
	recs := make([]Record, benchBatch)
	for i := range recs {
		recs[i] = Record{ID: uint64(i), Timestamp: int64(i), Body: make([]byte, benchBody)}
	}
	return recs
}

func reportRecords(b *testing.B, records int) {
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkAppend appends batches of 200 records of 100-byte bodies (one op = one batch)
// from 1 and 4 goroutines, with or without the hot tail.
func BenchmarkAppend(b *testing.B) {
	for _, mem := range []int{10000, 0} {
		for _, goroutines := range []int{1, 4} {
			b.Run(fmt.Sprintf("mem=%d/goroutines=%d", mem, goroutines), func(b *testing.B) {
				l, err := Open(Options{Dir: b.TempDir(), SegmentBytes: 64 << 20, MemRecords: mem})
				if err != nil {
					b.Fatal(err)
				}
				defer l.Close()
				b.SetBytes(benchBatch * benchBody)
				b.ReportAllocs()
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for range goroutines {
					wg.Go(func() {
						recs := benchRecords()
						for {
							op := next.Add(1)
							if op > int64(b.N) {
								return
							}
							if _, err := l.Append(recs); err != nil {
								b.Error(err)
								return
							}
							if op%512 == 0 {
								// Bound the disk use of long runs; the active segment stays.
								if _, err := l.TruncateFront(l.Tail()); err != nil {
									b.Error(err)
									return
								}
							}
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				reportRecords(b, b.N*benchBatch)
			})
		}
	}
}

// benchRead reads b.N records (one op = one record) in reads of 256 from a log of n
// records, starting over at the head whenever the reader reaches the tail.
func benchRead(b *testing.B, l *Log, n int) {
	for i := 0; i < n; i += benchBatch {
		if _, err := l.Append(benchRecords()); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(benchBody)
	b.ReportAllocs()
	dst := make([]Entry, 0, 256)
	r := l.NewReader(l.HeadPos())
	b.ResetTimer()
	for read := 0; read < b.N; {
		var err error
		dst, err = r.Read(dst[:0], min(256, b.N-read))
		if err != nil {
			b.Fatal(err)
		}
		if len(dst) == 0 {
			r = l.NewReader(l.HeadPos())
			continue
		}
		read += len(dst)
	}
	b.StopTimer()
	reportRecords(b, b.N)
}

// BenchmarkReadDisk reads from the segment files (hot tail disabled, files in page cache).
func BenchmarkReadDisk(b *testing.B) {
	l, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	benchRead(b, l, 200_000)
}

// BenchmarkReadHotTail reads records that are all in the hot tail.
func BenchmarkReadHotTail(b *testing.B) {
	l, err := Open(Options{Dir: b.TempDir(), MemRecords: 100_000})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	benchRead(b, l, 100_000)
}

// BenchmarkAppendFsyncAlways has 16 goroutines publish single 100-byte records with
// FsyncAlways (one op = one record): group commit turns many fsyncs into one.
func BenchmarkAppendFsyncAlways(b *testing.B) {
	l, err := Open(Options{Dir: b.TempDir(), MemRecords: 10000, FsyncAlways: true})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.SetBytes(benchBody)
	b.ReportAllocs()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range 16 {
		wg.Go(func() {
			recs := benchRecords()[:1]
			for next.Add(1) <= int64(b.N) {
				if _, err := l.Append(recs); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	reportRecords(b, b.N)
	s := l.Stats()
	b.ReportMetric(float64(s.Records)/float64(max(s.Fsyncs, 1)), "records/fsync")
}
