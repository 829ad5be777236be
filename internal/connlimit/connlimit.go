// Package connlimit bounds the connections a daemon accepts, in total and per remote IP, so
// that a flood of connections cannot take the daemon down: without a bound each connection
// costs a file descriptor and a goroutine, and once the descriptors run out the daemon can
// neither accept anyone nor open its own files.
//
// One [Limiter] serves all of a daemon's listeners: --max-connections counts every client
// connection of the daemon together (TCP, HTTP and HTTPS), because what it protects, the
// process's file descriptors, is one budget; --max-connections-per-ip counts one remote
// address's connections across the listeners too (a unix socket's connections have no
// address, and count towards the total only). [Limiter.Listen] wraps a listener: its
// Accept returns only connections within the limits, each giving its place back when it is
// closed. A connection over a limit never reaches the daemon: a short-lived goroutine of the
// package, bounded in number and in time, sends it the port's refusal (an NSQ error frame,
// a V1 error, an HTTP 503) and closes it.
//
// A Limiter is a prometheus.Collector of the refusals and the open connections, and it logs
// refusals at most once per [LogInterval]: a record names the latest refusal's listener,
// reason and address, and the number refused since the last record, so that a flood of
// connections does not flood the log too.
package connlimit

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ternmq/tern/internal/httpapi"
)

// The codes a refusal is reported with.
const (
	// Code is the NSQ error code of a refusal on the TCP protocols, the first word of the
	// error: "E_TOO_MANY_CONNECTIONS too many connections (max 100)".
	Code = "E_TOO_MANY_CONNECTIONS"
	// HTTPCode is the message of the 503 answered over HTTP: {"message":"TOO_MANY_CONNECTIONS"}.
	HTTPCode = "TOO_MANY_CONNECTIONS"
)

// Reasons a connection is refused, the values of the metrics' reason label.
const (
	ReasonMax   = "max_connections"
	ReasonPerIP = "max_connections_per_ip"
)

const (
	// refuseTimeout bounds the life of a refused connection: the TLS handshake, writing the
	// refusal and lingering for the peer to read it.
	refuseTimeout = 2 * time.Second
	// maxRefusing bounds the refused connections being answered at once. Past it a refused
	// connection is closed without an answer: under a flood the daemon spends no more than
	// this many goroutines (and descriptors) on telling clients why.
	maxRefusing = 64
	// lingerMaxBytes bounds what is read and dropped from a refused peer (see answer).
	lingerMaxBytes = 64 * 1024
	// maxRefusedHeader bounds the request header RefuseHTTP reads.
	maxRefusedHeader = 16 * 1024
	// LogInterval is the least time between two log records of refusals.
	LogInterval = 10 * time.Second

	// minReserve and reserveDivisor set the file descriptors DefaultMax leaves the daemon.
	minReserve     = 256
	reserveDivisor = 4
)

// DefaultMax returns the default --max-connections: the process's open-file limit (the soft
// RLIMIT_NOFILE, which the Go runtime raises to the hard limit at start) less a reserve for
// the daemon's own descriptors, a quarter of the limit and at least 256. The bound must sit
// below the limit: a flood that reached the limit itself would leave nsqd unable to open a
// log segment, write a checkpoint or its metadata, and nsqadmin unable to ask the cluster,
// and every daemon unable to accept, where the bound refuses the excess connections with a
// clear error and leaves the daemon its files. A quarter covers nsqd's open segments (one
// per topic and per lagging reader) and checkpoints in the common case; an nsqd with more
// topics than that should set --max-connections, or raise the limit. An unlimited or
// unreadable limit gives 0, unlimited.
func DefaultMax() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return defaultMax(rl.Cur)
}

func defaultMax(soft uint64) int {
	if soft == 0 || soft > math.MaxInt32 {
		return 0
	}
	n := int(soft)
	reserve := max(minReserve, n/reserveDivisor)
	if n <= reserve {
		return max(n/2, 1)
	}
	return n - reserve
}

// Refusal describes a refused connection, for the answer it is sent.
type Refusal struct {
	// Reason is ReasonMax or ReasonPerIP.
	Reason string
	// Max is the limit that was reached.
	Max int
	// Addr is the remote IP; the zero Addr for a connection without one (a unix socket).
	Addr netip.Addr
}

