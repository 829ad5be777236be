package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// cluster reads and changes the cluster through the HTTP APIs of its lookupds and nsqds. Every
// call fans out to all the daemons concerned at once, each request bounded by the client's
// timeouts, and reports the daemons that failed as errors beside whatever the others answered:
// one slow or dead node costs a page at most the request timeout and never hides the rest.
//
// The lists of daemons come from the current options on every call, so PUT
// /config/nsqlookupd_http_addresses takes effect at once. A cluster's only state is the memory
// of the nodes the lookupds have listed (departures), which fetchSnapshot keeps.
type cluster struct {
	client   *httpClient
	options  func() *Options
	departed departures
}

// fanOut runs f for every address at once and waits for them all.
func fanOut(addrs []string, f func(i int, addr string)) {
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Go(func() { f(i, a) })
	}
	wg.Wait()
}

// fanOutLimit is fanOut with at most limit calls of f running at once, for lists that grow
// with the cluster's contents (topics) rather than with its daemons.
func fanOutLimit(items []string, limit int, f func(i int, item string)) {
	slots := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i, it := range items {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			f(i, it)
		})
	}
	wg.Wait()
}

// daemonError names the daemon that failed: "nsqd 10.0.0.1:4151: got response 500 ...".
type daemonError struct {
	kind string // "nsqd" or "nsqlookupd"
	addr string
	err  error
}

func (e *daemonError) Error() string { return e.kind + " " + e.addr + ": " + e.err.Error() }
func (e *daemonError) Unwrap() error { return e.err }

func lookupdError(addr string, err error) error {
	return &daemonError{kind: "nsqlookupd", addr: addr, err: err}
}

func nsqdError(addr string, err error) error { return &daemonError{kind: "nsqd", addr: addr, err: err} }

// errAllFailed is wrapped by the error of a call every daemon failed; the API answers it with
// 502 UPSTREAM_ERROR as NSQ's admin does.
var errAllFailed = errors.New("failed to query any")

// allFailed returns NSQ's "failed to query any nsqd: ..." error over errs.
func allFailed(kind string, errs []error) error {
	texts := make([]string, len(errs))
	for i, e := range errs {
		texts[i] = e.Error()
	}
	return fmt.Errorf("%w %s: %s", errAllFailed, kind, strings.Join(texts, "\n"))
}

// lookupdMode reports whether the cluster is found through lookupds rather than a fixed list
// of nsqds.
func (c *cluster) lookupdMode() bool { return len(c.options().NSQLookupdHTTPAddresses) > 0 }

