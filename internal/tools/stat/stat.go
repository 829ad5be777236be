// Package stat is nsq_stat: every --interval it reads one channel's stats from every nsqd
// that has its topic, sums them, and prints a row of NSQ's table: the ingress and egress
// rates since the previous sample, the depths, and the channel's counters, with NSQ's
// three-line header before the first row and every 25 samples after. Rates are over the
// time measured between the two samples: a /stats slower than --interval makes the ticker
// drop ticks, and the samples come further apart than --interval.
//
// The nsqds are found as NSQ's nsq_stat finds them: through the lookupds' /lookup of the
// topic, or by asking each --nsqd-http-address for the topic's stats. As in NSQ, a node or
// lookupd that fails to answer ends the tool with an error rather than print a sum that
// leaves it out.
package stat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ternmq/tern/internal/tools/toolflag"
)

// Name is the tool's name, as NSQ spells it.
const Name = "nsq_stat"

// headerEvery is how many samples apart the header is printed, as in NSQ.
const headerEvery = 25

// Options are nsq_stat's settings, one per NSQ flag.
type Options struct {
	// Topic and Channel name the channel to watch (--topic, --channel).
	Topic   string
	Channel string
	// Interval is the time between samples and rows (--interval).
	Interval time.Duration
	// Count is how many rows to print before exiting; 0 means no limit (--count).
	Count int
	// HTTPClientConnectTimeout and HTTPClientRequestTimeout bound each HTTP request
	// (--http-client-connect-timeout, --http-client-request-timeout).
	HTTPClientConnectTimeout time.Duration
	HTTPClientRequestTimeout time.Duration
	// NSQDHTTPAddrs and LookupdHTTPAddrs are where to find the nsqds, host:port without a
	// scheme (--nsqd-http-address, --lookupd-http-address; exactly one kind).
	NSQDHTTPAddrs    []string
	LookupdHTTPAddrs []string
}

// NewOptions returns NSQ's defaults.
func NewOptions() *Options {
	return &Options{Interval: 2 * time.Second, HTTPClientConnectTimeout: 2 * time.Second, HTTPClientRequestTimeout: 5 * time.Second}
}

// Validate reports every problem with o at once, in NSQ's words where NSQ has them.
func (o *Options) Validate() error {
	var errs []error
	if o.Topic == "" || o.Channel == "" {
		errs = append(errs, errors.New("--topic and --channel are required"))
	}
	if o.Interval <= 0 {
		errs = append(errs, errors.New("--interval should be positive"))
	}
	if o.HTTPClientConnectTimeout <= 0 {
		errs = append(errs, errors.New("--http-client-connect-timeout should be positive"))
	}
	if o.HTTPClientRequestTimeout <= 0 {
		errs = append(errs, errors.New("--http-client-request-timeout should be positive"))
	}
	if o.Count < 0 {
		errs = append(errs, errors.New("--count should be positive"))
	}
	switch {
	case len(o.NSQDHTTPAddrs) == 0 && len(o.LookupdHTTPAddrs) == 0:
		errs = append(errs, errors.New("--nsqd-http-address or --lookupd-http-address required"))
	case len(o.NSQDHTTPAddrs) > 0 && len(o.LookupdHTTPAddrs) > 0:
		errs = append(errs, errors.New("use --nsqd-http-address or --lookupd-http-address not both"))
	}
	for _, a := range o.NSQDHTTPAddrs {
		if strings.HasPrefix(a, "http") {
			errs = append(errs, fmt.Errorf("--nsqd-http-address error - address should not contain scheme (%s)", a))
		}
	}
	for _, a := range o.LookupdHTTPAddrs {
		if strings.HasPrefix(a, "http") {
			errs = append(errs, fmt.Errorf("--lookupd-http-address error - address should not contain scheme (%s)", a))
		}
	}
	return errors.Join(errs...)
}

// Stat is a configured nsq_stat.
type Stat struct {
	opts   Options
	logger *slog.Logger
	out    io.Writer
	client *http.Client
}

// New returns a Stat printing to out.
func New(o *Options, logger *slog.Logger, out io.Writer) (*Stat, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return &Stat{opts: *o, logger: logger, out: out, client: toolflag.HTTPClient(o.HTTPClientConnectTimeout, o.HTTPClientRequestTimeout)}, nil
}

