package admin

import (
	"context"
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
)

// ErrAlreadyRun is returned by a second call to Run: an Admin serves once, and its listener is
// closed when the first Run returns.
var ErrAlreadyRun = errors.New("nsqadmin already run")

const (
	httpReadHeaderTimeout = 10 * time.Second
	// httpReadTimeout bounds reading a whole request; the largest body is a config value.
	httpReadTimeout = 30 * time.Second
	httpIdleTimeout = 120 * time.Second
	// httpWriteTimeout bounds writing one answer (see httpapi.Config.WriteTimeout).
	httpWriteTimeout    = 60 * time.Second
	httpShutdownTimeout = 5 * time.Second

	// pageMaxAge is how old a snapshot a page may show: many open pages refreshing at once
	// cost the cluster one fan-out per second.
	pageMaxAge = time.Second
)

// httpTimeouts are the HTTP server's limits on slow and idle clients.
type httpTimeouts struct {
	readHeader time.Duration // a request's header: a slowloris client is dropped after it
	read       time.Duration // a whole request
	idle       time.Duration // between keep-alive requests
}

// Admin is one nsqadmin: the web UI and JSON API over a cluster, and the sampler behind its
// charts. New binds the listener; Run serves until its context ends and then shuts down.
type Admin struct {
	opts     atomic.Pointer[Options] // swapped whole by PUT /config
	configMu sync.Mutex              // serialises PUT /config
	level    *slog.LevelVar
	logger   *slog.Logger
	registry *prometheus.Registry
	basePath string // normalised --base-path, "" for the root

	client   *httpClient
	cluster  *cluster
	cache    *snapshotCache
	sampler  *sampler
	notifier *notifier
	pages    *pages
	metrics  *adminMetrics

	// listener is limited by limiter (--max-connections, --max-connections-per-ip): a
	// connection over the limits is answered 503 before it reaches the server.
	listener net.Listener
	limiter  *connlimit.Limiter
	tls      *tlsfiles.Files // nil without --tls-cert: the admin serves plain HTTP
	// timeouts are the HTTP server's limits; tests shorten them before Run.
	timeouts httpTimeouts
	auth     *auth // nil without --user: no login

	// ctx ends when Run shuts down: fetches under way are abandoned.
	ctx    context.Context
	cancel context.CancelFunc

	ran        atomic.Bool
	goroutines goroutines.Tracker
}

