// Package nsqd is Tern's message daemon: it accepts publishes over the NSQ V2 TCP protocol,
// stores each topic's messages once in an append-only log (package logstore), and delivers
// them to every channel of the topic, tracking each delivery until it is finished.
//
// The parts:
//   - NSQD (nsqd.go) owns the listeners, the topic map, the metadata file and the shutdown.
//   - Topic (topic.go) owns a log and its channels; a publish is one group-committed append.
//   - Channel (channel.go) is a cursor into its topic's log plus delivery state: messages in
//     flight, requeued and deferred, and the acknowledged set, checkpointed to disk.
//   - The scheduler (scheduler.go) is one exact timer shared by every channel for timeouts,
//     requeue delays and deferred messages.
//   - client.go and protocol_v2.go are one TCP connection: a read loop that parses commands and
//     a pump that writes messages while the client's in-flight count is below its RDY.
//   - http.go is NSQ's HTTP API; stats.go takes the one snapshot that /stats, /metrics
//     (metrics.go) and the statsd push (statsd.go) all report from.
//   - lookup.go keeps one connection per nsqlookupd, registering topics and channels as they
//     come and go, without ever holding up a publish.
package nsqd