// Message is the refusal in words: "too many connections (max 100)", or "too many
// connections from 10.0.0.7 (max 4 per IP)".
func (r Refusal) Message() string {
	if r.Reason == ReasonPerIP {
		return fmt.Sprintf("too many connections from %s (max %d per IP)", r.Addr, r.Max)
	}
	return fmt.Sprintf("too many connections (max %d)", r.Max)
}

// Text is the refusal as the TCP protocols send it: Code, a space and Message.
func (r Refusal) Text() string { return Code + " " + r.Message() }

// RefuseFunc answers a refused connection. It is called with deadlines set (refuseTimeout).
type RefuseFunc func(rw io.ReadWriter, r Refusal) error

// RefuseHTTP answers a refused HTTP connection as NSQ's APIs answer an error: 503 with
// {"message":"TOO_MANY_CONNECTIONS"}, and Connection: close. It reads the request's header
// first (at most maxRefusedHeader bytes, within the deadline): HTTP clients take an answer
// that comes before their request for a broken connection (Go's: "unsolicited response"),
// not for the answer. A client that sends nothing is closed at the deadline, unanswered.
func RefuseHTTP(rw io.ReadWriter, _ Refusal) error {
	if _, err := http.ReadRequest(bufio.NewReader(io.LimitReader(rw, maxRefusedHeader))); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, io.EOF) {
			return err
		}
		// Not HTTP, or a header too long: answered anyway, it is all there is to say.
	}
	_, err := rw.Write(httpRefusal())
	return err
}

// httpRefusal is the bytes of RefuseHTTP's answer, rendered once by httpapi so that they
// carry what every other API error carries.
var httpRefusal = sync.OnceValue(func() []byte {
	rec := &recorder{header: make(http.Header)}
	httpapi.RespondError(rec, httpapi.NewError(http.StatusServiceUnavailable, HTTPCode))
	resp := &http.Response{
		StatusCode: rec.status, ProtoMajor: 1, ProtoMinor: 1,
		Header: rec.header, Body: io.NopCloser(&rec.body), ContentLength: int64(rec.body.Len()),
		Close: true,
	}
	resp.Header.Del("Content-Length") // Write derives it from ContentLength
	var buf bytes.Buffer
	_ = resp.Write(&buf) // a bytes.Buffer does not fail
	return buf.Bytes()
})

// recorder is the http.ResponseWriter httpRefusal renders into.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(status int)      { r.status = status }
func (r *recorder) Write(p []byte) (int, error) { return r.body.Write(p) }

// Config configures a Limiter.
type Config struct {
	// Max bounds the daemon's connections, all listeners together; 0 is unlimited.
	Max int
	// PerIP bounds one remote IP's connections, all listeners together; 0 is unlimited.
	PerIP int
	// Namespace prefixes the metrics' names: "nsqd", "nsqlookupd", "nsqadmin".
	Namespace string
	// Logger receives the refusal records; nil discards them.
	Logger *slog.Logger
}

// Limiter counts a daemon's open connections against its limits. It is safe for concurrent
// use. Its mu, its logMu and a listener's mu are never held together.
type Limiter struct {
	max, perIP int
	logger     *slog.Logger
	refusing   chan struct{} // capacity maxRefusing: refusals being answered

	mu    sync.Mutex
	open  int
	byIP  map[netip.Addr]int // only with perIP > 0
	ports []*listener        // every listener, for the metrics

	logMu    sync.Mutex
	lastLog  time.Time
	unlogged int // refusals since the last record

	refusedDesc, openDesc, maxDesc *prometheus.Desc
}

// New returns a Limiter with cfg's limits.
func New(cfg Config) *Limiter {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Limiter{
		max:      cfg.Max,
		perIP:    cfg.PerIP,
		logger:   logger,
		refusing: make(chan struct{}, maxRefusing),
		byIP:     make(map[netip.Addr]int),
		refusedDesc: prometheus.NewDesc(prometheus.BuildFQName(cfg.Namespace, "", "connections_refused_total"),
			"Connections refused for being over --max-connections or --max-connections-per-ip, by listener and reason.",
			[]string{"listener", "reason"}, nil),
		openDesc: prometheus.NewDesc(prometheus.BuildFQName(cfg.Namespace, "", "connections_open"),
			"Open connections counted against --max-connections, by listener.", []string{"listener"}, nil),
		maxDesc: prometheus.NewDesc(prometheus.BuildFQName(cfg.Namespace, "", "connections_max"),
			"The bound on open connections, all listeners together (--max-connections); 0 is unlimited.", nil, nil),
	}
}

