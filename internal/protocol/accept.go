package protocol

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"
)

// acceptBackoff is how long Accept waits after an accept error that is not a timeout, most
// often file descriptor exhaustion, before trying again.
const acceptBackoff = 50 * time.Millisecond

// Accept accepts connections on ln until ln is closed or ctx ends, handing each to handle,
// which must not block: it starts the connection's goroutine and reports whether it did. When
// it reports false (the daemon is shutting down) Accept closes the connection and returns.
// Accept errors other than ln being closed are logged and retried after a short pause, so
// running out of file descriptors slows the loop down instead of ending or spinning it.
func Accept(ctx context.Context, ln net.Listener, logger *slog.Logger, handle func(net.Conn) bool) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			logger.Error("accept", "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(acceptBackoff):
			}
			continue
		}
		if !handle(conn) {
			_ = conn.Close()
			return
		}
	}
}
