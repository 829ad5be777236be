// Package publish is to_nsq: it reads records from its input, split by a one-byte delimiter,
// and publishes each to a topic on every nsqd it is given, at most --rate a second.
//
// Run reads on a goroutine of its own (a read from stdin cannot be interrupted) and
// publishes asynchronously through Tern's pipelining Producer, with at most a window of
// publishes unanswered per nsqd, so that the input is read no faster than nsqd takes it. The
// first failed publish stops the tool with an error. At the end of the input, or when its
// context ends, Run waits for the answers to what it has sent, stops the producers and
// returns.
package publish

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/ternmq/tern/internal/tools/toolflag"
	"github.com/ternmq/tern/nsq"
)

// Name is the tool's name, as NSQ spells it.
const Name = "to_nsq"

// connectTimeout bounds the first connection to each nsqd.
const connectTimeout = 5 * time.Second

// window bounds the publishes sent to one nsqd and not yet answered.
const window = 256

// Options are to_nsq's settings, one per NSQ flag.
type Options struct {
	// Topic is the topic to publish to (--topic).
	Topic string
	// Delimiter splits the input into messages; one byte (--delimiter, default "\n").
	Delimiter string
	// NSQDTCPAddrs are the nsqds every message is published to (--nsqd-tcp-address).
	NSQDTCPAddrs []string
	// ProducerOpts are go-nsq "key,value" options for the producers (--producer-opt).
	ProducerOpts []string
	// Rate caps messages a second; 0 means no cap (--rate).
	Rate int64
}

// NewOptions returns NSQ's defaults.
func NewOptions() *Options {
	return &Options{Delimiter: "\n"}
}

// Validate reports every problem with o at once.
func (o *Options) Validate() error {
	var errs []error
	if o.Topic == "" {
		errs = append(errs, errors.New("--topic required"))
	} else if err := toolflag.CheckTopics("topic", []string{o.Topic}); err != nil {
		errs = append(errs, err)
	}
	if len(o.Delimiter) != 1 {
		errs = append(errs, errors.New("--delimiter must be a single byte"))
	}
	if len(o.NSQDTCPAddrs) == 0 {
		errs = append(errs, errors.New("--nsqd-tcp-address required"))
	}
	if o.Rate < 0 {
		errs = append(errs, fmt.Errorf("--rate %d: want 0 (no limit) or more", o.Rate))
	}
	if _, err := toolflag.ProducerConfig(Name, o.ProducerOpts); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Publisher is a configured to_nsq.
type Publisher struct {
	opts      Options
	logger    *slog.Logger
	in        io.Reader
	producers []*nsq.Producer
}

// New returns a Publisher reading from in. It does not connect: Run does.
func New(o *Options, logger *slog.Logger, in io.Reader) (*Publisher, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	cfg, _ := toolflag.ProducerConfig(Name, o.ProducerOpts)
	cfg.Logger = logger
	p := &Publisher{opts: *o, logger: logger, in: in}
	for _, addr := range o.NSQDTCPAddrs {
		prod, err := nsq.NewProducer(addr, cfg)
		if err != nil {
			p.stop()
			return nil, fmt.Errorf("producer for %s: %w", addr, err)
		}
		p.producers = append(p.producers, prod)
	}
	return p, nil
}

// Run publishes the input until its end, ctx's end or a failed publish.
func (p *Publisher) Run(ctx context.Context) error {
	defer p.stop()
	for _, prod := range p.producers {
		// NSQ's to_nsq fails at once on an nsqd it cannot reach; Tern's producer would wait
		// for it for ever, so the first connection gets a deadline.
		pingCtx, cancel := context.WithTimeout(ctx, connectTimeout)
		err := prod.Ping(pingCtx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("connect to nsqd %s: %w", prod, err)
		}
	}

	records := make(chan []byte)
	readErr := make(chan error, 1)
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	go p.read(readCtx, records, readErr)

	var (
		outstanding sync.WaitGroup
		mu          sync.Mutex
		failed      error
	)
	slots := make([]chan struct{}, len(p.producers))
	for i := range slots {
		slots[i] = make(chan struct{}, window)
	}
	th := newThrottle(p.opts.Rate)
	if p.opts.Rate > 0 {
		p.logger.Info("throttling messages", "rate_per_second", p.opts.Rate)
	}
	var runErr error
loop:
	for {
		mu.Lock()
		err := failed
		mu.Unlock()
		if err != nil {
			runErr = err
			break
		}
		var rec []byte
		select {
		case <-ctx.Done():
			break loop
		case rec = <-records:
		case err := <-readErr:
			if err != nil {
				runErr = fmt.Errorf("read input: %w", err)
			}
			break loop
		}
		if err := th.wait(ctx); err != nil {
			break loop
		}
		for i, prod := range p.producers {
			select {
			case slots[i] <- struct{}{}:
			case <-ctx.Done():
				break loop
			}
			outstanding.Add(1)
			release := slots[i]
			err := prod.PublishAsync(p.opts.Topic, rec, func(err error) {
				if err != nil {
					mu.Lock()
					if failed == nil {
						failed = fmt.Errorf("publish to %s: %w", prod, err)
					}
					mu.Unlock()
				}
				<-release
				outstanding.Done()
			})
			if err != nil {
				outstanding.Done()
				<-release
				runErr = fmt.Errorf("publish to %s: %w", prod, err)
				break loop
			}
		}
	}
	stopReading()
	if !waitTimeout(&outstanding, toolflag.DrainTimeout) {
		p.logger.Warn("publishes still unanswered after the drain timeout", "timeout", toolflag.DrainTimeout)
	}
	mu.Lock()
	defer mu.Unlock()
	return errors.Join(runErr, failed)
}

// read sends the records of the input to out, then nil (end of input) or the read error to
// done. It returns early when ctx ends, except from a read in progress: a goroutine blocked
// reading stdin stays so until the process exits.
func (p *Publisher) read(ctx context.Context, out chan<- []byte, done chan<- error) {
	r := bufio.NewReaderSize(p.in, 64*1024)
	delim := p.opts.Delimiter[0]
	for {
		rec, err := r.ReadBytes(delim)
		// NSQ drops the last byte of every record; a last record without a delimiter keeps
		// all of its bytes here.
		rec = bytes.TrimSuffix(rec, []byte{delim})
		if len(rec) > 0 {
			select {
			case out <- rec:
			case <-ctx.Done():
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			done <- err
			return
		}
	}
}

func (p *Publisher) stop() {
	for _, prod := range p.producers {
		prod.Stop()
	}
}

// waitTimeout waits for wg up to d and reports whether it finished.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
