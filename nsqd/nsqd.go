package nsqd

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ternmq/tern/internal/connlimit"
	"github.com/ternmq/tern/internal/logging"
	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/tlsfiles"
	"github.com/ternmq/tern/internal/version"
	"github.com/ternmq/tern/nsqd/logstore"
)

// Errors of the engine-level administration calls.
var (
	// ErrTopicNotFound means no topic has the name.
	ErrTopicNotFound = errors.New("topic not found")
	// ErrChannelNotFound means the topic has no channel with the name.
	ErrChannelNotFound = errChannelNotFound
	// ErrInvalidName means a topic or channel name breaks NSQ's naming rule.
	ErrInvalidName = errors.New("invalid name")
	// ErrExiting means the daemon is shutting down.
	ErrExiting = errors.New("exiting")
)

const (
	httpReadHeaderTimeout = 10 * time.Second
	// httpReadTimeout bounds reading a whole request, body included: a client trickling a
	// 5 MiB /mpub body cannot hold a connection longer.
	httpReadTimeout     = 60 * time.Second
	httpIdleTimeout     = 120 * time.Second
	httpShutdownTimeout = 5 * time.Second
)

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

const (
	metadataFile = "nsqd.dat"
	lockFile     = "nsqd.lock"

	checkpointInterval = time.Second
	retainInterval     = 10 * time.Second
)

// NSQD is one message daemon. New binds its listener and loads its state; Run serves until
// its context ends and then shuts down cleanly: stop accepting, disconnect clients, write the
// final channel checkpoints and the metadata, close the logs.
type NSQD struct {
	opts     atomic.Pointer[Options]
	logger   *slog.Logger
	logLevel *slog.LevelVar

	// The listeners are limited by limiter (--max-connections, --max-connections-per-ip):
	// a connection over the limits is refused before it reaches the daemon.
	tcpListener   net.Listener
	httpListener  net.Listener
	httpsListener net.Listener // when TLS is configured and --https-address is set
	limiter       *connlimit.Limiter
	// httpTimeouts are the HTTP and HTTPS servers' limits; tests shorten them before Run.
	httpTimeouts httpTimeouts
	tls          *tlsfiles.Files // nil without --tls-cert
	auth         *authServers    // nil without --auth-http-address
	// lookupdTLSConfig is how nsqd registers with the lookupds over TLS (--lookupd-tls).
	lookupdTLSConfig *tls.Config
	registry         *prometheus.Registry
	lock             *os.File
	sched            *scheduler
	ids              *idGenerator
	memBudget        *logstore.Budget // --mem-queue-bytes, shared by every topic's hot tail
	proto            *protocolV2
	startTime        time.Time

	exiting       atomic.Bool
	nextClientID  atomic.Int64
	timerLateness latenessHistogram
	healthErr     atomic.Pointer[error]

	mu     sync.RWMutex
	topics map[string]*Topic
	busy   map[string]*topicBusy // names whose topic is being opened or removed, outside mu

	// clientsMu guards clients and conns. conns holds every accepted connection from the
	// moment it is accepted, magic read or not, so that shutdown can close them all at once;
	// clients holds those that became V2 clients.
	clientsMu sync.Mutex
	clients   map[int64]*client
	conns     map[net.Conn]struct{}
	connWG    sync.WaitGroup // one per accepted connection's goroutine
	running   atomic.Bool    // Run has been called

	metaMu sync.Mutex

	lookup lookupPeers // the connections to nsqlookupd (lookup.go)

	work *channelWork // channels with dead letters to move or messages to expire

	ready chan struct{} // closed by Run once everything is serving
}

