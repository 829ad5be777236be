// Command worker is the consumer of the compose cluster's examples (docker-compose --profile
// examples, or make examples): it receives one channel of one topic from every nsqd its
// nsqlookupds know and logs each message. Run two on one channel and they share its messages
// (the worker pattern); run them on two channels of one topic and each channel gets every
// message (pub/sub).
//
//	worker --topic=jobs --channel=workers --lookupd-http-address=127.0.0.1:4161
package main

import (
	"context"
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
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func run() error {
	var lookupds stringList
	name, _ := os.Hostname()
	flag.StringVar(&name, "name", name, "how this worker names itself in its log")
	topic := flag.String("topic", "jobs", "topic to consume")
	channel := flag.String("channel", "workers", "channel to consume")
	work := flag.Duration("work", 0, "how long handling one message takes, to watch a channel's load spread")
	flag.Var(&lookupds, "lookupd-http-address", "nsqlookupd HTTP address (repeatable); default $TERN_LOOKUPD_HTTP_ADDRESSES (comma-separated) or 127.0.0.1:4161")
	flag.Parse()
	if len(lookupds) == 0 {
		lookupds = defaultList("TERN_LOOKUPD_HTTP_ADDRESSES", "127.0.0.1:4161")
	}

	logger := slog.New(slog.NewTextHandler(os.Stdout, nil)).With("worker", name)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 10
	cfg.ClientID = name
	cfg.LookupdPollInterval = 5 * time.Second // find a restarted nsqd soon, for the demo
	consumer, err := nsq.NewConsumer(*topic, *channel, nsq.HandlerFunc(func(m *nsq.Message) error {
		logger.Info("message", "topic", *topic, "channel", *channel, "nsqd", m.NSQDAddress,
			"attempts", m.Attempts, "body", string(m.Body))
		time.Sleep(*work) // stands for the work a real handler does
		return nil
	}), cfg)
	if err != nil {
		return err
	}
	for _, addr := range lookupds {
		if err := consumer.ConnectToNSQLookupd(addr); err != nil {
			return err
		}
	}
	logger.Info("consuming", "topic", *topic, "channel", *channel, "lookupds", lookupds.String())
	<-ctx.Done()
	// Stop drains: the messages in hand are finished before the connections close.
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return consumer.Stop(stopCtx)
}
