// Package tail is nsq_tail: it consumes one or more topics and writes every message body to
// its output, one a line, optionally prefixed with the topic ("topic | body"), until it is
// stopped or, with --n, until it has shown that many messages of any one topic: as in NSQ,
// each topic's messages are counted on their own.
//
// There is one Consumer per topic, all on the same channel (by default a fresh ephemeral
// one, "tail<6 digits>#ephemeral", as NSQ names it). Their handlers write through one mutex,
// so that lines never interleave.
//
// With --n, the handler that shows the n-th message of its topic ends the run. Before anything else,
// still holding the mutex, it sets every consumer's max in flight to 0, so that nsqd sends
// nothing more; the messages already sent are requeued, unshown and unfinished, with a
// short delay and without backoff, and the consumers are stopped. On a durable channel
// nothing beyond the n is consumed: requeued at once to a consumer that still had RDY,
// a message would come straight back, again and again, until the consumer gave up on it
// after max_attempts and finished it unseen.
package tail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/ternmq/tern/internal/tools/toolflag"
	"github.com/ternmq/tern/nsq"
)

// Name is the tool's name, as NSQ spells it.
const Name = "nsq_tail"

// requeueDelay is how long a message that arrives once the run is over (--n reached, or
// the output failed) waits on its channel before nsqd offers it again. Max in flight is 0
// by then on every consumer, ahead of the requeue on the same connection, so nsqd would
// not send the message back to this tail anyway; the delay is for a message whose REQ
// reaches nsqd before its connection's RDY 0 all the same, which would otherwise bounce
// straight back.
const requeueDelay = time.Second

// Options are nsq_tail's settings, one per NSQ flag.
type Options struct {
	// Topics are the topics to tail (--topic, repeatable).
	Topics []string
	// Channel is the channel to consume through; empty means a random ephemeral one
	// (--channel).
	Channel string
	// MaxInFlight is how many messages may be in flight per topic (--max-in-flight).
	MaxInFlight int
	// N is how many messages of one topic to show before exiting: the tail exits once any
	// topic has shown N, as NSQ's does; 0 means no limit (--n).
	N int
	// PrintTopic prefixes each message with "<topic> | " (--print-topic).
	PrintTopic bool
	// Source is where to consume from (--nsqd-tcp-address, --lookupd-http-address).
	Source toolflag.Source
	// ConsumerOpts are go-nsq "key,value" options for the consumers (--consumer-opt).
	ConsumerOpts []string
}

// NewOptions returns NSQ's defaults.
func NewOptions() *Options {
	return &Options{MaxInFlight: 200}
}

// Validate reports every problem with o at once.
func (o *Options) Validate() error {
	errs := []error{o.Source.Validate(), toolflag.CheckTopics("topic", o.Topics), toolflag.CheckMaxInFlight(o.MaxInFlight)}
	if o.Channel != "" {
		errs = append(errs, toolflag.CheckChannel("channel", o.Channel))
	}
	if o.N < 0 {
		errs = append(errs, fmt.Errorf("--n %d: want 0 (no limit) or more", o.N))
	}
	_, err := toolflag.ConsumerConfig(Name, o.ConsumerOpts, o.maxInFlight())
	return errors.Join(append(errs, err)...)
}

// maxInFlight is --max-in-flight, but no more than --n: there is no point asking for more
// messages than will be shown.
func (o *Options) maxInFlight() int {
	if o.N > 0 && o.N < o.MaxInFlight {
		return o.N
	}
	return o.MaxInFlight
}

// Tail is a configured nsq_tail.
type Tail struct {
	opts      Options
	channel   string
	logger    *slog.Logger
	consumers []*nsq.Consumer

	// mu guards out, over, err and each handler's count. It is taken before a consumer's
	// own lock (endLocked changes max in flight under it), never after.
	mu   sync.Mutex
	out  io.Writer
	over bool // a topic's N messages are shown or a write failed: show nothing more
	err  error
	done chan struct{} // closed when over is set
}

// New returns a Tail writing to out. It does not connect: Run does.
func New(o *Options, logger *slog.Logger, out io.Writer) (*Tail, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	t := &Tail{opts: *o, channel: o.Channel, logger: logger, out: out, done: make(chan struct{})}
	if t.channel == "" {
		t.channel = fmt.Sprintf("tail%06d#ephemeral", rand.IntN(999999))
	}
	cfg, _ := toolflag.ConsumerConfig(Name, o.ConsumerOpts, o.maxInFlight())
	cfg.Logger = logger // a message given up on after max_attempts is logged
	for _, topic := range o.Topics {
		c, err := nsq.NewConsumer(topic, t.channel, t.handler(topic), cfg)
		if err != nil {
			return nil, fmt.Errorf("consumer of %s: %w", topic, err)
		}
		t.consumers = append(t.consumers, c)
	}
	return t, nil
}

// Channel returns the channel Tail consumes through.
func (t *Tail) Channel() string { return t.channel }

// Run tails until ctx ends or, with --n, the last message is shown; then it stops the
// consumers, letting them finish what they hold.
func (t *Tail) Run(ctx context.Context) error {
	defer t.stop()
	for i, c := range t.consumers {
		select {
		case <-t.done:
			continue // over already: the others would only be paused
		default:
		}
		t.logger.Info("adding consumer", "topic", t.opts.Topics[i], "channel", t.channel)
		if err := t.opts.Source.Connect(ctx, c); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	select {
	case <-ctx.Done():
	case <-t.done:
	}
	t.stop()
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// stop drains the consumers, all at once, within toolflag.DrainTimeout. It may be called
// more than once.
func (t *Tail) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), toolflag.DrainTimeout)
	defer cancel()
	toolflag.StopConsumers(ctx, t.logger, t.consumers...)
}

// handler shows the messages of topic, counting them, as NSQ's handler of each topic does.
func (t *Tail) handler(topic string) nsq.Handler {
	var prefix []byte
	if t.opts.PrintTopic {
		prefix = []byte(topic + " | ")
	}
	shown := 0 // guarded by t.mu
	return nsq.HandlerFunc(func(m *nsq.Message) error {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.over {
			// Beyond what is to be shown: back to the channel, without slowing the
			// others.
			m.RequeueWithoutBackoff(requeueDelay)
			return nil
		}
		line := make([]byte, 0, len(prefix)+len(m.Body)+1)
		line = append(append(append(line, prefix...), m.Body...), '\n')
		if _, err := t.out.Write(line); err != nil {
			t.err = fmt.Errorf("write output: %w", err)
			t.endLocked()
			m.RequeueWithoutBackoff(requeueDelay)
			return nil
		}
		shown++
		if shown == t.opts.N {
			t.endLocked()
		}
		return nil
	})
}

// endLocked ends the run: first every consumer's max in flight goes to 0, so that nsqd
// sends nothing more while the handlers requeue what it already sent, then Run is woken
// to stop the consumers. t.mu is held, so that no handler requeues a message before its
// connection's RDY 0 is on its way.
func (t *Tail) endLocked() {
	t.over = true
	for _, c := range t.consumers {
		// A consumer already stopping sends nothing more either.
		_ = c.ChangeMaxInFlight(0)
	}
	close(t.done)
}