// New validates opts, locks the data directory, loads topics and channels from the metadata
// file and their checkpoints, and binds the TCP and HTTP listeners. The daemon's metrics are
// registered on reg and GET /metrics serves everything reg gathers; with a nil reg the daemon
// makes its own, with the Go and process collectors.
func New(opts *Options, logger *slog.Logger, reg *prometheus.Registry) (*NSQD, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	o := *opts
	if o.DataPath == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("data path: %w", err)
		}
		o.DataPath = wd
	}
	logLevel := new(slog.LevelVar)
	if l, err := logging.ParseLevel(o.LogLevel); err == nil {
		logLevel.Set(l)
	}
	n := &NSQD{
		logger:    slog.New(logging.NewLevelHandler(logger.Handler(), logLevel)),
		logLevel:  logLevel,
		sched:     newScheduler(),
		ids:       newIDGenerator(o.NodeID, 0),
		memBudget: logstore.NewBudget(o.MemQueueBytes),
		topics:    make(map[string]*Topic),
		busy:      make(map[string]*topicBusy),
		clients:   make(map[int64]*client),
		conns:     make(map[net.Conn]struct{}),
		startTime: time.Now(),
		ready:     make(chan struct{}),
		work:      newChannelWork(),

		httpTimeouts: defaultHTTPTimeouts(),
	}
	n.opts.Store(&o)
	n.proto = &protocolV2{n: n}
	tlsFiles, err := tlsfiles.Load(o.tlsConfig(), n.logger.With("component", "tls"))
	if err != nil {
		return nil, err
	}
	n.tls = tlsFiles
	if n.auth, err = newAuthServers(&o); err != nil {
		return nil, err
	}
	if o.LookupdTLS {
		roots, err := tlsfiles.RootCAs(o.TLSRootCAFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-root-ca-file: %w", err)
		}
		n.lookupdTLSConfig = &tls.Config{RootCAs: roots, MinVersion: tlsfiles.Version(o.TLSMinVersion)}
		if n.tls != nil {
			n.lookupdTLSConfig.GetClientCertificate = n.tls.ClientCertificate
		}
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	n.registry = reg
	n.limiter = connlimit.New(connlimit.Config{
		Max: o.MaxConnections, PerIP: o.MaxConnectionsPerIP, Namespace: "nsqd",
		Logger: n.logger.With("component", "connlimit"),
	})

	if err := os.MkdirAll(o.DataPath, 0o755); err != nil {
		return nil, fmt.Errorf("data path: %w", err)
	}
	lock, err := lockDir(o.DataPath)
	if err != nil {
		return nil, err
	}
	n.lock = lock
	if err := n.loadMetadata(); err != nil {
		n.closeTopics()
		n.unlock()
		return nil, err
	}
	ln, err := protocol.Listen(o.TCPAddress)
	if err != nil {
		n.closeTopics()
		n.unlock()
		return nil, fmt.Errorf("listen on %s: %w", o.TCPAddress, err)
	}
	n.tcpListener = n.limiter.Listen(ln, connlimit.Port{Name: "tcp", Refuse: refuseV2})
	if o.HTTPAddress != "" {
		hl, err := protocol.Listen(o.HTTPAddress)
		if err != nil {
			ln.Close()
			n.closeTopics()
			n.unlock()
			return nil, fmt.Errorf("listen on %s: %w", o.HTTPAddress, err)
		}
		n.httpListener = n.limiter.Listen(hl, connlimit.Port{Name: "http", Refuse: connlimit.RefuseHTTP})
	}
	if n.tls != nil && o.HTTPSAddress != "" {
		hl, err := protocol.Listen(o.HTTPSAddress)
		if err != nil {
			n.closeListeners()
			n.closeTopics()
			n.unlock()
			return nil, fmt.Errorf("listen on %s: %w", o.HTTPSAddress, err)
		}
		n.httpsListener = n.limiter.Listen(hl, connlimit.Port{Name: "https", TLS: n.tls.Server(), Refuse: connlimit.RefuseHTTP})
	}
	if err := n.registerMetrics(reg); err != nil {
		n.closeListeners()
		n.closeTopics()
		n.unlock()
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	return n, nil
}

func (n *NSQD) closeListeners() {
	_ = n.tcpListener.Close()
	if n.httpListener != nil {
		_ = n.httpListener.Close()
	}
	if n.httpsListener != nil {
		_ = n.httpsListener.Close()
	}
}

// HTTPSAddr returns the address the HTTPS API listens on, or nil without TLS or
// --https-address.
func (n *NSQD) HTTPSAddr() net.Addr {
	if n.httpsListener == nil {
		return nil
	}
	return n.httpsListener.Addr()
}

// Reload re-reads what nsqd takes from files without a restart: the TLS certificate, key and
// root CA (the binary calls it on SIGHUP; a change to the files is noticed by itself too).
// New connections get the new certificate; established ones keep theirs. A failure keeps
// the files in use.
func (n *NSQD) Reload() error {
	if n.tls == nil {
		return nil
	}
	return n.tls.Reload()
}

// Ready is closed once Run has started every listener and background task: from then on the
// daemon serves, and its set of goroutines is complete.
func (n *NSQD) Ready() <-chan struct{} { return n.ready }

// HTTPAddr returns the address the HTTP API listens on, or nil when it is disabled.
func (n *NSQD) HTTPAddr() net.Addr {
	if n.httpListener == nil {
		return nil
	}
	return n.httpListener.Addr()
}

func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock data path: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock data path %s (is another nsqd using it?): %w", dir, err)
	}
	return f, nil
}