// New validates opts, loads the templates, the TLS client configuration and the certificate
// it serves HTTPS with (--tls-cert), and binds the HTTP listener. Metrics are registered on reg and GET /metrics serves everything reg
// gathers; with a nil reg the admin makes its own, with the Go and process collectors. A nil
// logger discards the logs.
func New(opts *Options, logger *slog.Logger, reg *prometheus.Registry) (*Admin, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	level := new(slog.LevelVar)
	l, _ := logging.ParseLevel(opts.LogLevel) // Validate checked it
	level.Set(l)
	hostname, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("hostname: %w", err)
	}
	client, err := newHTTPClient(opts)
	if err != nil {
		return nil, err
	}
	a := &Admin{
		level:    level,
		logger:   slog.New(logging.NewLevelHandler(logger.Handler(), level)),
		registry: reg,
		basePath: normalizeBasePath(opts.BasePath),
		client:   client,
		sampler:  newSampler(opts.SampleInterval),
		timeouts: httpTimeouts{readHeader: httpReadHeaderTimeout, read: httpReadTimeout, idle: httpIdleTimeout},
	}
	o := *opts
	a.opts.Store(&o)
	if a.tls, err = tlsfiles.Load(tlsfiles.Config{
		CertFile: opts.TLSCert, KeyFile: opts.TLSKey, MinVersion: "tls1.2",
	}, a.logger.With("component", "tls")); err != nil {
		return nil, err
	}
	if a.auth, err = newAuth(opts, a.tls != nil, a.basePath, a.logger.With("component", "auth")); err != nil {
		return nil, err
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.cluster = &cluster{client: client, options: a.getOpts}
	a.metrics = newAdminMetrics()
	a.cache = &snapshotCache{fetch: a.fetchSnapshot, start: a.goroutines.Go, ctx: a.ctx}
	a.notifier = newNotifier(opts.NotificationHTTPEndpoint, newNotificationClient(opts), hostname, a.logger.With("component", "notify"))
	if a.pages, err = newPages(a); err != nil {
		a.cancel()
		return nil, err
	}
	a.limiter = connlimit.New(connlimit.Config{
		Max: opts.MaxConnections, PerIP: opts.MaxConnectionsPerIP, Namespace: metricsNamespace,
		Logger: a.logger.With("component", "connlimit"),
	})
	if err := reg.Register(a.metrics); err != nil {
		a.cancel()
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	// The limiter's metrics: nsqadmin_connections_refused_total{listener,reason},
	// nsqadmin_connections_open{listener} and nsqadmin_connections_max (internal/connlimit).
	if err := reg.Register(a.limiter); err != nil {
		a.cancel()
		reg.Unregister(a.metrics)
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	ln, err := protocol.Listen(opts.HTTPAddress)
	if err != nil {
		a.cancel()
		a.unregisterMetrics()
		return nil, fmt.Errorf("listen on %s: %w", opts.HTTPAddress, err)
	}
	port := connlimit.Port{Name: "http", Refuse: connlimit.RefuseHTTP}
	if a.tls != nil {
		port = connlimit.Port{Name: "https", TLS: a.tls.Server(), Refuse: connlimit.RefuseHTTP}
	}
	a.listener = a.limiter.Listen(ln, port)
	return a, nil
}

// Reload re-reads the files the admin takes at start: the --tls-cert and --tls-key it serves
// HTTPS with (the binary calls it on SIGHUP; the files are also watched). On failure the
// certificate in use stays, and the error says why. Without --tls-cert it does nothing.
func (a *Admin) Reload() error {
	if a.tls == nil {
		return nil
	}
	return a.tls.Reload()
}

// TLS reports whether the admin serves HTTPS.
func (a *Admin) TLS() bool { return a.tls != nil }

// getOpts returns the current options; never change what it points to.
func (a *Admin) getOpts() *Options { return a.opts.Load() }

// HTTPAddr returns the address the UI and the API listen on.
func (a *Admin) HTTPAddr() net.Addr { return a.listener.Addr() }

// fetchSnapshot reads the cluster, timing it for /metrics.
func (a *Admin) fetchSnapshot(ctx context.Context) *snapshot {
	start := time.Now()
	s := a.cluster.fetchSnapshot(ctx)
	a.metrics.observeFetch(time.Since(start), s)
	return s
}

// Run serves until ctx is cancelled, then shuts down and returns: it stops accepting, lets
// requests under way finish (for up to 5 s), abandons fetches still waiting on the cluster,
// sends the notifications still queued (for up to 5 s) and waits for every goroutine it
// started.
func (a *Admin) Run(ctx context.Context) error {
	if !a.ran.CompareAndSwap(false, true) {
		return ErrAlreadyRun
	}
	defer a.cancel()
	defer a.client.close()
	a.logger.Info("nsqadmin started", "http_address", a.listener.Addr().String(), "https", a.tls != nil,
		"max_connections", a.getOpts().MaxConnections, "max_connections_per_ip", a.getOpts().MaxConnectionsPerIP,
		"lookupds", a.getOpts().NSQLookupdHTTPAddresses, "nsqds", a.getOpts().NSQDHTTPAddresses)

	server := &http.Server{
		Handler:           a.handler(),
		ReadHeaderTimeout: a.timeouts.readHeader,
		ReadTimeout:       a.timeouts.read,
		IdleTimeout:       a.timeouts.idle,
		ErrorLog:          slog.NewLogLogger(a.logger.Handler(), slog.LevelDebug),
	}
	serveErr := make(chan error, 1)
	a.goroutines.Go(func() {
		if err := server.Serve(a.listener); !errors.Is(err, http.ErrServerClosed) {
			serveErr <- err
		}
	})
	a.goroutines.Go(func() { a.sample(a.ctx) })
	if a.tls != nil {
		a.goroutines.Go(func() { a.tls.Watch(a.ctx) })
	}
	a.goroutines.Go(func() { a.notifier.run(a.ctx) })

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		runErr = fmt.Errorf("http server: %w", err)
	}
	a.logger.Info("nsqadmin stopping")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
	if err := server.Shutdown(shutdownCtx); err != nil {
		_ = server.Close()
	}
	cancel()
	a.goroutines.Stop()
	a.cancel()
	a.goroutines.Wait()
	a.unregisterMetrics()
	a.logger.Info("nsqadmin stopped")
	return runErr
}

// unregisterMetrics takes the admin's metrics off its registry, which may outlive it.
func (a *Admin) unregisterMetrics() {
	a.registry.Unregister(a.metrics)
	a.registry.Unregister(a.limiter)
}

// sample records a snapshot for the charts every sample interval, starting at once, until
// ctx ends. It runs in its own goroutine, owned by Run.
func (a *Admin) sample(ctx context.Context) {
	interval := a.sampler.interval
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		// A snapshot a page fetched moments ago serves as this sample.
		if s, err := a.cache.get(ctx, interval/4); err == nil {
			a.sampler.record(s)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
