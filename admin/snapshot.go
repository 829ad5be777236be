package admin

import (
	"context"
	"errors"
	"sync"
	"time"
)

// snapshot is the whole cluster at one moment, without clients: every node, every topic and
// channel summed over the nodes, and what failed to answer. It is what the overview, topic,
// nodes, lookup and counter pages are drawn from and what the sampler records; pages that
// need clients (a channel, a node) fetch those separately.
//
// A snapshot is never changed once built, so any number of requests may read it at once.
type snapshot struct {
	// taken is when the fetch finished: the age that matters to the cache.
	taken time.Time
	// producers are the nodes, sorted by host name; stats[i] is producers[i]'s /stats, or nil
	// if it did not answer.
	producers []*Producer
	stats     []*nodeStats
	// topics are summed over the nodes that answered, sorted by name, and compacted: the
	// per-node entries have no channels, the channels no per-node entries (compactTopics).
	topics []*TopicStats
	byName map[string]*TopicStats
	// lookupdTopics is the union of the lookupds' /topics (lookupd mode only).
	lookupdTopics []string
	// lookupds is how many lookupds were asked; lookupdsFailed how many did not answer.
	lookupds       int
	lookupdsFailed int
	// errs are the failures, each naming its daemon.
	errs []error
	// nodeErrs maps a failed node's HTTP address to its error.
	nodeErrs map[string]error
}

// topic returns the cluster-wide sum for the topic, or nil.
func (s *snapshot) topic(name string) *TopicStats { return s.byName[name] }

// producer returns the node by its HTTP address, or nil.
func (s *snapshot) producer(node string) *Producer {
	for _, p := range s.producers {
		if p.HTTPAddress() == node {
			return p
		}
	}
	return nil
}

// noneAnswered reports that the cluster could not be read at all: every lookupd failed, or
// there were nodes and none answered. The API answers that with 502, as NSQ's admin does.
func (s *snapshot) noneAnswered() bool {
	if s.lookupds > 0 && s.lookupdsFailed == s.lookupds {
		return true
	}
	return len(s.producers) > 0 && len(s.nodeErrs) == len(s.producers) ||
		s.lookupds == 0 && len(s.producers) == 0 && len(s.errs) > 0
}

// fetchSnapshot reads the whole cluster: the nodes first, then every node's /stats and the
// lookupds' topics at once.
func (c *cluster) fetchSnapshot(ctx context.Context) *snapshot {
	s := &snapshot{lookupds: len(c.options().NSQLookupdHTTPAddresses), nodeErrs: make(map[string]error)}
	producers, errs := c.producers(ctx)
	s.producers = producers
	for _, err := range errs {
		var de *daemonError
		if errors.As(err, &de) && de.kind == "nsqlookupd" {
			s.lookupdsFailed++
		}
	}
	s.errs = append(s.errs, errs...)
	if s.lookupds > 0 {
		s.errs = append(s.errs, c.departed.update(producers, s.lookupdsFailed == 0, time.Now())...)
	}

	var topicErrs []error
	var wg sync.WaitGroup
	if s.lookupds > 0 {
		wg.Go(func() { s.lookupdTopics, topicErrs = c.lookupdTopics(ctx) })
	}
	stats, statErrs := c.nodeStats(ctx, producers, statsQuery{})
	wg.Wait()
	// A lookupd that failed /nodes has failed /topics too, most likely: say it once.
	for _, err := range topicErrs {
		if !containsDaemon(s.errs, err) {
			s.errs = append(s.errs, err)
		}
	}
	s.errs = append(s.errs, statErrs...)
	for _, err := range statErrs {
		var de *daemonError
		if errors.As(err, &de) {
			s.nodeErrs[de.addr] = de.err
		}
	}
	s.stats = stats
	var answered []*nodeStats
	for _, ns := range stats {
		if ns != nil {
			answered = append(answered, ns)
		}
	}
	s.topics = aggregateTopics(answered)
	compactTopics(s.topics)
	s.byName = make(map[string]*TopicStats, len(s.topics))
	for _, t := range s.topics {
		s.byName[t.TopicName] = t
	}
	s.taken = time.Now()
	return s
}

// containsDaemon reports whether errs already has an error from err's daemon.
func containsDaemon(errs []error, err error) bool {
	var de *daemonError
	if !errors.As(err, &de) {
		return false
	}
	for _, e := range errs {
		var d *daemonError
		if errors.As(e, &d) && d.kind == de.kind && d.addr == de.addr {
			return true
		}
	}
	return false
}

// errStopped is returned to requests that need a snapshot once the admin is shutting down.
var errStopped = errors.New("nsqadmin is shutting down")

// snapshotCache hands out the latest snapshot if it is recent enough, and otherwise fetches a
// new one, once however many requests ask at the same time: many open pages cost the cluster
// one fan-out per second at most. The fetch runs in the admin's own goroutine, bounded by the
// request timeouts, so a page that gives up waiting does not abort it for the others.
type snapshotCache struct {
	fetch func(context.Context) *snapshot
	// start runs a fetch goroutine, or reports false once the admin is stopping.
	start func(func()) bool
	// ctx is cancelled when the admin stops.
	ctx context.Context

	mu      sync.Mutex
	cur     *snapshot
	pending chan struct{} // closed when the fetch under way has finished
	// gen counts invalidations: a fetch begun before the latest one read the cluster before
	// an action changed it, so it must not become cur.
	gen uint64
}

// get returns a snapshot at most maxAge old, waiting for a fetch if needed.
func (c *snapshotCache) get(ctx context.Context, maxAge time.Duration) (*snapshot, error) {
	c.mu.Lock()
	if c.cur != nil && time.Since(c.cur.taken) <= maxAge {
		s := c.cur
		c.mu.Unlock()
		return s, nil
	}
	if c.pending == nil {
		done := make(chan struct{})
		gen := c.gen
		started := c.start(func() {
			s := c.fetch(c.ctx)
			c.mu.Lock()
			if c.gen == gen {
				c.cur, c.pending = s, nil
			}
			c.mu.Unlock()
			close(done)
		})
		if !started {
			c.mu.Unlock()
			return nil, errStopped
		}
		c.pending = done
	}
	pending := c.pending
	c.mu.Unlock()

	select {
	case <-pending:
		c.mu.Lock()
		s := c.cur
		c.mu.Unlock()
		if s == nil {
			// Invalidated while this request waited: fetch again.
			return c.get(ctx, maxAge)
		}
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, errStopped
	}
}

// invalidate makes the next get fetch anew, after an action changed the cluster.
func (c *snapshotCache) invalidate() {
	c.mu.Lock()
	c.cur, c.pending = nil, nil
	c.gen++
	c.mu.Unlock()
}