func (n *NSQD) unlock() {
	if n.lock != nil {
		_ = syscall.Flock(int(n.lock.Fd()), syscall.LOCK_UN)
		_ = n.lock.Close()
	}
}

func (n *NSQD) getOpts() *Options { return n.opts.Load() }

// TCPAddr returns the address the V2 protocol listens on.
func (n *NSQD) TCPAddr() net.Addr { return n.tcpListener.Addr() }

// ErrRunTwice is returned by a second call of Run: a daemon runs once.
var ErrRunTwice = errors.New("nsqd: Run called twice")

// Run serves until ctx is cancelled, then shuts down and returns. It may be called once.
func (n *NSQD) Run(ctx context.Context) error {
	if !n.running.CompareAndSwap(false, true) {
		return ErrRunTwice
	}
	// The scheduler and housekeeping outlive ctx: they stop only after the clients are gone,
	// so nothing they do races the final checkpoints.
	bgCtx, stopBackground := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	bg.Go(func() { n.sched.run(bgCtx) })
	bg.Go(func() { n.housekeeping(bgCtx) })
	if n.getOpts().StatsdAddress != "" {
		bg.Go(func() { n.statsdLoop(bgCtx) })
	}
	bg.Go(func() { n.lookupLoop(bgCtx) })
	bg.Go(func() { n.channelWorker(bgCtx) })
	if n.tls != nil {
		bg.Go(func() { n.tls.Watch(bgCtx) })
	}
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		n.acceptLoop(ctx)
	}()
	var httpServer *http.Server
	httpDone := make(chan struct{})
	if n.httpListener != nil {
		httpServer = n.newHTTPServer(n.httpHandler(), n.httpTimeouts)
		go func() {
			defer close(httpDone)
			if err := httpServer.Serve(n.httpListener); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.logger.Error("http server", "error", err)
			}
		}()
	} else {
		close(httpDone)
	}
	var httpsServer *http.Server
	httpsDone := make(chan struct{})
	if n.httpsListener != nil {
		httpsServer = n.newHTTPServer(n.httpsHandler(), n.httpTimeouts)
		go func() {
			defer close(httpsDone)
			if err := httpsServer.Serve(n.httpsListener); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.logger.Error("https server", "error", err)
			}
		}()
	} else {
		close(httpsDone)
	}
	n.logger.Info("nsqd started", "version", version.Binary, "tcp_address", n.TCPAddr().String(),
		"http_address", addrString(n.HTTPAddr()), "https_address", addrString(n.HTTPSAddr()),
		"tls", n.tls != nil, "tls_required", n.getOpts().tlsRequired(), "data_path", n.getOpts().DataPath,
		"max_connections", n.getOpts().MaxConnections, "max_connections_per_ip", n.getOpts().MaxConnectionsPerIP)
	close(n.ready)

	<-ctx.Done()
	n.logger.Info("nsqd shutting down")
	n.exiting.Store(true)
	_ = n.tcpListener.Close()
	<-acceptDone
	for _, srv := range []*http.Server{httpServer, httpsServer} {
		if srv == nil {
			continue
		}
		// Requests under way get a moment to finish; new ones are refused.
		shutdownCtx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
		if err := srv.Shutdown(shutdownCtx); err != nil {
			_ = srv.Close()
		}
		cancel()
	}
	<-httpDone
	<-httpsDone

	n.clientsMu.Lock()
	for _, c := range n.clients {
		c.close()
	}
	for conn := range n.conns {
		_ = conn.Close() // those that never sent the magic, and any client's again
	}
	n.clientsMu.Unlock()
	n.connWG.Wait()

	stopBackground()
	bg.Wait()
	n.auth.close()
	err := n.closeTopics()
	if merr := n.writeMetadata(true); merr != nil {
		err = errors.Join(err, merr)
	}
	n.unlock()
	if err != nil {
		n.logger.Error("shutdown", "error", err)
	}
	n.logger.Info("nsqd stopped")
	return err
}

