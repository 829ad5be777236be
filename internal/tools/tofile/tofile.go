// Package tofile is nsq_to_file: it consumes topics and writes their messages to files, one
// message a line, as NSQ 1.3's nsq_to_file does, with its file names, rotation, gzip and
// work directory.
//
// ToFile (this file) finds the topics: those given with --topic, or those the lookupds
// list, at once and every --topic-refresh, that match --topic-pattern. It runs one
// topicWriter (file.go) per topic, each with its own Consumer and files: the writer's
// router goroutine writes messages through a buffer (and gzip), syncs the file to disk at
// least every --sync-interval, whenever --max-in-flight messages are waiting or one of the
// consumer's connections is starved (nsq.Consumer.IsStarved: it holds 85% of its RDY, so
// nsqd sends it little more), and finishes the messages only then. Files are named by
// --filename-format (filename.go): <TOPIC>, <HOST>, <PID>, <DATETIME> (--datetime-format,
// strftime) and <REV>, a revision that tells apart the files of one name. A file is
// replaced by a new one when its name's <DATETIME> changes, when it is older than
// --rotate-interval or bigger than --rotate-size, and on SIGHUP (Rotate); with --work-dir
// finished files are moved to --output-dir, never over an existing file.
//
// On shutdown each writer stops its consumer, which lets the messages in flight be
// delivered, writes and syncs them, and closes (and moves) its file: every message
// finished is on disk.
package tofile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ternmq/tern/internal/tools/toolflag"
	"github.com/ternmq/tern/nsq"
)

// Name is the tool's name, as NSQ spells it.
const Name = "nsq_to_file"

// ToFile is a configured nsq_to_file.
type ToFile struct {
	opts     Options
	logger   *slog.Logger
	cfg      *nsq.Config
	pattern  *regexp.Regexp
	hostname string
	client   *http.Client

	mu      sync.Mutex // guards writers
	writers map[string]*topicWriter
}

// New returns a ToFile. It does not connect: Run does.
func New(o *Options, logger *slog.Logger) (*ToFile, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	cfg, _ := toolflag.ConsumerConfig(Name, o.ConsumerOpts, o.MaxInFlight)
	cfg.Logger = logger
	hostname, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("host name: %w", err)
	}
	return &ToFile{
		opts:     *o,
		logger:   logger,
		cfg:      cfg,
		pattern:  regexp.MustCompile(o.TopicPattern), // validated
		hostname: hostname,
		client:   toolflag.HTTPClient(o.HTTPClientConnectTimeout, o.HTTPClientRequestTimeout),
		writers:  map[string]*topicWriter{},
	}, nil
}

// Rotate closes every open file, as SIGHUP does in NSQ: the next message of each topic
// opens a new one.
func (t *ToFile) Rotate() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, w := range t.writers {
		w.rotate()
	}
}

// Run writes until ctx ends, then stops every topic's writer and waits for them. It fails
// when a writer fails (a file that cannot be written, synced or moved); the others are
// then stopped too.
func (t *ToFile) Run(ctx context.Context) error {
	defer t.client.CloseIdleConnections()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	start := func(topics []string) {
		for _, topic := range topics {
			t.mu.Lock()
			_, running := t.writers[topic]
			t.mu.Unlock()
			if running {
				continue
			}
			if !t.pattern.MatchString(topic) {
				t.logger.Warn("skipping topic (doesn't match pattern)", "topic", topic, "pattern", t.opts.TopicPattern)
				continue
			}
			w, err := newTopicWriter(&t.opts, topic, t.hostname, t.cfg, t.logger)
			if err != nil {
				t.logger.Error("couldn't create logger for new topic", "topic", topic, "error", err)
				continue
			}
			t.mu.Lock()
			t.writers[topic] = w
			t.mu.Unlock()
			wg.Go(func() {
				if err := w.run(ctx); err != nil {
					cancel(err)
				}
			})
		}
	}

	if len(t.opts.Topics) > 0 {
		start(t.opts.Topics)
	} else {
		// NSQ waits one --topic-refresh before the first query; this asks at once.
		ticker := time.NewTicker(t.opts.TopicRefresh)
	discover:
		for {
			topics, err := t.lookupTopics(ctx)
			if err != nil && ctx.Err() == nil {
				t.logger.Error("could not retrieve topic list", "error", err)
			}
			start(topics)
			select {
			case <-ctx.Done():
				break discover
			case <-ticker.C:
			}
		}
		ticker.Stop()
	}
	<-ctx.Done()
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// lookupTopics returns the topics any lookupd lists, sorted; the lookupds that fail are
// reported, and the others' topics returned.
func (t *ToFile) lookupTopics(ctx context.Context) ([]string, error) {
	var topics []string
	var errs []error
	for _, addr := range t.opts.Source.LookupdHTTPAddrs {
		u := addr
		if !strings.Contains(u, "://") {
			u = "http://" + u
		}
		var resp struct {
			Topics []string `json:"topics"`
		}
		if err := toolflag.GetJSON(ctx, t.client, Name, strings.TrimSuffix(u, "/")+"/topics", &resp); err != nil {
			errs = append(errs, err)
			continue
		}
		topics = append(topics, resp.Topics...)
	}
	slices.Sort(topics)
	return slices.Compact(topics), errors.Join(errs...)
}
