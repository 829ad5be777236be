// Package tonsq is nsq_to_nsq: it consumes topics and publishes their messages to a topic
// (the same, or --destination-topic) on other nsqds, finishing each message only once the
// destination has acknowledged it; a failed publish requeues the message, with the
// consumer's backoff.
//
// --mode picks the destination nsqd of each message (package upstream). Each message is
// published synchronously, with a deadline, by one of the consumer's handlers; there are
// --max-in-flight of them, and Tern's Producer pipelines their publishes on one connection
// per nsqd, so the deadline is what lets hostpool turn away from an nsqd that stopped
// answering, where NSQ's asynchronous publish waits.
//
// For JSON messages, --require-json-field passes only messages that have the field, and
// --require-json-value only those in which it has that value (compared as a string, or as
// a number when the value parses as one); --whitelist-json-field keeps only the listed
// fields. A message that is not JSON is finished and dropped, as NSQ does; one missing the
// field when a value is required is requeued.
package tonsq

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/ternmq/tern/internal/tools/toolflag"
	"github.com/ternmq/tern/internal/tools/upstream"
	"github.com/ternmq/tern/nsq"
)

// Name is the tool's name, as NSQ spells it.
const Name = "nsq_to_nsq"

// publishTimeout bounds one publish to a destination nsqd.
const publishTimeout = 10 * time.Second

// Options are nsq_to_nsq's settings, one per NSQ flag.
type Options struct {
	// Topics are the topics to consume (--topic, repeatable).
	Topics []string
	// Channel is the channel to consume through (--channel).
	Channel string
	// DestinationTopic is the topic published to; empty means each consumed topic's own
	// name (--destination-topic).
	DestinationTopic string
	// MaxInFlight is how many messages may be in flight per topic (--max-in-flight).
	MaxInFlight int
	// StatusEvery is how many publishes apart response times are logged; 0 never
	// (--status-every).
	StatusEvery int
	// Mode picks the destination of a message: round-robin, hostpool or epsilon-greedy
	// (--mode).
	Mode string
	// Source is where to consume from (--nsqd-tcp-address, --lookupd-http-address).
	Source toolflag.Source
	// DestNSQDTCPAddrs are the nsqds to publish to (--destination-nsqd-tcp-address).
	DestNSQDTCPAddrs []string
	// WhitelistJSONFields are the fields kept of JSON messages (--whitelist-json-field).
	WhitelistJSONFields []string
	// RequireJSONField and RequireJSONValue filter JSON messages (--require-json-field,
	// --require-json-value).
	RequireJSONField string
	RequireJSONValue string
	// ConsumerOpts and ProducerOpts are go-nsq "key,value" options (--consumer-opt,
	// --producer-opt).
	ConsumerOpts []string
	ProducerOpts []string
}

// NewOptions returns NSQ's defaults.
func NewOptions() *Options {
	return &Options{Channel: "nsq_to_nsq", MaxInFlight: 200, StatusEvery: 250, Mode: "hostpool"}
}

// Validate reports every problem with o at once, in NSQ's words where NSQ has them.
func (o *Options) Validate() error {
	errs := []error{o.Source.Validate(), toolflag.CheckMaxInFlight(o.MaxInFlight)}
	if len(o.Topics) == 0 || o.Channel == "" {
		errs = append(errs, errors.New("--topic and --channel are required"))
	} else {
		errs = append(errs, toolflag.CheckTopics("topic", o.Topics), toolflag.CheckChannel("channel", o.Channel))
	}
	if o.DestinationTopic != "" {
		errs = append(errs, toolflag.CheckTopics("destination-topic", []string{o.DestinationTopic}))
	}
	if len(o.DestNSQDTCPAddrs) == 0 {
		errs = append(errs, errors.New("--destination-nsqd-tcp-address required"))
	}
	if _, err := upstream.ParseMode(o.Mode, false); err != nil {
		errs = append(errs, err)
	}
	if o.RequireJSONValue != "" && o.RequireJSONField == "" {
		errs = append(errs, errors.New("--require-json-value needs --require-json-field"))
	}
	if o.StatusEvery < 0 {
		errs = append(errs, errors.New("--status-every should not be negative"))
	}
	_, cerr := toolflag.ConsumerConfig(Name, o.ConsumerOpts, o.MaxInFlight)
	_, perr := toolflag.ProducerConfig(Name, o.ProducerOpts)
	return errors.Join(append(errs, cerr, perr)...)
}

// ToNSQ is a configured nsq_to_nsq.
type ToNSQ struct {
	opts      Options
	logger    *slog.Logger
	consumers []*nsq.Consumer
	producers []*nsq.Producer
	pool      *upstream.Pool
	perAddr   []*upstream.Timings
	aggregate *upstream.Timings
	filter    *filter
	// publishTimeout bounds one publish; tests shorten it.
	publishTimeout time.Duration
}