// producers lists the cluster's nsqd nodes, sorted by host name: the union of every lookupd's
// /nodes, or each configured nsqd's /info. A node is identified by its broadcast address and
// TCP port, as the lookupds identify it; each lookupd that knows it adds an entry to its
// RemoteAddresses. Versions are compared to mark the nodes that are out of date.
func (c *cluster) producers(ctx context.Context) ([]*Producer, []error) {
	o := c.options()
	if len(o.NSQLookupdHTTPAddresses) == 0 {
		return c.staticProducers(ctx, o.NSQDHTTPAddresses)
	}
	lookupds := o.NSQLookupdHTTPAddresses
	answers := make([][]*Producer, len(lookupds))
	errs := make([]error, len(lookupds))
	fanOut(lookupds, func(i int, addr string) {
		var resp struct {
			Producers []struct {
				RemoteAddress    string   `json:"remote_address"`
				Hostname         string   `json:"hostname"`
				BroadcastAddress string   `json:"broadcast_address"`
				TCPPort          int      `json:"tcp_port"`
				HTTPPort         int      `json:"http_port"`
				Version          string   `json:"version"`
				Topics           []string `json:"topics"`
				Tombstones       []bool   `json:"tombstones"`
			} `json:"producers"`
		}
		if err := c.client.getJSON(ctx, addr, "/nodes", &resp); err != nil {
			errs[i] = lookupdError(addr, err)
			return
		}
		for _, r := range resp.Producers {
			p := &Producer{
				RemoteAddress: r.RemoteAddress, Hostname: r.Hostname, BroadcastAddress: r.BroadcastAddress,
				TCPPort: r.TCPPort, HTTPPort: r.HTTPPort, Version: r.Version,
			}
			remote := r.RemoteAddress
			if remote == "" {
				remote = "N/A"
			}
			p.RemoteAddresses = []string{addr + "/" + remote}
			for j, t := range r.Topics {
				p.Topics = append(p.Topics, ProducerTopic{Topic: t, Tombstoned: j < len(r.Tombstones) && r.Tombstones[j]})
			}
			answers[i] = append(answers[i], p)
		}
	})

	byKey := make(map[string]*Producer)
	var out []*Producer
	for _, ps := range answers {
		for _, p := range ps {
			key := p.TCPAddress()
			if seen := byKey[key]; seen != nil {
				seen.RemoteAddresses = append(seen.RemoteAddresses, p.RemoteAddresses...)
				// A topic one lookupd has and another has not yet (registrations race) is
				// still the node's topic; a tombstone on any lookupd is shown.
				for _, t := range p.Topics {
					if i := slices.IndexFunc(seen.Topics, func(s ProducerTopic) bool { return s.Topic == t.Topic }); i >= 0 {
						seen.Topics[i].Tombstoned = seen.Topics[i].Tombstoned || t.Tombstoned
					} else {
						seen.Topics = append(seen.Topics, t)
					}
				}
				continue
			}
			byKey[key] = p
			out = append(out, p)
		}
	}
	finishProducers(out)
	return out, compact(errs)
}

// staticProducers asks each configured nsqd for its /info.
func (c *cluster) staticProducers(ctx context.Context, nsqds []string) ([]*Producer, []error) {
	found := make([]*Producer, len(nsqds))
	errs := make([]error, len(nsqds))
	fanOut(nsqds, func(i int, addr string) {
		var info struct {
			Version          string `json:"version"`
			BroadcastAddress string `json:"broadcast_address"`
			Hostname         string `json:"hostname"`
			HTTPPort         int    `json:"http_port"`
			TCPPort          int    `json:"tcp_port"`
		}
		if err := c.client.getJSON(ctx, addr, "/info", &info); err != nil {
			errs[i] = nsqdError(addr, err)
			return
		}
		p := &Producer{
			Hostname: info.Hostname, BroadcastAddress: info.BroadcastAddress,
			TCPPort: info.TCPPort, HTTPPort: info.HTTPPort, Version: info.Version,
		}
		// The address the admin was given is known to work from here; the node's broadcast
		// address may only be right from inside its own network (a container's name, say).
		if host, port, err := net.SplitHostPort(addr); err == nil {
			p.BroadcastAddress = host
			p.HTTPPort, _ = strconv.Atoi(port)
		}
		found[i] = p
	})
	var out []*Producer
	for _, p := range found {
		if p != nil {
			out = append(out, p)
		}
	}
	finishProducers(out)
	return out, compact(errs)
}

// finishProducers sorts nodes and their topics and marks the out-of-date ones.
func finishProducers(ps []*Producer) {
	newest := ""
	for _, p := range ps {
		if newest == "" || versionLess(newest, p.Version) {
			newest = p.Version
		}
		slices.SortFunc(p.Topics, func(a, b ProducerTopic) int { return strings.Compare(a.Topic, b.Topic) })
	}
	for _, p := range ps {
		p.OutOfDate = versionLess(p.Version, newest)
	}
	slices.SortStableFunc(ps, func(a, b *Producer) int {
		if c := strings.Compare(a.Hostname, b.Hostname); c != 0 {
			return c
		}
		return strings.Compare(a.HTTPAddress(), b.HTTPAddress())
	})
}