// Run samples and prints until ctx ends or --count rows are printed.
func (s *Stat) Run(ctx context.Context) error {
	defer s.client.CloseIdleConnections()
	s.logger.Info("watching", "topic", s.opts.Topic, "channel", s.opts.Channel, "interval", s.opts.Interval)
	ticker := time.NewTicker(s.opts.Interval)
	defer ticker.Stop()
	var prev *channelStats
	var prevAt time.Time
	for i := 0; s.opts.Count == 0 || i <= s.opts.Count; i++ {
		cur, err := s.sample(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		at := time.Now() // when the sample is complete, on the monotonic clock
		if i%headerEvery == 0 {
			if err := writeHeader(s.out); err != nil {
				return err
			}
		}
		if prev != nil {
			if err := writeRow(s.out, prev, cur, at.Sub(prevAt)); err != nil {
				return err
			}
		}
		prev, prevAt = cur, at
		if s.opts.Count > 0 && i == s.opts.Count {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
	return nil
}

func writeHeader(w io.Writer) error {
	_, err := fmt.Fprintf(w, "%s+%s+%s\n%7s %7s | %7s %7s %7s %5s %5s | %7s %7s %12s %7s\n",
		"------rate------", "----------------depth----------------", "--------------metadata---------------",
		"ingress", "egress", "total", "mem", "disk", "inflt", "def", "req", "t-o", "msgs", "clients")
	if err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// writeRow prints the row of cur, with rates over elapsed, the time since prev was
// sampled. Egress is what left the channel: what came in less what the depth grew by.
func writeRow(w io.Writer, prev, cur *channelStats, elapsed time.Duration) error {
	secs := max(elapsed, time.Millisecond).Seconds()
	in := int64(cur.MessageCount) - int64(prev.MessageCount)
	out := in - (cur.Depth - prev.Depth)
	_, err := fmt.Fprintf(w, "%7d %7d | %7d %7d %7d %5d %5d | %7d %7d %12d %7d\n",
		int64(float64(in)/secs), int64(float64(out)/secs),
		cur.Depth, cur.Depth-cur.BackendDepth, cur.BackendDepth, cur.InFlightCount, cur.DeferredCount,
		cur.RequeueCount, cur.TimeoutCount, cur.MessageCount, cur.ClientCount)
	if err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// channelStats is the part of nsqd's /stats for one channel that nsq_stat prints; sample
// sums it over the nsqds.
type channelStats struct {
	Name          string `json:"channel_name"`
	Depth         int64  `json:"depth"`
	BackendDepth  int64  `json:"backend_depth"`
	InFlightCount int64  `json:"in_flight_count"`
	DeferredCount int64  `json:"deferred_count"`
	MessageCount  uint64 `json:"message_count"`
	RequeueCount  uint64 `json:"requeue_count"`
	TimeoutCount  uint64 `json:"timeout_count"`
	ClientCount   int64  `json:"client_count"`
}

func (c *channelStats) add(o *channelStats) {
	c.Depth += o.Depth
	c.BackendDepth += o.BackendDepth
	c.InFlightCount += o.InFlightCount
	c.DeferredCount += o.DeferredCount
	c.MessageCount += o.MessageCount
	c.RequeueCount += o.RequeueCount
	c.TimeoutCount += o.TimeoutCount
	c.ClientCount += o.ClientCount
}

// sample returns the channel's stats summed over the nsqds that have the topic.
func (s *Stat) sample(ctx context.Context) (*channelStats, error) {
	nodes := s.opts.NSQDHTTPAddrs
	if len(s.opts.LookupdHTTPAddrs) > 0 {
		var err error
		if nodes, err = s.lookup(ctx); err != nil {
			return nil, fmt.Errorf("failed to get topic producers: %w", err)
		}
	}
	q := url.Values{"format": {"json"}, "topic": {s.opts.Topic}, "channel": {s.opts.Channel}, "include_clients": {"false"}}
	type result struct {
		stats *channelStats
		err   error
	}
	results := make([]result, len(nodes))
	var wg sync.WaitGroup
	for i, node := range nodes {
		wg.Go(func() {
			var report struct {
				Topics []struct {
					Name     string         `json:"topic_name"`
					Channels []channelStats `json:"channels"`
				} `json:"topics"`
			}
			if err := toolflag.GetJSON(ctx, s.client, Name, "http://"+node+"/stats?"+q.Encode(), &report); err != nil {
				results[i].err = err
				return
			}
			for _, t := range report.Topics {
				if t.Name != s.opts.Topic {
					continue
				}
				for _, c := range t.Channels {
					if c.Name == s.opts.Channel {
						results[i].stats = &c
					}
				}
			}
		})
	}
	wg.Wait()
	var sum *channelStats
	var errs []error
	for _, r := range results {
		switch {
		case r.err != nil:
			errs = append(errs, r.err)
		case r.stats != nil:
			if sum == nil {
				sum = &channelStats{Name: s.opts.Channel}
			}
			sum.add(r.stats)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("failed to get nsqd stats: %w", errors.Join(errs...))
	}
	if sum == nil {
		return nil, fmt.Errorf("failed to find channel(%s) in stats metadata for topic(%s)", s.opts.Channel, s.opts.Topic)
	}
	return sum, nil
}

// lookup returns the HTTP addresses of the nsqds the lookupds list for the topic.
func (s *Stat) lookup(ctx context.Context) ([]string, error) {
	var nodes []string
	seen := map[string]bool{}
	var errs []error
	for _, l := range s.opts.LookupdHTTPAddrs {
		var resp struct {
			Producers []struct {
				BroadcastAddress string `json:"broadcast_address"`
				HTTPPort         int    `json:"http_port"`
			} `json:"producers"`
		}
		if err := toolflag.GetJSON(ctx, s.client, Name, "http://"+l+"/lookup?topic="+url.QueryEscape(s.opts.Topic), &resp); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, p := range resp.Producers {
			addr := net.JoinHostPort(p.BroadcastAddress, strconv.Itoa(p.HTTPPort))
			if !seen[addr] {
				seen[addr] = true
				nodes = append(nodes, addr)
			}
		}
	}
	return nodes, errors.Join(errs...)
}
