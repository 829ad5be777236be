// Package nsq is Tern's Go client for NSQ-compatible daemons: Tern's nsqd and NSQ 1.x alike.
//
// The package is built in layers:
//
//   - [Config] (config.go) is plain data with defaults from [NewConfig]; a zero field means
//     its default, and [Config.Validate] reports every problem at once.
//   - A connection (conn.go, unexported) speaks NSQ's TCP protocol V2 to one nsqd: it dials,
//     sends the magic and IDENTIFY with feature negotiation, upgrades to TLS and then snappy
//     or deflate in NSQ's order, authenticates when the server asks, and then runs one read
//     loop (which answers heartbeats itself and hands responses, errors and messages to its
//     owner) and one write pump (which sends everything buffered since its last write in one
//     system call). The Producer is its first owner; a Consumer builds on the same layer.
//   - [Producer] (producer.go) publishes over TCP to one nsqd. Commands from any number of
//     goroutines are pipelined on its one connection and their answers matched FIFO; PUBs
//     issued while an answer is awaited are merged by topic into MPUBs, since nsqd serves
//     one connection's commands one at a time. It connects lazily and reconnects by
//     itself, and a publish issued while it is disconnected waits for the connection (up
//     to its context) rather than failing or being dropped.
//   - [HTTPProducer] (http_producer.go) publishes through nsqd's HTTP /pub and /mpub.
//   - [Consumer] (consumer.go) receives one channel of one topic from any number of nsqds,
//     given directly or found by polling every nsqlookupd (lookupd.go), and runs a
//     [Handler] on Config.HandlerConcurrency goroutines. Each read loop hands its read's
//     messages to the handlers at once, and the handlers' FINs go out in one write per
//     batch. MaxInFlight is spread over the connections by need, and consecutive
//     failures back off (rdy.go); a [Message] (message.go) is finished, requeued with a
//     delay that grows with its attempts, or given up on after Config.MaxAttempts.
//     Stop drains: CLS, then the messages in hand are finished before the connections
//     close.
//
// Errors a server sends on the wire are [*Error] values carrying NSQ's code (such as
// [ErrCodeBadTopic]); HTTP errors are [*HTTPError]. Both are matched with errors.As. Local
// conditions are the sentinels [ErrNotConnected], [ErrNotSent], [ErrStopped] and
// [ErrConnectionLost].
//
// Nothing here logs unless a *slog.Logger is set in [Config.Logger].
package nsq