// lookupdTopics is the union of every lookupd's /topics, sorted.
func (c *cluster) lookupdTopics(ctx context.Context) ([]string, []error) {
	lookupds := c.options().NSQLookupdHTTPAddresses
	answers := make([][]string, len(lookupds))
	errs := make([]error, len(lookupds))
	fanOut(lookupds, func(i int, addr string) {
		var resp struct {
			Topics []string `json:"topics"`
		}
		if err := c.client.getJSON(ctx, addr, "/topics", &resp); err != nil {
			errs[i] = lookupdError(addr, err)
			return
		}
		answers[i] = resp.Topics
	})
	return union(answers), compact(errs)
}

// lookupdChannels is the union of every lookupd's /channels for topic, sorted.
func (c *cluster) lookupdChannels(ctx context.Context, topic string) ([]string, []error) {
	lookupds := c.options().NSQLookupdHTTPAddresses
	answers := make([][]string, len(lookupds))
	errs := make([]error, len(lookupds))
	fanOut(lookupds, func(i int, addr string) {
		var resp struct {
			Channels []string `json:"channels"`
		}
		if err := c.client.getJSON(ctx, addr, "/channels?topic="+url.QueryEscape(topic), &resp); err != nil {
			errs[i] = lookupdError(addr, err)
			return
		}
		answers[i] = resp.Channels
	})
	return union(answers), compact(errs)
}

// statsQuery selects what a node's /stats reports.
type statsQuery struct {
	topic, channel string
	clients        bool
}

func (q statsQuery) path() string {
	v := url.Values{"format": {"json"}}
	if q.topic != "" {
		v.Set("topic", q.topic)
	}
	if q.channel != "" {
		v.Set("channel", q.channel)
	}
	if !q.clients {
		v.Set("include_clients", "false")
	}
	return "/stats?" + v.Encode()
}

// nodeStats fetches /stats from every given node at once. The answers are in the order of
// nodes, nil for a node that failed. A node's answer to a topic or channel query may hold
// nothing: it does not have that topic.
func (c *cluster) nodeStats(ctx context.Context, nodes []*Producer, q statsQuery) ([]*nodeStats, []error) {
	out := make([]*nodeStats, len(nodes))
	errs := make([]error, len(nodes))
	path := q.path()
	var wg sync.WaitGroup
	for i, p := range nodes {
		wg.Go(func() {
			ns := &nodeStats{producer: p}
			if err := c.client.getJSON(ctx, p.HTTPAddress(), path, ns); err != nil {
				errs[i] = nsqdError(p.HTTPAddress(), err)
				return
			}
			if q.channel != "" {
				// NSQ 1.x nsqds before 1.2 ignore the channel filter.
				for _, t := range ns.Topics {
					t.Channels = slices.DeleteFunc(t.Channels, func(ch *ChannelStats) bool { return ch.ChannelName != q.channel })
				}
			}
			if q.topic != "" {
				ns.Topics = slices.DeleteFunc(ns.Topics, func(t *TopicStats) bool { return t.TopicName != q.topic })
			}
			ns.prepare()
			out[i] = ns
		})
	}
	wg.Wait()
	return out, compact(errs)
}

// topicProducers lists the nodes that carry topic: those the lookupds list it for (minus
// tombstoned ones, as /lookup does), or, without lookupds, the configured nodes whose /stats
// has it.
func (c *cluster) topicProducers(ctx context.Context, topic string) ([]*Producer, []error) {
	all, errs := c.producers(ctx)
	var out []*Producer
	for _, p := range all {
		if p.Carries(topic) || !c.lookupdMode() {
			out = append(out, p)
		}
	}
	if c.lookupdMode() {
		return out, errs
	}
	stats, statErrs := c.nodeStats(ctx, out, statsQuery{topic: topic})
	var have []*Producer
	for i, ns := range stats {
		if ns != nil && len(ns.Topics) > 0 {
			have = append(have, out[i])
		}
	}
	return have, append(errs, statErrs...)
}

func compact(errs []error) []error {
	return slices.DeleteFunc(errs, func(e error) bool { return e == nil })
}

func union(lists [][]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
