package toolflag

import (
	"context"
	"log/slog"
	"sync"

	"github.com/ternmq/tern/nsq"
)

// StopConsumers stops the consumers gracefully, all at once, each within what is left of
// ctx: one slow to drain does not eat into the others' time, as it would if they were
// stopped one after another on one budget. A consumer that does not drain in time is
// logged; nsqd delivers what it still held again.
func StopConsumers(ctx context.Context, logger *slog.Logger, consumers ...*nsq.Consumer) {
	var wg sync.WaitGroup
	for _, c := range consumers {
		wg.Go(func() {
			if err := c.Stop(ctx); err != nil {
				logger.Warn("consumer did not drain", "consumer", c.String(), "error", err)
			}
		})
	}
	wg.Wait()
}