// acceptLoop accepts V2 connections until the listener closes; each connection runs in its
// own goroutine tracked by n.connWG, and is in n.conns until it ends, so that shutdown
// closes it whatever it is doing.
func (n *NSQD) acceptLoop(ctx context.Context) {
	protocol.Accept(ctx, n.tcpListener, n.logger, func(conn net.Conn) bool {
		n.clientsMu.Lock()
		if n.exiting.Load() {
			n.clientsMu.Unlock()
			_ = conn.Close()
			return true
		}
		n.conns[conn] = struct{}{}
		n.connWG.Add(1)
		n.clientsMu.Unlock()
		go func() {
			defer n.connWG.Done()
			defer func() {
				n.clientsMu.Lock()
				delete(n.conns, conn)
				n.clientsMu.Unlock()
			}()
			n.handleConn(ctx, conn)
		}()
		return true
	})
}

// refuseV2 answers a TCP connection over --max-connections or --max-connections-per-ip
// with a fatal error frame, written at once, before the client's magic: a client reads it
// as the answer to its first command, go-nsq as "failed to IDENTIFY - E_TOO_MANY_CONNECTIONS
// too many connections (max 100)".
func refuseV2(w io.ReadWriter, r connlimit.Refusal) error {
	_, err := w.Write(protocol.AppendFrame(nil, protocol.FrameTypeError, []byte(r.Text())))
	return err
}

// handleConn reads the protocol magic and runs the V2 protocol. The magic and the first
// command must arrive within the client timeout of the connection's start, however slowly
// they trickle in (ioLoop keeps this deadline for the first command); NSQ waits for the
// magic forever.
func (n *NSQD) handleConn(ctx context.Context, conn net.Conn) {
	opts := n.getOpts()
	_ = conn.SetReadDeadline(time.Now().Add(opts.ClientTimeout))
	var magic [4]byte
	if _, err := io.ReadFull(conn, magic[:]); err != nil {
		conn.Close()
		return
	}
	if string(magic[:]) != protocol.MagicV2 {
		// NSQ's answer is the bare code; what was wrong goes to the log.
		n.logger.Debug("bad protocol magic", "client", addrString(conn.RemoteAddr()), "magic", fmt.Sprintf("%q", magic[:]))
		frame := protocol.AppendFrame(nil, protocol.FrameTypeError, []byte(protocol.ErrBadProtocol))
		_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = conn.Write(frame)
		conn.Close()
		return
	}
	c := newClient(n.nextClientID.Add(1), conn, opts)
	n.clientsMu.Lock()
	if n.exiting.Load() {
		n.clientsMu.Unlock()
		conn.Close()
		return
	}
	n.clients[c.id] = c
	n.clientsMu.Unlock()
	n.proto.ioLoop(ctx, c)
}

func (n *NSQD) removeClient(c *client) {
	n.clientsMu.Lock()
	delete(n.clients, c.id)
	n.clientsMu.Unlock()
}

