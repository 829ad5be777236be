// Command nsqlatency measures publish-to-delivery latency on an nsqd (Tern's or NSQ's) at a
// fixed publish rate, with consumers that identify as go-nsq does by default.
//
// One connection publishes --rate messages per second for --duration (PUB, pipelined, paced
// every millisecond); each body starts with its send time. --consumers connections subscribe
// one channel with go-nsq's defaults (output_buffer_timeout 250 ms, output_buffer_size 16 KiB,
// heartbeat_interval 30 s) and RDY --rdy (go-nsq's MaxInFlight: 1 by default; consumers that
// want throughput raise it), and answer every message with FIN at once.
// The latency of a message is its arrival at a consumer less its send time; the first
// --warmup is left out. The result is one line:
//
//	rate 1000/s, 1 consumer, RDY 1: p50 0.21ms p99 0.45ms p99.9 1.20ms max 3.05ms (9000 messages)
//
// The load is the (nsqio/nsq output buffering): a server that holds a message for
// its output buffer's timer, though it has nothing else to send, shows it at p50.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/wiretest"
)

type config struct {
	addr             string
	topic, channel   string
	rate, consumers  int
	rdy              int
	size             int
	duration, warmup time.Duration
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(runMain(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cfg config
	fs := flag.NewFlagSet("nsqlatency", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.addr, "nsqd-tcp-address", "127.0.0.1:4150", "nsqd to measure")
	fs.StringVar(&cfg.topic, "topic", "latency", "topic to publish to")
	fs.StringVar(&cfg.channel, "channel", "ch", "channel the consumers share")
	fs.IntVar(&cfg.rate, "rate", 1000, "messages per second")
	fs.IntVar(&cfg.consumers, "consumers", 1, "consuming connections")
	fs.IntVar(&cfg.rdy, "rdy", 1, "each consumer's RDY (go-nsq's MaxInFlight, 1 by default)")
	fs.IntVar(&cfg.size, "size", 100, "message size in bytes (at least 8, for the send time)")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long to publish")
	fs.DurationVar(&cfg.warmup, "warmup", time.Second, "latencies of the first messages, for this long, are left out")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if cfg.rate < 1 || cfg.consumers < 1 || cfg.rdy < 1 || cfg.size < 8 || cfg.duration <= cfg.warmup {
		fmt.Fprintln(stderr, "nsqlatency: --rate and --consumers must be positive, --size at least 8, --duration longer than --warmup")
		return 2
	}
	res, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "nsqlatency:", err)
		return 1
	}
	fmt.Fprintln(stdout, res)
	return 0
}

// result is the latencies measured, sorted, and how long the run took from the first
// publish to the last delivery.
type result struct {
	cfg       config
	latencies []time.Duration
	total     int
	elapsed   time.Duration
}

