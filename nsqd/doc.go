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
//
// # Locks
//
// Where a goroutine holds more than one lock it takes them in this order, and never the
// other way round:
//
//	NSQD.metaMu        writing nsqd.dat (it reads the topics and channels below)
//	NSQD.mu            the topic map
//	Topic.quotaMu      a drop_oldest quota moving the topic's floor (quota.go)
//	Topic.settingsMu   changing settings and the channels' saved settings (settings.go)
//	Topic.diskMu       the topic's files: checkpoints, the pause file, emptying or deleting the log
//	Topic.mu           the channel map, the pause point, where a first channel starts
//	Channel.readMu     the channel's log reader: one reader at a time, for every subscriber
//	Channel.mu         the channel's delivery state
//	scheduler.mu       the timer heap (Channel.mu -> scheduler.mu when a channel registers)
//	logstore.Log       wmu, then qmu or mu: see package logstore
//
// Leaf locks, taken with nothing else inside them: NSQD.clientsMu (connections and clients),
// client.wmu (a connection's output; never held while taking a channel's lock), client.pubMu,
// the lookupd peers' locks, the HTTP /config lock, quantile streams' locks, channelWork.mu (the
// channels waiting for the dead-letter and expiry worker, added to under Channel.mu).
//
// No file I/O happens under NSQD.mu, Topic.mu or Channel.mu: a topic's log is opened, and a
// deleted topic's files removed, outside NSQD.mu (the name is marked busy meanwhile, and
// whoever asks for it waits), pause files and emptying happen under Topic.diskMu, log reads
// under Channel.readMu, and checkpoints are encoded a chunk at a time and written with no
// lock held. The scheduler calls a channel's fire with its own lock released. What the
// delivery path reads of a topic (the pause point, the ranges an emptied paused topic
// dropped) is atomic, so a channel never takes its topic's lock.
package nsqd