// housekeeping checkpoints changed channels every second, fsyncs the logs every
// --sync-timeout and deletes consumed segments every ten seconds. It stops with ctx.
func (n *NSQD) housekeeping(ctx context.Context) {
	tick := time.NewTicker(checkpointInterval)
	defer tick.Stop()
	lastSync, lastRetain := time.Now(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			n.probeStorage()
			syncDue := now.Sub(lastSync) >= n.getOpts().SyncTimeout
			retainDue := now.Sub(lastRetain) >= retainInterval
			for _, t := range n.Topics() {
				if syncDue {
					if err := t.log.Sync(); err != nil {
						t.logger.Error("sync topic log", "error", err)
					}
				}
				t.dropConsumedHot()
				var err error
				if retainDue {
					err = t.retain()
				} else {
					err = t.checkpoint(false)
				}
				if err != nil {
					t.logger.Error("checkpoint", "error", err)
				}
			}
			if syncDue {
				lastSync = now
			}
			if retainDue {
				lastRetain = now
			}
		}
	}
}

// Topics returns every topic sorted by name.
func (n *NSQD) Topics() []*Topic {
	n.mu.RLock()
	ts := make([]*Topic, 0, len(n.topics))
	for _, t := range n.topics {
		ts = append(ts, t)
	}
	n.mu.RUnlock()
	slices.SortFunc(ts, func(a, b *Topic) int { return cmp.Compare(a.name, b.name) })
	return ts
}

// Topic returns the named topic or nil.
func (n *NSQD) Topic(name string) *Topic {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.topics[name]
}

// getOrCreateTopic returns the named topic, creating it (and its log) if needed. Opening a
// log is file I/O (a recovery scan, for a topic that existed before), so it happens outside
// n.mu: the name is marked busy, and whoever asks for it meanwhile waits for that opening
// rather than the whole daemon waiting for the disk. A name busy because its topic's files
// are being removed is waited for the same way, so a new topic never opens files that are
// being deleted.
func (n *NSQD) getOrCreateTopic(name string) (*Topic, error) {
	n.mu.RLock()
	t := n.topics[name]
	n.mu.RUnlock()
	if t != nil {
		return t, nil
	}
	for {
		n.mu.Lock()
		if n.exiting.Load() {
			n.mu.Unlock()
			return nil, ErrExiting
		}
		if t = n.topics[name]; t != nil {
			n.mu.Unlock()
			return t, nil
		}
		b, busy := n.busy[name]
		if !busy {
			b = &topicBusy{done: make(chan struct{})}
			n.busy[name] = b
		}
		n.mu.Unlock()
		if busy {
			<-b.done
			if b.err != nil {
				return nil, b.err
			}
			continue // opened (or removed): look again
		}
		return n.createTopic(name, b)
	}
}

// topicBusy marks a topic name while its topic is opened or its files removed; done is
// closed when that is over, and err is what made an opening fail.
type topicBusy struct {
	done chan struct{}
	err  error
}

// createTopic opens the named topic for c, which getOrCreateTopic registered, and adds it to
// the topic map.
func (n *NSQD) createTopic(name string, c *topicBusy) (*Topic, error) {
	t, err := openTopic(name, n.topicEnv())
	n.mu.Lock()
	delete(n.busy, name)
	if err == nil && n.exiting.Load() {
		err = ErrExiting
	}
	if err == nil {
		n.topics[name] = t
	}
	c.err = err
	n.mu.Unlock()
	close(c.done)
	if err != nil {
		if t != nil {
			_ = t.close()
		}
		return nil, err
	}
	n.logger.Info("topic created", "topic", name)
	n.registrationChanged(registration{topic: name, added: true})
	if !t.ephemeral {
		n.metadataChanged()
	}
	return t, nil
}

// topicEnv is what every topic of the daemon shares.
func (n *NSQD) topicEnv() topicEnv {
	return topicEnv{
		dataPath: n.getOpts().DataPath,
		opts:     n.getOpts,
		ids:      n.ids,
		sched:    n.sched,
		hooks:    n,
		logger:   n.logger,
		budget:   n.memBudget,
	}
}

// CreateTopic returns the named topic, creating it if needed.
func (n *NSQD) CreateTopic(name string) (*Topic, error) {
	if !protocol.IsValidTopicName(name) {
		return nil, fmt.Errorf("topic %q: %w", name, ErrInvalidName)
	}
	return n.getOrCreateTopic(name)
}