// Port describes one listener of the daemon for Listen.
type Port struct {
	// Name labels the listener in the metrics and the logs: "tcp", "http", "https".
	Name string
	// TLS, when set, makes the listener serve TLS, as tls.NewListener does; a refusal is
	// then answered over TLS too.
	TLS *tls.Config
	// Refuse answers a refused connection; nil closes it without an answer.
	Refuse RefuseFunc
}

// Listen returns ln limited by l: its Accept returns the connections within the limits,
// wrapped so that closing one gives its place back, and answers the others with p.Refuse.
// Closing the returned listener closes ln and every refused connection still being answered,
// and waits for their goroutines.
func (l *Limiter) Listen(ln net.Listener, p Port) net.Listener {
	w := &listener{Listener: ln, l: l, port: p, refusing: make(map[net.Conn]struct{})}
	l.mu.Lock()
	l.ports = append(l.ports, w)
	l.mu.Unlock()
	return w
}

// acquire takes a place for a connection from ip, or reports the limit it is over.
func (l *Limiter) acquire(ip netip.Addr) (Refusal, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP > 0 && ip.IsValid() && l.byIP[ip] >= l.perIP {
		return Refusal{Reason: ReasonPerIP, Max: l.perIP, Addr: ip}, false
	}
	if l.max > 0 && l.open >= l.max {
		return Refusal{Reason: ReasonMax, Max: l.max, Addr: ip}, false
	}
	l.open++
	if l.perIP > 0 && ip.IsValid() {
		l.byIP[ip]++
	}
	return Refusal{}, true
}

func (l *Limiter) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.perIP > 0 && ip.IsValid() {
		if l.byIP[ip] <= 1 {
			delete(l.byIP, ip) // the map holds only addresses with connections
		} else {
			l.byIP[ip]--
		}
	}
}

// Open returns the connections open on every listener together.
func (l *Limiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// noteRefusal logs a refusal, unless one was logged within LogInterval: the next record
// then says how many were refused meanwhile. The metrics count each one.
func (l *Limiter) noteRefusal(port string, r Refusal) {
	now := time.Now()
	l.logMu.Lock()
	l.unlogged++
	if !l.lastLog.IsZero() && now.Sub(l.lastLog) < LogInterval {
		l.logMu.Unlock()
		return
	}
	n, since := l.unlogged, l.lastLog
	l.unlogged, l.lastLog = 0, now
	l.logMu.Unlock()
	args := []any{"listener", port, "reason", r.Reason, "max", r.Max, "refused", n}
	if r.Addr.IsValid() {
		args = append(args, "remote_ip", r.Addr.String())
	}
	if !since.IsZero() {
		args = append(args, "since", now.Sub(since).Round(time.Second).String())
	}
	l.logger.Warn("refusing connections over the limit", args...)
}

// Describe implements prometheus.Collector.
func (l *Limiter) Describe(ch chan<- *prometheus.Desc) {
	ch <- l.refusedDesc
	ch <- l.openDesc
	ch <- l.maxDesc
}

// Collect implements prometheus.Collector.
func (l *Limiter) Collect(ch chan<- prometheus.Metric) {
	l.mu.Lock()
	ports := append([]*listener(nil), l.ports...)
	l.mu.Unlock()
	for _, p := range ports {
		ch <- prometheus.MustNewConstMetric(l.refusedDesc, prometheus.CounterValue, float64(p.refusedMax.Load()), p.port.Name, ReasonMax)
		ch <- prometheus.MustNewConstMetric(l.refusedDesc, prometheus.CounterValue, float64(p.refusedPerIP.Load()), p.port.Name, ReasonPerIP)
		ch <- prometheus.MustNewConstMetric(l.openDesc, prometheus.GaugeValue, float64(p.open.Load()), p.port.Name)
	}
	ch <- prometheus.MustNewConstMetric(l.maxDesc, prometheus.GaugeValue, float64(l.max))
}

// listener is a net.Listener limited by a Limiter.
type listener struct {
	net.Listener
	l    *Limiter
	port Port

	open         atomic.Int64
	refusedMax   atomic.Uint64
	refusedPerIP atomic.Uint64

	// mu guards refusing and closed: the refused connections being answered, closed by
	// Close so that their goroutines end at once, and wg counts those goroutines.
	mu       sync.Mutex
	refusing map[net.Conn]struct{}
	closed   bool
	wg       sync.WaitGroup
}

// Accept returns the next connection within the limits. Connections over them are handed
// to refuse and never returned.
func (ln *listener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		r, ok := ln.l.acquire(ip)
		if !ok {
			ln.refuse(c, r)
			continue
		}
		ln.open.Add(1)
		var conn net.Conn = &limitedConn{Conn: c, ln: ln, ip: ip}
		if ln.port.TLS != nil {
			conn = tls.Server(conn, ln.port.TLS)
		}
		return conn, nil
	}
}