// New returns a ToNSQ. It does not connect: Run does.
func New(o *Options, logger *slog.Logger) (*ToNSQ, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	mode, _ := upstream.ParseMode(o.Mode, false)
	t := &ToNSQ{
		opts:      *o,
		logger:    logger,
		pool:      upstream.NewPool(mode, len(o.DestNSQDTCPAddrs)),
		aggregate: upstream.NewTimings(o.StatusEvery, "[aggregate]:", logger),
		filter:    newFilter(o),

		publishTimeout: publishTimeout,
	}
	pcfg, _ := toolflag.ProducerConfig(Name, o.ProducerOpts)
	pcfg.Logger = logger
	for _, addr := range o.DestNSQDTCPAddrs {
		p, err := nsq.NewProducer(addr, pcfg)
		if err != nil {
			t.stopProducers()
			return nil, fmt.Errorf("producer for %s: %w", addr, err)
		}
		t.producers = append(t.producers, p)
		every := o.StatusEvery
		if len(o.DestNSQDTCPAddrs) == 1 {
			every = 0 // the aggregate says it all
		}
		t.perAddr = append(t.perAddr, upstream.NewTimings(every, "["+addr+"]:", logger))
	}
	ccfg, _ := toolflag.ConsumerConfig(Name, o.ConsumerOpts, o.MaxInFlight)
	ccfg.Logger = logger
	ccfg.HandlerConcurrency = o.MaxInFlight
	for _, topic := range o.Topics {
		dest := topic
		if o.DestinationTopic != "" {
			dest = o.DestinationTopic
		}
		c, err := nsq.NewConsumer(topic, o.Channel, nsq.HandlerFunc(func(m *nsq.Message) error { return t.handle(m, dest) }), ccfg)
		if err != nil {
			t.stopProducers()
			return nil, fmt.Errorf("consumer of %s: %w", topic, err)
		}
		t.consumers = append(t.consumers, c)
	}
	return t, nil
}

// Run copies until ctx ends, then stops the consumers, all at once, letting the publishes in
// progress complete (and their messages be finished or requeued), and then the producers.
func (t *ToNSQ) Run(ctx context.Context) error {
	var err error
	for _, c := range t.consumers {
		if err = t.opts.Source.Connect(ctx, c); err != nil {
			break
		}
	}
	if err == nil {
		<-ctx.Done()
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), toolflag.DrainTimeout)
	defer cancel()
	toolflag.StopConsumers(stopCtx, t.logger, t.consumers...)
	t.stopProducers()
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

func (t *ToNSQ) stopProducers() {
	for _, p := range t.producers {
		p.Stop()
	}
}

// handle publishes m to topic on one destination; an error requeues it.
func (t *ToNSQ) handle(m *nsq.Message, topic string) error {
	body, pass, err := t.filter.apply(m.Body)
	if err != nil || !pass {
		return err
	}
	i := t.pool.Pick()[0]
	ctx, cancel := context.WithTimeout(context.Background(), t.publishTimeout)
	defer cancel()
	start := time.Now()
	err = t.producers[i].Publish(ctx, topic, body)
	took := time.Since(start)
	t.pool.Mark(i, err, took)
	if err != nil {
		t.logger.Warn("publish failed", "destination", t.producers[i].String(), "topic", topic, "error", err)
		return err
	}
	t.perAddr[i].Add(took)
	t.aggregate.Add(took)
	return nil
}

// filter is the JSON filtering of --require-json-field, --require-json-value and
// --whitelist-json-field.
type filter struct {
	field     string
	value     string
	number    float64
	isNumber  bool
	whitelist []string
}

func newFilter(o *Options) *filter {
	f := &filter{field: o.RequireJSONField, value: o.RequireJSONValue, whitelist: o.WhitelistJSONFields}
	if n, err := strconv.ParseFloat(f.value, 64); err == nil {
		f.number, f.isNumber = n, true
	}
	return f
}

// errMissingField requeues a message missing the field whose value is required, as NSQ
// does.
var errMissingField = errors.New("missing field to check required value")

// apply returns the body to publish and whether to publish it at all; an error requeues
// the message.
func (f *filter) apply(body []byte) ([]byte, bool, error) {
	if f.field == "" && len(f.whitelist) == 0 {
		return body, true, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return nil, false, nil // not JSON: dropped, as NSQ drops it
	}
	if f.field != "" {
		raw, ok := obj[f.field]
		if !ok {
			if f.value != "" {
				return nil, false, errMissingField
			}
			return nil, false, nil
		}
		if f.value != "" && !f.matches(raw) {
			return nil, false, nil
		}
	}
	if len(f.whitelist) == 0 {
		return body, true, nil
	}
	kept := make(map[string]json.RawMessage, len(f.whitelist))
	for _, k := range f.whitelist {
		if v, ok := obj[k]; ok {
			kept[k] = v
		}
	}
	out, err := json.Marshal(kept)
	if err != nil {
		return nil, false, fmt.Errorf("unable to marshal filtered message: %w", err)
	}
	return out, true, nil
}

// matches compares a JSON value with --require-json-value: a string as a string, a number
// as a number when the required value is one; anything else never matches.
func (f *filter) matches(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s == f.value
	}
	var n float64
	if f.isNumber && json.Unmarshal(raw, &n) == nil {
		return n == f.number
	}
	return false
}
