package nsq_test

import (
	"context"
	"log"
	"sync/atomic"
	"testing"
	"time"

	gonsq "github.com/nsqio/go-nsq"

	"github.com/ternmq/tern/nsq"
)

// The consumer benchmarks drain the same backlog from the same kind of nsqd: b.N messages
// of 100 bytes published before the timer starts (run with -benchtime=200000x for the
// figures in the package's notes), MaxInFlight 2500, one handler goroutine that does
// nothing. They report messages per second.

const benchMaxInFlight = 2500

// benchBacklog starts an nsqd holding n messages on topic "bench".
func benchBacklog(b *testing.B, n int) *server {
	b.Helper()
	s := startNSQD(b, nil)
	body := make([]byte, benchBodySize)
	batch := make([][]byte, 1000)
	for i := range batch {
		batch[i] = body
	}
	for n > 0 {
		k := min(n, len(batch))
		if err := s.d.Publish("bench", batch[:k], 0); err != nil {
			b.Fatal(err)
		}
		n -= k
	}
	return s
}

func BenchmarkConsumer(b *testing.B) {
	s := benchBacklog(b, b.N)
	var handled atomic.Int64
	done := make(chan struct{})
	want := int64(b.N)
	h := nsq.HandlerFunc(func(m *nsq.Message) error {
		if handled.Add(1) == want {
			close(done)
		}
		return nil
	})
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = benchMaxInFlight
	c, err := nsq.NewConsumer("bench", "ch", h, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchBodySize)
	b.ReportAllocs()
	b.ResetTimer()
	if err := c.ConnectToNSQD(context.Background(), s.tcpAddr()); err != nil {
		b.Fatal(err)
	}
	waitBench(b, done)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkGoNSQConsumer(b *testing.B) {
	s := benchBacklog(b, b.N)
	var handled atomic.Int64
	done := make(chan struct{})
	want := int64(b.N)
	cfg := gonsq.NewConfig()
	cfg.MaxInFlight = benchMaxInFlight
	c, err := gonsq.NewConsumer("bench", "ch", cfg)
	if err != nil {
		b.Fatal(err)
	}
	c.SetLogger(log.New(testWriter{b}, "", 0), gonsq.LogLevelWarning)
	c.AddHandler(gonsq.HandlerFunc(func(m *gonsq.Message) error {
		if handled.Add(1) == want {
			close(done)
		}
		return nil
	}))
	b.SetBytes(benchBodySize)
	b.ReportAllocs()
	b.ResetTimer()
	if err := c.ConnectToNSQD(s.tcpAddr()); err != nil {
		b.Fatal(err)
	}
	waitBench(b, done)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	c.Stop()
	<-c.StopChan
}

func waitBench(b *testing.B, done chan struct{}) {
	b.Helper()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		b.Fatal("backlog not consumed within 2 minutes")
	}
}