// Close closes the listener, then every refused connection still being answered, and waits
// for their goroutines.
func (ln *listener) Close() error {
	err := ln.Listener.Close()
	ln.mu.Lock()
	ln.closed = true
	for c := range ln.refusing {
		_ = c.Close()
	}
	ln.mu.Unlock()
	ln.wg.Wait()
	return err
}

// refuse counts and logs a refused connection and answers it in a goroutine of its own,
// unless maxRefusing are being answered already or the listener is closed: then it is
// closed at once.
func (ln *listener) refuse(c net.Conn, r Refusal) {
	if r.Reason == ReasonPerIP {
		ln.refusedPerIP.Add(1)
	} else {
		ln.refusedMax.Add(1)
	}
	ln.l.noteRefusal(ln.port.Name, r)
	if ln.port.Refuse == nil {
		_ = c.Close()
		return
	}
	select {
	case ln.l.refusing <- struct{}{}:
	default:
		_ = c.Close()
		return
	}
	ln.mu.Lock()
	if ln.closed {
		ln.mu.Unlock()
		<-ln.l.refusing
		_ = c.Close()
		return
	}
	ln.refusing[c] = struct{}{}
	ln.wg.Add(1)
	ln.mu.Unlock()
	go func() {
		defer ln.wg.Done()
		defer func() { <-ln.l.refusing }()
		ln.answer(c, r)
		ln.mu.Lock()
		delete(ln.refusing, c)
		ln.mu.Unlock()
		_ = c.Close()
	}()
}

// answer sends the refusal and lingers, all within refuseTimeout. Closing a socket whose
// peer is still sending (the protocol magic, an IDENTIFY, a request) makes the kernel reset
// the connection, and the reset can destroy the answer before the peer reads it. So the
// write side is shut first and the peer's input read and dropped until it closes too.
func (ln *listener) answer(c net.Conn, r Refusal) {
	_ = c.SetDeadline(time.Now().Add(refuseTimeout))
	var rw io.ReadWriter = c
	if ln.port.TLS != nil {
		tc := tls.Server(c, ln.port.TLS)
		if err := tc.Handshake(); err != nil {
			return
		}
		rw = tc
	}
	if err := ln.port.Refuse(rw, r); err != nil {
		return
	}
	if tc, ok := rw.(*tls.Conn); ok {
		_ = tc.CloseWrite() // close_notify, before the TCP half-close below
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c, lingerMaxBytes))
}

// remoteIP is the IP a connection comes from, IPv4 in IPv6 unmapped; the zero Addr when it
// has none (a unix socket).
func remoteIP(c net.Conn) netip.Addr {
	switch a := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	case nil:
		return netip.Addr{}
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Addr{}
		}
		return ap.Addr().Unmap()
	}
}

// limitedConn is an accepted connection holding a place in its Limiter until it is closed.
type limitedConn struct {
	net.Conn
	ln     *listener
	ip     netip.Addr
	closed atomic.Bool
}

// Close closes the connection and, the first time, gives its place back.
func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.ln.open.Add(-1)
		c.ln.l.release(c.ip)
	}
	return err
}

// CloseWrite shuts the write side, as a *net.TCPConn does, for the daemons that linger after
// an error answer.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("close write on %T: %w", c.Conn, errors.ErrUnsupported)
}
