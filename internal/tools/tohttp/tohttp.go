// Package tohttp is nsq_to_http: it consumes a topic and makes an HTTP request per message
// to one or more endpoints, and finishes the message only once the request succeeded (a
// 200 for --get, any 2xx for --post); a failed request requeues the message, with the
// consumer's backoff.
//
// --post sends the body with --content-type; --get replaces the one "%s" of its URL with
// the body, query-escaped. With several endpoints, --mode picks one per message
// (round-robin, hostpool, epsilon-greedy: package upstream), or, with multicast, sends
// every message to every endpoint in turn: a failure at any requeues the message, which
// is then sent to all of them again. --n handlers make requests at once, and --sample
// passes only that fraction of the messages (the rest are finished unsent).
package tohttp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ternmq/tern/internal/tools/toolflag"
	"github.com/ternmq/tern/internal/tools/upstream"
	"github.com/ternmq/tern/internal/version"
	"github.com/ternmq/tern/nsq"
)

// Name is the tool's name, as NSQ spells it.
const Name = "nsq_to_http"

// DefaultContentType is --content-type's default.
const DefaultContentType = "application/octet-stream"

// Options are nsq_to_http's settings, one per NSQ flag.
type Options struct {
	// Topic and Channel are what to consume (--topic, --channel).
	Topic   string
	Channel string
	// MaxInFlight is how many messages may be in flight (--max-in-flight).
	MaxInFlight int
	// NumPublishers is how many requests may be made at once (--n).
	NumPublishers int
	// Mode picks the endpoint of a message: round-robin, hostpool, epsilon-greedy or
	// multicast (--mode).
	Mode string
	// Sample is the fraction, 0..1, of messages sent; the others are finished (--sample).
	Sample float64
	// HTTPClientConnectTimeout and HTTPClientRequestTimeout bound each request
	// (--http-client-connect-timeout, --http-client-request-timeout).
	HTTPClientConnectTimeout time.Duration
	HTTPClientRequestTimeout time.Duration
	// StatusEvery is how many requests apart response times are logged; 0 never
	// (--status-every).
	StatusEvery int
	// ContentType is the Content-Type of POSTs (--content-type).
	ContentType string
	// Post and Get are the endpoints: URLs to POST the body to, or to GET with the body in
	// place of "%s"; one kind only (--post, --get).
	Post []string
	Get  []string
	// Headers are "Key: value" headers added to every request; Host sets the request's
	// host, and Content-Length, Transfer-Encoding and Trailer are refused (--header).
	Headers []string
	// Source is where to consume from (--nsqd-tcp-address, --lookupd-http-address).
	Source toolflag.Source
	// ConsumerOpts are go-nsq "key,value" options for the consumer (--consumer-opt).
	ConsumerOpts []string
}

// NewOptions returns NSQ's defaults.
func NewOptions() *Options {
	return &Options{
		Channel:                  "nsq_to_http",
		MaxInFlight:              200,
		NumPublishers:            100,
		Mode:                     "hostpool",
		Sample:                   1,
		HTTPClientConnectTimeout: 2 * time.Second,
		HTTPClientRequestTimeout: 20 * time.Second,
		StatusEvery:              250,
		ContentType:              DefaultContentType,
	}
}

// Validate reports every problem with o at once, in NSQ's words where NSQ has them.
func (o *Options) Validate() error {
	errs := []error{o.Source.Validate(), toolflag.CheckMaxInFlight(o.MaxInFlight)}
	if _, err := parseHeaders(o.Headers); err != nil {
		errs = append(errs, err)
	}
	if o.Topic == "" || o.Channel == "" {
		errs = append(errs, errors.New("--topic and --channel are required"))
	} else {
		errs = append(errs, toolflag.CheckTopics("topic", []string{o.Topic}), toolflag.CheckChannel("channel", o.Channel))
	}
	if o.ContentType != DefaultContentType {
		if len(o.Post) == 0 {
			errs = append(errs, errors.New("--content-type only used with --post"))
		}
		if o.ContentType == "" {
			errs = append(errs, errors.New("--content-type requires a value when used"))
		}
	}
	switch {
	case len(o.Get) == 0 && len(o.Post) == 0:
		errs = append(errs, errors.New("--get or --post required"))
	case len(o.Get) > 0 && len(o.Post) > 0:
		errs = append(errs, errors.New("use --get or --post not both"))
	}
	for _, g := range o.Get {
		if strings.Count(g, "%s") != 1 {
			errs = append(errs, fmt.Errorf("invalid GET address %q - must be a printf string (one %%s)", g))
		}
	}
	for _, a := range append(append([]string{}, o.Get...), o.Post...) {
		if u, err := url.Parse(strings.Replace(a, "%s", "x", 1)); err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			errs = append(errs, fmt.Errorf("endpoint %q: want an http:// or https:// URL", a))
		}
	}
	if _, err := upstream.ParseMode(o.Mode, true); err != nil {
		errs = append(errs, err)
	}
	if o.Sample > 1 || o.Sample < 0 {
		errs = append(errs, errors.New("--sample must be between 0.0 and 1.0"))
	}
	if o.NumPublishers < 1 {
		errs = append(errs, fmt.Errorf("--n %d: want 1 or more", o.NumPublishers))
	}
	if o.HTTPClientConnectTimeout <= 0 {
		errs = append(errs, errors.New("--http-client-connect-timeout should be positive"))
	}
	if o.HTTPClientRequestTimeout <= 0 {
		errs = append(errs, errors.New("--http-client-request-timeout should be positive"))
	}
	if o.StatusEvery < 0 {
		errs = append(errs, errors.New("--status-every should not be negative"))
	}
	_, err := toolflag.ConsumerConfig(Name, o.ConsumerOpts, o.MaxInFlight)
	return errors.Join(append(errs, err)...)
}

