// Command publisher feeds the compose cluster's examples: every --interval it publishes one
// numbered message to each --topic, alternating between the nsqds given, so that the workers
// have something to share.
//
//	publisher --nsqd-tcp-address=127.0.0.1:4150 --nsqd-tcp-address=127.0.0.1:4250 --topic=jobs
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ternmq/tern/nsq"
)

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// defaultList is the comma-separated list in the environment variable env (the compose file
// sets it), or def.
func defaultList(env, def string) stringList {
	if v := os.Getenv(env); v != "" {
		return strings.Split(v, ",")
	}
	return stringList{def}
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "publisher:", err)
		os.Exit(1)
	}
}

func run() error {
	var nsqds, topics stringList
	interval := flag.Duration("interval", time.Second, "time between rounds of messages")
	flag.Var(&nsqds, "nsqd-tcp-address", "nsqd TCP address (repeatable); default $TERN_NSQD_TCP_ADDRESSES (comma-separated) or 127.0.0.1:4150")
	flag.Var(&topics, "topic", "topic to publish to (repeatable)")
	flag.Parse()
	if len(nsqds) == 0 {
		nsqds = defaultList("TERN_NSQD_TCP_ADDRESSES", "127.0.0.1:4150")
	}
	if len(topics) == 0 {
		topics = stringList{"jobs"}
	}
	if *interval <= 0 {
		return errors.New("--interval must be positive")
	}

	logger := slog.New(slog.NewTextHandler(os.Stdout, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	producers := make([]*nsq.Producer, len(nsqds))
	for i, addr := range nsqds {
		p, err := nsq.NewProducer(addr, nil)
		if err != nil {
			return err
		}
		defer p.Stop()
		producers[i] = p
	}
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for n := 1; ; n++ {
		p := producers[n%len(producers)]
		for _, topic := range topics {
			body := fmt.Sprintf("%s #%d", topic, n)
			pubCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := p.Publish(pubCtx, topic, []byte(body))
			cancel()
			if err != nil && ctx.Err() == nil {
				// An nsqd that is down (stopped for the demo, say) costs a round, not the run.
				logger.Warn("publish failed", "nsqd", nsqds[n%len(nsqds)], "topic", topic, "err", err)
				continue
			}
			logger.Info("published", "nsqd", nsqds[n%len(nsqds)], "topic", topic, "body", body)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
