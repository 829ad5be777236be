// Package lookupd is Tern's nsqlookupd: the directory that tells consumers which nsqd nodes
// carry a topic. It is wire-compatible with NSQ 1.3's nsqlookupd: nsqd nodes register over
// the V1 TCP protocol, and consumers, nsqd and nsqadmin query it over NSQ's HTTP API.
//
// The parts:
//   - Lookupd (lookupd.go) owns the two listeners, the connections and the shutdown. Every
//     goroutine it starts goes through one tracker, which Run waits for.
//   - The registry (registry.go) maps each registration (client, topic or topic/channel) to
//     the nsqd peers registered under it, with inactive filtering and per-topic tombstones.
//     It lives in memory only; nsqd registers everything again when it reconnects.
//   - tcp.go is one V1 connection: IDENTIFY, REGISTER, UNREGISTER and PING, every error
//     fatal. A disconnect removes the peer from every registration.
//   - http.go is NSQ's HTTP API (/lookup, /topics, /channels, /nodes, /debug, the create,
//     delete and tombstone endpoints) plus GET /metrics; metrics.go reads the registry at
//     scrape time.
//
// Where NSQ is lax Tern is stricter, always in a way nsqd and NSQ's clients understand: the
// IDENTIFY body is bounded (a huge or negative size is E_BAD_BODY, not an allocation or a
// panic), a connection that never sends the magic is dropped after 10 s and one that goes
// silent after --inactive-producer-timeout, ephemeral registrations vanish with their last
// producer even on disconnect, and a reused remote address cannot clobber another
// connection's registrations.
//
// # Running one in a test
//
// Every address may be 127.0.0.1:0; the accessors return the ports actually bound:
//
//	opts := lookupd.NewOptions()
//	opts.TCPAddress = "127.0.0.1:0"
//	opts.HTTPAddress = "127.0.0.1:0"
//	opts.BroadcastAddress = "127.0.0.1"
//	l, err := lookupd.New(opts, logger, nil) // nil registry: lookupd makes its own
//	if err != nil {
//		t.Fatal(err)
//	}
//	ctx, cancel := context.WithCancel(context.Background())
//	done := make(chan error, 1)
//	go func() { done <- l.Run(ctx) }()
//	t.Cleanup(func() { cancel(); <-done })
//	// nsqd registers with l.TCPAddr().String(); consumers query http://l.HTTPAddr()/lookup.
//
// Shorten opts.InactiveProducerTimeout and opts.TombstoneLifetime to test expiry.
package lookupd
