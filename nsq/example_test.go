package nsq_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/ternmq/tern/nsq"
)

// The pub/sub pattern: a producer publishes events to a topic, and every channel of the
// topic receives a copy of each, shared among that channel's consumers. Here two services,
// billing and audit, each subscribe with their own channel and so each see every order.
func Example_pubSub() {
	const nsqdAddr = "127.0.0.1:4150"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// Subscribe first, so that the channels exist and receive every event.
	for _, service := range []string{"billing", "audit"} {
		consumer, err := nsq.NewConsumer("orders", service, nsq.HandlerFunc(func(m *nsq.Message) error {
			log.Printf("%s received %s", service, m.Body)
			return nil // finished; an error would requeue the message
		}), nil)
		if err != nil {
			log.Fatal(err)
		}
		if err := consumer.ConnectToNSQD(ctx, nsqdAddr); err != nil {
			log.Fatal(err)
		}
		defer consumer.Stop(context.Background()) // drains: finishes what is in hand, then closes
	}

	// Publish. The Producer is safe for concurrent use; share one per nsqd.
	producer, err := nsq.NewProducer(nsqdAddr, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer producer.Stop()

	if err := producer.Publish(ctx, "orders", []byte(`{"id":1}`)); err != nil {
		log.Fatal(err)
	}
	// A batch is stored all or nothing.
	batch := [][]byte{[]byte(`{"id":2}`), []byte(`{"id":3}`)}
	if err := producer.MultiPublish(ctx, "orders", batch); err != nil {
		log.Fatal(err)
	}
}

// Asynchronous publishing reports each outcome to a callback, which runs on the
// connection's goroutine and so must be quick.
func ExampleProducer_PublishAsync() {
	producer, err := nsq.NewProducer("127.0.0.1:4150", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer producer.Stop() // waits for the answers to what was sent

	for i := range 10 {
		body := fmt.Appendf(nil, "event %d", i)
		err := producer.PublishAsync("events", body, func(err error) {
			if err != nil {
				log.Printf("event %d: %v", i, err)
			}
		})
		if err != nil {
			log.Fatal(err) // refused before sending: an invalid topic, or a stopped producer
		}
	}
}

// Errors from nsqd are typed, whether the server sent them or the client refused the
// command before sending it.
func ExampleError() {
	producer, err := nsq.NewProducer("127.0.0.1:4150", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer producer.Stop()

	err = producer.Publish(context.Background(), "not a valid topic!", []byte("x"))
	var nsqErr *nsq.Error
	if errors.As(err, &nsqErr) {
		fmt.Println(nsqErr.Code)
	}
	// Output: E_BAD_TOPIC
}

// Publishing through nsqd's HTTP API needs no connection setup.
func ExampleHTTPProducer() {
	hp, err := nsq.NewHTTPProducer("http://127.0.0.1:4151", nil)
	if err != nil {
		log.Fatal(err)
	}
	err = hp.DeferredPublish(context.Background(), "reminders", time.Minute, []byte("ping me"))
	var httpErr *nsq.HTTPError
	if errors.As(err, &httpErr) {
		log.Printf("nsqd said %d %s", httpErr.StatusCode, httpErr.Message)
	}
}

// A Config needs only the fields that differ from the defaults, and Validate reports every
// problem at once.
func ExampleConfig_Validate() {
	cfg := &nsq.Config{Snappy: true, Deflate: true, SampleRate: 120}
	fmt.Println(cfg.Validate())
	// Output:
	// nsq: config SampleRate: 120 is out of range 0..99
	// nsq: config Snappy: snappy and deflate cannot both be enabled
}
