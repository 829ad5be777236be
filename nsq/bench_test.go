package nsq_test

import (
	"context"
	"log"
	"testing"

	gonsq "github.com/nsqio/go-nsq"

	"github.com/ternmq/tern/nsq"
)

// The two benchmarks publish the same load to the same kind of nsqd: 100-byte messages,
// synchronous publishes from 8 goroutines (4 per CPU on the 2-CPU machine the figures in
// the package's notes come from; set -cpu to change it). They report messages per second.

const (
	benchBodySize    = 100
	benchParallelism = 4
)

func BenchmarkProducer(b *testing.B) {
	s := startNSQD(b, nil)
	cfg := nsq.NewConfig()
	cfg.Logger = nil
	p, err := nsq.NewProducer(s.tcpAddr(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Stop)
	ctx := context.Background()
	body := make([]byte, benchBodySize)
	if err := p.Ping(ctx); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchBodySize)
	b.SetParallelism(benchParallelism)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := p.Publish(ctx, "bench", body); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func BenchmarkGoNSQProducer(b *testing.B) {
	s := startNSQD(b, nil)
	p, err := gonsq.NewProducer(s.tcpAddr(), gonsq.NewConfig())
	if err != nil {
		b.Fatal(err)
	}
	p.SetLogger(log.New(testWriter{b}, "", 0), gonsq.LogLevelWarning)
	b.Cleanup(p.Stop)
	body := make([]byte, benchBodySize)
	if err := p.Ping(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchBodySize)
	b.SetParallelism(benchParallelism)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := p.Publish("bench", body); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