// requestHeaders are --header's: Host names the request's host, the others are header
// fields.
type requestHeaders struct {
	fields http.Header
	host   string // empty: the endpoint URL's
}

// parseHeaders parses "Key: value" headers; both parts must be there. Host is taken apart:
// Go's client sends req.Host, never a Host field. Content-Length, Transfer-Encoding and
// Trailer are refused: the client frames the body itself and would drop them.
func parseHeaders(hs []string) (requestHeaders, error) {
	h := requestHeaders{fields: http.Header{}}
	var errs []error
	for _, s := range hs {
		k, v, ok := strings.Cut(s, ":")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			errs = append(errs, fmt.Errorf("--header %q: want 'Key: value'", s))
			continue
		}
		switch k = http.CanonicalHeaderKey(k); k {
		case "Host":
			h.host = v
		case "Content-Length", "Transfer-Encoding", "Trailer":
			errs = append(errs, fmt.Errorf("--header %q: %s is not supported: the HTTP client frames each request's body itself", s, k))
		default:
			h.fields.Set(k, v)
		}
	}
	return h, errors.Join(errs...)
}

// ToHTTP is a configured nsq_to_http.
type ToHTTP struct {
	opts      Options
	logger    *slog.Logger
	client    *http.Client
	headers   requestHeaders
	endpoints []string
	get       bool
	pool      *upstream.Pool
	perAddr   []*upstream.Timings
	aggregate *upstream.Timings
	consumer  *nsq.Consumer
}

// New returns a ToHTTP. It does not connect: Run does.
func New(o *Options, logger *slog.Logger) (*ToHTTP, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	mode, _ := upstream.ParseMode(o.Mode, true)
	headers, _ := parseHeaders(o.Headers)
	t := &ToHTTP{
		opts:      *o,
		logger:    logger,
		client:    toolflag.HTTPClient(o.HTTPClientConnectTimeout, o.HTTPClientRequestTimeout),
		headers:   headers,
		endpoints: o.Post,
		aggregate: upstream.NewTimings(o.StatusEvery, "[aggregate]:", logger),
	}
	if len(o.Get) > 0 {
		t.endpoints, t.get = o.Get, true
	}
	t.pool = upstream.NewPool(mode, len(t.endpoints))
	for _, e := range t.endpoints {
		every := o.StatusEvery
		if len(t.endpoints) == 1 {
			every = 0 // the aggregate says it all
		}
		t.perAddr = append(t.perAddr, upstream.NewTimings(every, "["+e+"]:", logger))
	}
	cfg, _ := toolflag.ConsumerConfig(Name, o.ConsumerOpts, o.MaxInFlight)
	cfg.Logger = logger
	cfg.HandlerConcurrency = o.NumPublishers
	c, err := nsq.NewConsumer(o.Topic, o.Channel, nsq.HandlerFunc(t.handle), cfg)
	if err != nil {
		return nil, err
	}
	t.consumer = c
	return t, nil
}

// Run consumes until ctx ends, then stops the consumer, letting the requests in progress
// finish (and their messages be finished or requeued).
func (t *ToHTTP) Run(ctx context.Context) error {
	defer t.client.CloseIdleConnections()
	err := t.opts.Source.Connect(ctx, t.consumer)
	if err == nil {
		<-ctx.Done()
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), toolflag.DrainTimeout)
	defer cancel()
	if serr := t.consumer.Stop(stopCtx); serr != nil {
		t.logger.Warn("consumer did not drain", "error", serr)
	}
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// handle sends m to its endpoints; an error requeues it.
func (t *ToHTTP) handle(m *nsq.Message) error {
	if t.opts.Sample < 1 && rand.Float64() > t.opts.Sample {
		return nil
	}
	start := time.Now()
	for _, i := range t.pool.Pick() {
		st := time.Now()
		err := t.send(t.endpoints[i], m.Body)
		took := time.Since(st)
		t.pool.Mark(i, err, took)
		if err != nil {
			t.logger.Warn("request failed", "endpoint", t.endpoints[i], "error", err)
			return err
		}
		t.perAddr[i].Add(took)
	}
	t.aggregate.Add(time.Since(start))
	return nil
}

// send makes one request with body.
func (t *ToHTTP) send(endpoint string, body []byte) error {
	var req *http.Request
	var err error
	if t.get {
		req, err = http.NewRequest(http.MethodGet, strings.Replace(endpoint, "%s", url.QueryEscape(string(body)), 1), nil)
	} else {
		req, err = http.NewRequest(http.MethodPost, endpoint, bytes.NewReader(body))
		if req != nil {
			req.Header.Set("Content-Type", t.opts.ContentType)
		}
	}
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", fmt.Sprintf("%s v%s", Name, version.Binary))
	for k, v := range t.headers.fields {
		req.Header[k] = v
	}
	if t.headers.host != "" {
		req.Host = t.headers.host
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	if t.get {
		ok = resp.StatusCode == http.StatusOK
	}
	if !ok {
		return fmt.Errorf("got status code %d", resp.StatusCode)
	}
	return nil
}
