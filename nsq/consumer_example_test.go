package nsq_test

import (
	"context"
	"errors"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/ternmq/tern/nsq"
)

// resizeImage stands for the work a worker does.
func resizeImage(body []byte) error {
	if len(body) == 0 {
		return errors.New("empty job")
	}
	return nil
}

// deadLetters is a Handler that also sees the jobs its Consumer gives up on.
type deadLetters struct{ nsq.HandlerFunc }

func (deadLetters) GiveUp(m *nsq.Message) {
	log.Printf("giving up on job %s after %d attempts: %q", m.ID, m.Attempts, m.Body)
}

// The worker pattern: jobs published to a topic are shared among the workers of one
// channel, each job handled by one of them. Several handler goroutines per process,
// discovery through nsqlookupd, retries with growing delays, a hook for the jobs that fail
// for good, and a graceful stop that finishes the jobs in hand.
func ExampleConsumer_worker() {
	cfg := nsq.NewConfig()
	cfg.MaxInFlight = 64       // jobs in hand at once, over all nsqds
	cfg.HandlerConcurrency = 8 // goroutines running the handler
	cfg.MaxAttempts = 5        // then GiveUp
	cfg.AutoTouch = true       // long jobs keep their message
	cfg.DefaultRequeueDelay = 10 * time.Second

	handler := deadLetters{nsq.HandlerFunc(func(m *nsq.Message) error {
		return resizeImage(m.Body) // nil finishes the job; an error retries it later
	})}
	consumer, err := nsq.NewConsumer("images", "resizer", handler, cfg)
	if err != nil {
		log.Fatal(err)
	}
	if err := consumer.ConnectToNSQLookupd("127.0.0.1:4161"); err != nil {
		log.Fatal(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	<-ctx.Done()

	// Stop taking jobs, finish those in hand, and close; give up waiting after 30s.
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := consumer.Stop(stopCtx); err != nil {
		log.Printf("stop: %v", err)
	}
	log.Printf("stats: %+v", consumer.Stats())
}
