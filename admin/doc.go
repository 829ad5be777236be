// Package admin is Tern's nsqadmin: the web UI over a cluster of nsqd nodes, and NSQ 1.3's
// admin JSON API. It keeps every page, action and /api/* endpoint of NSQ's nsqadmin, works
// over real NSQ daemons as over Tern's, and adds what NSQ's users missed: charts without
// Graphite, depth and rates on the overview, pages that still load when a node is slow or dead,
// and a UI without a JavaScript build chain.
//
// The parts:
//   - Admin (admin.go) owns the listener, the goroutines (HTTP, sampler, notifier) and the
//     shutdown. Options (options.go) are NSQ's flags and config keys.
//   - cluster (cluster.go) reads the cluster through the HTTP APIs: the nodes from every
//     lookupd's /nodes (or each configured nsqd's /info), then every node's /stats, all at
//     once, each request bounded by the client timeouts (client.go). A daemon that fails is an
//     error beside whatever the others answered, never the end of the page. actions.go
//     changes the cluster the way NSQ's admin does. Tern's nsqd extensions have files of
//     their own: a channel's messages (messages.go), settings (settings.go), and dead
//     letters, redrive and replay (deadletters.go); NSQ's nodes are named as lacking them.
//   - A snapshot (snapshot.go) is the whole cluster at one moment, summed over the nodes with
//     NSQ's API shapes (model.go). The snapshotCache fetches one at a time and hands it to every
//     page that asks within a second, so any number of open pages cost the cluster one fan-out
//     per second.
//   - The sampler (sampler.go) records a snapshot every --sample-interval into a ring per
//     topic, per channel and for the cluster: depth, and the rates of messages in and
//     processed, computed per node. chart.go draws an hour of it as SVG.
//   - The pages (pages.go, views.go, templates/, static/) are server-rendered html/template,
//     complete without JavaScript, under a strict Content-Security-Policy. A small script of
//     our own (static/admin.js) refreshes the parts of a page marked data-live every few
//     seconds and asks before an action; without it the server asks.
//   - api.go is NSQ's /api/* and config.go its /config/:opt; notify.go posts NSQ's
//     notification of every action; metrics.go is the admin's own /metrics.
//   - Tern's additions, each off by default: HTTPS (--tls-cert, reloaded through
//     internal/tlsfiles), and login (auth.go, password.go): users from --user with PBKDF2
//     hashes, sessions in signed cookies, HTTP Basic for the API. http.go wraps every answer
//     in the security headers and the cross-origin check, then the login check.
//
// # Locks
//
// Each lock guards its own fields and none is held while another is taken, or during I/O:
// snapshotCache.mu (the current snapshot and the fetch under way), sampler.mu (the rings),
// pages.probeMu (which nodes serve /metrics), auth.mu (login attempts per address and per
// address and user name, and verified Basic credentials; never held while hashing, which
// waits on auth.slots instead), Admin.configMu (serialises PUT /config; the options
// themselves are swapped whole through an atomic pointer).
//
// # Running one in a test
//
//	opts := admin.NewOptions()
//	opts.HTTPAddress = "127.0.0.1:0"
//	opts.NSQLookupdHTTPAddresses = []string{lookupdHTTPAddr}
//	a, err := admin.New(opts, logger, nil) // nil registry: the admin makes its own
//	if err != nil {
//		t.Fatal(err)
//	}
//	ctx, cancel := context.WithCancel(context.Background())
//	done := make(chan error, 1)
//	go func() { done <- a.Run(ctx) }()
//	t.Cleanup(func() { cancel(); <-done })
//	// The UI is at "http://" + a.HTTPAddr().String() + "/".
package admin