// Publish appends bodies to the named topic, creating it if needed; with a positive deferral
// they are delivered no earlier than that from now.
func (n *NSQD) Publish(topic string, bodies [][]byte, deferral time.Duration) error {
	t, err := n.CreateTopic(topic)
	if err != nil {
		return err
	}
	return t.publish(bodies, int64(deferral))
}

// DeleteTopic deletes a topic, its channels and its data.
func (n *NSQD) DeleteTopic(name string) error {
	n.mu.Lock()
	t, ok := n.topics[name]
	if !ok {
		n.mu.Unlock()
		return ErrTopicNotFound
	}
	delete(n.topics, name)
	b := &topicBusy{done: make(chan struct{})}
	n.busy[name] = b
	n.mu.Unlock()
	err := t.delete()
	n.mu.Lock()
	delete(n.busy, name)
	n.mu.Unlock()
	close(b.done)
	n.logger.Info("topic deleted", "topic", name)
	n.registrationChanged(registration{topic: name, added: false})
	n.metadataChanged()
	return err
}

// EmptyTopic drops the topic's own backlog (see Topic.empty).
func (n *NSQD) EmptyTopic(name string) error {
	t := n.Topic(name)
	if t == nil {
		return ErrTopicNotFound
	}
	return t.empty()
}

// PauseTopic pauses or resumes a topic and persists the state.
func (n *NSQD) PauseTopic(name string, paused bool) error {
	t := n.Topic(name)
	if t == nil {
		return ErrTopicNotFound
	}
	t.setPaused(paused)
	return nil
}

// CreateChannel creates a channel on an existing topic.
func (n *NSQD) CreateChannel(topic, channel string) (*Channel, error) {
	if !protocol.IsValidChannelName(channel) {
		return nil, fmt.Errorf("channel %q: %w", channel, ErrInvalidName)
	}
	t := n.Topic(topic)
	if t == nil {
		return nil, ErrTopicNotFound
	}
	return t.getOrCreateChannel(channel)
}

func (n *NSQD) channel(topic, channel string) (*Topic, *Channel, error) {
	t := n.Topic(topic)
	if t == nil {
		return nil, nil, ErrTopicNotFound
	}
	ch := t.Channel(channel)
	if ch == nil {
		return t, nil, ErrChannelNotFound
	}
	return t, ch, nil
}

// DeleteChannel deletes a channel, disconnecting its clients.
func (n *NSQD) DeleteChannel(topic, channel string) error {
	t, _, err := n.channel(topic, channel)
	if err != nil {
		return err
	}
	return t.deleteChannel(channel)
}

// EmptyChannel drops every message of a channel.
func (n *NSQD) EmptyChannel(topic, channel string) error {
	_, ch, err := n.channel(topic, channel)
	if err != nil {
		return err
	}
	ch.empty()
	return nil
}

// PauseChannel pauses or resumes delivery on a channel and persists the state.
func (n *NSQD) PauseChannel(topic, channel string, paused bool) error {
	_, ch, err := n.channel(topic, channel)
	if err != nil {
		return err
	}
	ch.setPaused(paused)
	n.metadataChanged()
	return nil
}

// TimerLateness reports how late messages released by a timer (deferred, delayed requeues,
// timeouts) were written to their clients.
func (n *NSQD) TimerLateness() TimerLateness { return n.timerLateness.snapshot() }

// metadataChanged persists topics, channels and paused state; it implements topicHooks.
func (n *NSQD) metadataChanged() {
	if err := n.writeMetadata(false); err != nil {
		n.logger.Error("write metadata", "error", err)
	}
}

// storageResult records the outcome of a log write: the first failure makes the daemon
// unhealthy (GET /ping answers 500), the next success makes it healthy again.
func (n *NSQD) storageResult(err error) {
	if err == nil {
		if n.healthErr.Load() != nil {
			n.healthErr.Store(nil)
			n.logger.Info("storage healthy again")
		}
		return
	}
	if n.healthErr.Swap(&err) == nil {
		n.logger.Error("storage failing", "error", err)
	}
}

