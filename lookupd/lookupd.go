package lookupd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ternmq/tern/internal/connlimit"
	"github.com/ternmq/tern/internal/goroutines"
	"github.com/ternmq/tern/internal/logging"
	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/tlsfiles"
	"github.com/ternmq/tern/internal/version"
)

// ErrAlreadyRun is returned by a second call to Run: a Lookupd serves once, and its listeners
// are closed when the first Run returns.
var ErrAlreadyRun = errors.New("lookupd already run")

const (
	httpReadHeaderTimeout = 10 * time.Second
	// httpReadTimeout bounds reading a whole request. No lookupd endpoint takes a body, so a
	// client still sending one after this is not a client.
	httpReadTimeout = 30 * time.Second
	httpIdleTimeout = 120 * time.Second
	// httpWriteTimeout bounds writing one answer (see httpapi.Config.WriteTimeout).
	httpWriteTimeout    = 30 * time.Second
	httpShutdownTimeout = 5 * time.Second
)

// timeouts are the limits on slow and silent clients, the constants' values outside tests.
type timeouts struct {
	handshake      time.Duration // the TCP magic and first command (handshakeTimeout)
	httpReadHeader time.Duration // a request's header: a slowloris client is dropped after it
	httpRead       time.Duration // a whole request
	httpIdle       time.Duration // between keep-alive requests
}

func defaultTimeouts() timeouts {
	return timeouts{
		handshake:      handshakeTimeout,
		httpReadHeader: httpReadHeaderTimeout,
		httpRead:       httpReadTimeout,
		httpIdle:       httpIdleTimeout,
	}
}

// Lookupd is one nsqlookupd: a registry of nsqd nodes with their topics and channels, filled
// over the V1 TCP protocol and queried over HTTP. New binds both listeners; Run serves until
// its context ends and then shuts down.
type Lookupd struct {
	opts     Options // a copy, never changed after New
	logger   *slog.Logger
	hostname string
	registry *prometheus.Registry
	db       *registrationDB
	counters *counters

	// The listeners are limited by limiter (--max-connections, --max-connections-per-ip):
	// a connection over the limits is refused before it reaches the daemon.
	tcpListener  net.Listener
	httpListener net.Listener
	limiter      *connlimit.Limiter
	tls          *tlsfiles.Files // nil without --tls-cert

	// timeouts bound slow and silent clients; tests shorten them before Run.
	timeouts timeouts

	peerLogLimit logLimiter

	ran        atomic.Bool
	exiting    atomic.Bool
	nextPeerID atomic.Uint64
	goroutines goroutines.Tracker

	// connsMu guards conns and connsClosed. Once connsClosed is set no connection is added:
	// Run has closed every one in the map and a late one must close itself.
	connsMu     sync.Mutex
	conns       map[uint64]net.Conn
	connsClosed bool
}

// New validates opts and binds the TCP and HTTP listeners. The daemon's metrics are registered
// on reg and GET /metrics serves everything reg gathers; with a nil reg the daemon makes its
// own, with the Go and process collectors. A nil logger discards the logs.
func New(opts *Options, logger *slog.Logger, reg *prometheus.Registry) (*Lookupd, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	level, _ := logging.ParseLevel(opts.LogLevel) // Validate checked it
	hostname, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("hostname: %w", err)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	l := &Lookupd{
		opts:     *opts,
		logger:   slog.New(logging.NewLevelHandler(logger.Handler(), level)),
		hostname: hostname,
		registry: reg,
		db:       newRegistrationDB(),
		counters: newCounters(),
		conns:    make(map[uint64]net.Conn),
		timeouts: defaultTimeouts(),
	}
	if l.tls, err = tlsfiles.Load(opts.tlsConfig(), l.logger.With("component", "tls")); err != nil {
		return nil, err
	}
	tl, err := protocol.Listen(opts.TCPAddress)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", opts.TCPAddress, err)
	}
	hl, err := protocol.Listen(opts.HTTPAddress)
	if err != nil {
		_ = tl.Close()
		return nil, fmt.Errorf("listen on %s: %w", opts.HTTPAddress, err)
	}
	l.limiter = connlimit.New(connlimit.Config{
		Max: opts.MaxConnections, PerIP: opts.MaxConnectionsPerIP, Namespace: metricsNamespace,
		Logger: l.logger.With("component", "connlimit"),
	})
	// TLS only, when configured: a lookupd that offers TLS and takes plain text as well
	// protects nothing.
	var tlsConfig *tls.Config
	if l.tls != nil {
		tlsConfig = l.tls.Server()
	}
	l.tcpListener = l.limiter.Listen(tl, connlimit.Port{Name: "tcp", TLS: tlsConfig, Refuse: refuseV1})
	l.httpListener = l.limiter.Listen(hl, connlimit.Port{Name: "http", TLS: tlsConfig, Refuse: connlimit.RefuseHTTP})
	if err := l.registerMetrics(reg); err != nil {
		_ = l.tcpListener.Close()
		_ = l.httpListener.Close()
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	return l, nil
}

