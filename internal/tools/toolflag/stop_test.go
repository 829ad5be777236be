package toolflag

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/internal/tools/tooltest"
	"github.com/ternmq/tern/nsq"
)

// TestStopConsumersConcurrently: a consumer whose handler holds a message does not keep
// the next one from stopping; stopped in turn, the second would wait for the first.
func TestStopConsumersConcurrently(t *testing.T) {
	c := tooltest.Start(t, 1, false)
	c.Publish(t, 0, "slow", "m")
	release := make(chan struct{})
	var releaseOnce sync.Once
	handling := make(chan struct{}, 1)
	slow := newConsumer(t, "slow", nsq.HandlerFunc(func(*nsq.Message) error {
		handling <- struct{}{}
		<-release
		return nil
	}))
	quick := newConsumer(t, "quick", nsq.HandlerFunc(func(*nsq.Message) error { return nil }))
	// Cleanups run last first: the handler is released before the consumers are stopped.
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	for _, con := range []*nsq.Consumer{slow, quick} {
		if err := con.ConnectToNSQD(testutil.Context(t), c.TCP(0)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-handling:
	case <-time.After(tooltest.Timeout):
		t.Fatal("the slow consumer got no message")
	}
	// Longer than the wait below: stopped in turn, the quick consumer would wait for it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*tooltest.Timeout)
	defer cancel()
	done := make(chan struct{})
	go func() {
		StopConsumers(ctx, testutil.Logger(t), slow, quick)
		close(done)
	}()
	testutil.Eventually(t, tooltest.Timeout, func() bool { return quick.Stats().Connections == 0 }, "the quick consumer stopped while the slow one drains")
	releaseOnce.Do(func() { close(release) })
	select {
	case <-done:
	case <-time.After(tooltest.Timeout):
		t.Fatal("StopConsumers did not return")
	}
	if st := slow.Stats(); st.MessagesFinished != 1 {
		t.Errorf("slow consumer stats %+v, want its message finished", st)
	}
}

func newConsumer(t *testing.T, topic string, h nsq.Handler) *nsq.Consumer {
	t.Helper()
	cfg := nsq.NewConfig()
	cfg.Logger = testutil.Logger(t)
	con, err := nsq.NewConsumer(topic, "ch", h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = con.Stop(context.Background()) })
	return con
}