func (r result) String() string {
	if len(r.latencies) == 0 {
		return "no message measured"
	}
	pct := func(p float64) string {
		i := min(int(p*float64(len(r.latencies))), len(r.latencies)-1)
		return ms(r.latencies[i])
	}
	plural := "s"
	if r.cfg.consumers == 1 {
		plural = ""
	}
	// A rate above what the daemon and the consumers sustain shows as a lower delivered rate:
	// that is how the maximum is found (bench/latency.sh --levels).
	return fmt.Sprintf("rate %d/s, %d consumer%s, RDY %d: p50 %s p99 %s p99.9 %s max %s (%d messages, delivered %.0f/s)",
		r.cfg.rate, r.cfg.consumers, plural, r.cfg.rdy, pct(0.5), pct(0.99), pct(0.999), ms(r.latencies[len(r.latencies)-1]), len(r.latencies),
		float64(r.total)/r.elapsed.Seconds())
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

// goNSQDefaults is what go-nsq's default Config sends in IDENTIFY.
const goNSQDefaults = `"heartbeat_interval":30000,"output_buffer_size":16384,"output_buffer_timeout":250,"user_agent":"nsqlatency (go-nsq defaults)"`

func run(ctx context.Context, cfg config) (result, error) {
	res := result{cfg: cfg}
	start := time.Now()
	measureFrom := start.Add(cfg.warmup).UnixNano()
	total := int(int64(cfg.rate) * int64(cfg.duration) / int64(time.Second))
	res.total = total

	// The channel exists before the first publish, so that every message reaches it.
	subs := make([]*wiretest.Conn, cfg.consumers)
	for i := range subs {
		c, err := wiretest.Dial(cfg.addr)
		if err != nil {
			return res, err
		}
		defer c.Close()
		c.Timeout, c.AnswerHeartbeats = cfg.duration+30*time.Second, true
		if _, err := c.Identify(goNSQDefaults); err != nil {
			return res, err
		}
		if err := c.Subscribe(cfg.topic, cfg.channel, cfg.rdy); err != nil {
			return res, err
		}
		subs[i] = c
	}

	var (
		mu       sync.Mutex
		received int
		done     = make(chan struct{})
		wg       sync.WaitGroup
		errs     = make(chan error, cfg.consumers+2)
	)
	for _, c := range subs {
		wg.Go(func() {
			var lat []time.Duration
			defer func() {
				mu.Lock()
				res.latencies = append(res.latencies, lat...)
				mu.Unlock()
			}()
			for {
				ft, data, err := c.Next()
				now := time.Now().UnixNano()
				if err != nil {
					select {
					case <-done:
					default:
						errs <- fmt.Errorf("consumer: %w", err)
					}
					return
				}
				if ft != protocol.FrameTypeMessage {
					errs <- fmt.Errorf("consumer got %s frame %q", ft, data)
					return
				}
				_, _, id, body, err := protocol.DecodeMessage(data)
				if err != nil || len(body) < 8 {
					errs <- fmt.Errorf("consumer: bad message: %v", err)
					return
				}
				if sent := int64(binary.BigEndian.Uint64(body)); sent >= measureFrom {
					lat = append(lat, time.Duration(now-sent))
				}
				if err := c.Send(protocol.Finish(id)); err != nil {
					errs <- fmt.Errorf("consumer: %w", err)
					return
				}
				mu.Lock()
				received++
				last := received == total
				if last {
					res.elapsed = time.Since(start)
				}
				mu.Unlock()
				if last {
					close(done)
				}
			}
		})
	}

	pub, err := wiretest.Dial(cfg.addr)
	if err != nil {
		return res, err
	}
	defer pub.Close()
	pub.Timeout = cfg.duration + 30*time.Second
	if _, err := pub.Identify(""); err != nil {
		return res, err
	}
	wg.Go(func() { // the publisher's answers, read as they come
		for range total {
			if err := pub.ExpectResponse(protocol.OK); err != nil {
				errs <- fmt.Errorf("publisher: %w", err)
				return
			}
		}
	})
	body := make([]byte, cfg.size)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for sent := 0; sent < total; {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case err := <-errs:
			return res, err
		case <-tick.C:
		}
		due := min(total, int(time.Since(start)*time.Duration(cfg.rate)/time.Second))
		var wire []byte
		for ; sent < due; sent++ {
			binary.BigEndian.PutUint64(body, uint64(time.Now().UnixNano()))
			wire = protocol.Publish(cfg.topic, body).AppendTo(wire)
		}
		if len(wire) > 0 {
			if err := pub.Write(wire); err != nil {
				return res, fmt.Errorf("publisher: %w", err)
			}
		}
	}
	select {
	case <-done:
	case err := <-errs:
		return res, err
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(30 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		return res, fmt.Errorf("only %d of %d messages arrived", received, total)
	}
	for _, c := range subs {
		_ = c.Close()
	}
	_ = pub.Close()
	wg.Wait()
	slices.Sort(res.latencies)
	return res, nil
}