// TCPAddr returns the address the V1 protocol listens on.
func (l *Lookupd) TCPAddr() net.Addr { return l.tcpListener.Addr() }

// HTTPAddr returns the address the HTTP API listens on.
func (l *Lookupd) HTTPAddr() net.Addr { return l.httpListener.Addr() }

// Reload re-reads the TLS certificate, key and root CA files (the binary calls it on SIGHUP;
// a change to the files is noticed by itself too). A failure keeps the files in use.
func (l *Lookupd) Reload() error {
	if l.tls == nil {
		return nil
	}
	return l.tls.Reload()
}

// Run serves until ctx is cancelled, then shuts down and returns: it stops accepting, makes
// GET /ping answer 500, lets HTTP requests under way finish (for up to 5 s), closes every nsqd
// connection and waits for every goroutine it started. Registrations are in memory only and
// are gone with the Lookupd.
func (l *Lookupd) Run(ctx context.Context) error {
	if l.ran.Swap(true) {
		return ErrAlreadyRun
	}
	httpServer := l.newHTTPServer(l.newHTTPAPI())
	l.goroutines.Go(func() { l.acceptLoop(ctx) })
	if l.tls != nil {
		l.goroutines.Go(func() { l.tls.Watch(ctx) })
	}
	l.goroutines.Go(func() {
		if err := httpServer.Serve(l.httpListener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.logger.Error("http server", "error", err)
		}
	})
	l.logger.Info("nsqlookupd started", "version", version.Binary,
		"tcp_address", l.TCPAddr().String(), "http_address", l.HTTPAddr().String(), "tls", l.tls != nil,
		"broadcast_address", l.opts.BroadcastAddress,
		"max_connections", l.opts.MaxConnections, "max_connections_per_ip", l.opts.MaxConnectionsPerIP)

	<-ctx.Done()
	l.logger.Info("nsqlookupd shutting down")
	l.exiting.Store(true)
	_ = l.tcpListener.Close()
	l.goroutines.Stop()

	// A fresh context: ctx is already done, and requests under way deserve their moment.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
	if err := httpServer.Shutdown(shutdownCtx); err != nil {
		_ = httpServer.Close()
	}
	cancel()

	l.connsMu.Lock()
	l.connsClosed = true
	for _, c := range l.conns {
		_ = c.Close()
	}
	l.connsMu.Unlock()

	l.goroutines.Wait()
	l.logger.Info("nsqlookupd stopped")
	return nil
}

// acceptLoop accepts V1 connections until the listener is closed. It runs in the tracker;
// each connection's goroutine is started through the tracker too, so Run waits for it.
func (l *Lookupd) acceptLoop(ctx context.Context) {
	protocol.Accept(ctx, l.tcpListener, l.logger, func(conn net.Conn) bool {
		id := l.nextPeerID.Add(1)
		return l.goroutines.Go(func() { l.handleConn(id, conn) })
	})
}

// trackConn records conn so that Run can close it at shutdown; it reports false, having
// recorded nothing, once shutdown has closed the connections.
func (l *Lookupd) trackConn(id uint64, conn net.Conn) bool {
	l.connsMu.Lock()
	defer l.connsMu.Unlock()
	if l.connsClosed {
		return false
	}
	l.conns[id] = conn
	return true
}

func (l *Lookupd) untrackConn(id uint64) {
	l.connsMu.Lock()
	delete(l.conns, id)
	l.connsMu.Unlock()
}

func (l *Lookupd) connCount() int {
	l.connsMu.Lock()
	defer l.connsMu.Unlock()
	return len(l.conns)
}