// Health returns nil while storage works, else the last storage error.
func (n *NSQD) Health() error {
	if p := n.healthErr.Load(); p != nil {
		return *p
	}
	return nil
}

func (n *NSQD) healthString() string {
	if err := n.Health(); err != nil {
		return "NOK - " + err.Error()
	}
	return "OK"
}

// channelChanged implements topicHooks.
func (n *NSQD) channelChanged(topic, channel string, added bool) {
	n.registrationChanged(registration{topic: topic, channel: channel, added: added})
}

// ephemeralTopicEmpty deletes an ephemeral topic whose last channel went away.
func (n *NSQD) ephemeralTopicEmpty(t *Topic) {
	n.mu.Lock()
	if n.topics[t.name] != t {
		n.mu.Unlock()
		return
	}
	delete(n.topics, t.name)
	n.mu.Unlock()
	if err := t.delete(); err != nil {
		n.logger.Error("delete ephemeral topic", "topic", t.name, "error", err)
	}
	n.logger.Info("ephemeral topic deleted", "topic", t.name)
	n.registrationChanged(registration{topic: t.name, added: false})
}

func (n *NSQD) closeTopics() error {
	var errs []error
	for _, t := range n.Topics() {
		errs = append(errs, t.close())
	}
	return errors.Join(errs...)
}

// metadata is the nsqd.dat file, in NSQ's shape so operators' tooling keeps reading it.
type metadata struct {
	Topics  []topicMetadata `json:"topics"`
	Version string          `json:"version"`
}

type topicMetadata struct {
	Name     string            `json:"name"`
	Paused   bool              `json:"paused"`
	Channels []channelMetadata `json:"channels"`
}

type channelMetadata struct {
	Name   string `json:"name"`
	Paused bool   `json:"paused"`
}

func (n *NSQD) metadataPath() string { return filepath.Join(n.getOpts().DataPath, metadataFile) }

func (n *NSQD) writeMetadata(sync bool) error {
	n.metaMu.Lock()
	defer n.metaMu.Unlock()
	md := metadata{Version: version.Binary, Topics: []topicMetadata{}}
	for _, t := range n.Topics() {
		if t.ephemeral || t.exiting.Load() && !n.exiting.Load() {
			continue
		}
		tm := topicMetadata{Name: t.name, Paused: t.Paused(), Channels: []channelMetadata{}}
		for _, ch := range t.Channels() {
			if ch.ephemeral {
				continue
			}
			tm.Channels = append(tm.Channels, channelMetadata{Name: ch.name, Paused: ch.Paused()})
		}
		md.Topics = append(md.Topics, tm)
	}
	buf, err := json.Marshal(md)
	if err != nil {
		return fmt.Errorf("encode metadata: %w", err)
	}
	return writeFileAtomic(n.metadataPath(), buf, true)
}

func (n *NSQD) loadMetadata() error {
	buf, err := os.ReadFile(n.metadataPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read metadata: %w", err)
	}
	var md metadata
	if err := json.Unmarshal(buf, &md); err != nil {
		return fmt.Errorf("decode metadata %s: %w", n.metadataPath(), err)
	}
	for _, tm := range md.Topics {
		if !protocol.IsValidTopicName(tm.Name) || protocol.IsEphemeral(tm.Name) {
			n.logger.Warn("skipping invalid topic in metadata", "topic", tm.Name)
			continue
		}
		t, err := openTopic(tm.Name, n.topicEnv())
		if err != nil {
			return err
		}
		n.topics[tm.Name] = t
		if tm.Paused {
			t.restorePause()
		}
		for _, cm := range tm.Channels {
			if !protocol.IsValidChannelName(cm.Name) || protocol.IsEphemeral(cm.Name) {
				n.logger.Warn("skipping invalid channel in metadata", "topic", tm.Name, "channel", cm.Name)
				continue
			}
			if err := t.restoreChannel(cm.Name, cm.Paused); err != nil {
				return err
			}
		}
	}
	return nil
}
