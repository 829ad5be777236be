package nsq

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/version"
)

// Config configures a [Producer] or a [Consumer] and their connections. It is plain
// data: build one with [NewConfig] and change what you need, or write a literal, in which
// case every zero field takes its default. Disabling a feature the server would otherwise
// apply (heartbeats, output buffering) takes a negative value, as on NSQ's wire.
//
// A Producer or Consumer copies its Config when it is created; changing the Config
// afterwards has no effect on it.
type Config struct {
	// DialTimeout bounds establishing a connection: the TCP dial and, separately, the
	// handshake (magic, IDENTIFY, upgrades, AUTH). Default 1s.
	DialTimeout time.Duration
	// ReadTimeout is how long a connection may go without receiving anything before it is
	// considered dead. It must exceed HeartbeatInterval, since heartbeats are what an idle
	// connection receives. Range 100ms..5m, default 60s.
	ReadTimeout time.Duration
	// WriteTimeout bounds each write to the socket. Range 100ms..5m, default 1s.
	WriteTimeout time.Duration
	// HeartbeatInterval asks the server to send a heartbeat this often; negative disables
	// heartbeats (a consumer cannot subscribe then). Range 1s..ReadTimeout, default 30s.
	HeartbeatInterval time.Duration

	// ClientID identifies the client in the server's stats. Default: the short host name.
	ClientID string
	// Hostname is reported to the server. Default: the host name.
	Hostname string
	// UserAgent names the client library. Default "tern-nsq/<version>".
	UserAgent string

	// OutputBufferSize is how many bytes the server buffers before writing to this client;
	// negative disables buffering. 64 or more, default 16384.
	OutputBufferSize int
	// OutputBufferTimeout is how long the server may hold buffered data for this client;
	// negative disables the timed flush. Default 250ms.
	OutputBufferTimeout time.Duration
	// MsgTimeout overrides the server's message timeout for this client's deliveries;
	// 0 keeps the server's. 1s or more.
	MsgTimeout time.Duration
	// SampleRate, 1..99, asks the server to deliver only about that percentage of the
	// channel's messages (the rest are dropped from the channel); 0 delivers everything.
	SampleRate int32

	// Snappy asks for snappy compression of the connection. It excludes Deflate.
	Snappy bool
	// Deflate asks for deflate compression of the connection. It excludes Snappy.
	Deflate bool
	// DeflateLevel is the deflate level asked for, 1..9 (the server may lower it). Default 6.
	DeflateLevel int
	// TLS, when set, requires the connection to upgrade to TLS; a server that does not
	// offer TLS is refused rather than used in the clear. An empty ServerName is taken
	// from the address dialled. It also verifies https:// lookupds (Tern's nsqlookupd with
	// --tls-cert), presenting the same client certificate.
	TLS *tls.Config
	// AuthSecret is sent with AUTH when, and only when, the server says auth is required.
	AuthSecret string

	// MaxInFlight is how many messages a consumer accepts in flight across all its
	// connections. Default 1.
	MaxInFlight int
	// MaxAttempts is how often a consumer lets a message be delivered before giving up on
	// it; 0 means no limit. Range 0..65535, default 5.
	MaxAttempts int
	// MaxMsgSize bounds the frames a connection accepts from the server, in bytes; 0
	// means no bound.
	MaxMsgSize int

	// ReconnectBackoff is the first wait before redialling after a failed connection
	// attempt; each further failure doubles it up to MaxReconnectBackoff. Default 100ms.
	ReconnectBackoff time.Duration
	// MaxReconnectBackoff caps the wait between connection attempts. Default 10s.
	MaxReconnectBackoff time.Duration

	// HandlerConcurrency is how many goroutines of a Consumer run its Handler, taking
	// messages from all its connections. Default 1.
	HandlerConcurrency int
	// DefaultRequeueDelay is the delay of a requeue the Consumer decides on (a handler
	// error, or Requeue with a negative delay), multiplied by the message's attempts and
	// capped at MaxRequeueDelay; negative requeues at once. Range ..60m, default 90s.
	DefaultRequeueDelay time.Duration
	// MaxRequeueDelay caps the delays DefaultRequeueDelay computes. Range ..60m, default 15m.
	MaxRequeueDelay time.Duration
	// BackoffMultiplier is the unit of a Consumer's backoff: after n consecutive failures
	// it pauses for BackoffMultiplier * 2^(n-1), up to MaxBackoffDuration. Default 1s.
	BackoffMultiplier time.Duration
	// MaxBackoffDuration caps a Consumer's backoff pause; negative disables backoff.
	// Range ..60m, default 2m.
	MaxBackoffDuration time.Duration
	// AutoTouch makes a Consumer send TOUCH for a message while its handler runs, at half
	// the server's message timeout, so that a slow handler keeps its message.
	AutoTouch bool
	// RDYRedistributeInterval is how often a Consumer with several connections
	// redistributes MaxInFlight among them by need. Range 10ms..5m, default 1s.
	RDYRedistributeInterval time.Duration
	// LookupdPollInterval is how often a Consumer asks its lookupds where its topic is.
	// Range 10ms..5m, default 60s.
	LookupdPollInterval time.Duration
	// LookupdPollJitter, 0..1, spreads the polls of many consumers: each wait is shortened
	// by up to this fraction of LookupdPollInterval at random. Negative means none;
	// default 0.3.
	LookupdPollJitter float64
	// LookupdPollTimeout bounds one query to a lookupd. Default 10s.
	LookupdPollTimeout time.Duration

	// Logger receives the client's logs; nil means silent.
	Logger *slog.Logger
}

// Defaults. They are NSQ's (go-nsq's) where NSQ has one.
const (
	defaultDialTimeout         = time.Second
	defaultReadTimeout         = 60 * time.Second
	defaultWriteTimeout        = time.Second
	defaultHeartbeatInterval   = 30 * time.Second
	defaultOutputBufferSize    = 16 * 1024
	defaultOutputBufferTimeout = 250 * time.Millisecond
	defaultDeflateLevel        = 6
	defaultMaxInFlight         = 1
	defaultMaxAttempts         = 5
	defaultReconnectBackoff    = 100 * time.Millisecond
	defaultMaxReconnectBackoff = 10 * time.Second

	defaultHandlerConcurrency      = 1
	defaultDefaultRequeueDelay     = 90 * time.Second
	defaultMaxRequeueDelay         = 15 * time.Minute
	defaultBackoffMultiplier       = time.Second
	defaultMaxBackoffDuration      = 2 * time.Minute
	defaultRDYRedistributeInterval = time.Second
	defaultLookupdPollInterval     = 60 * time.Second
	defaultLookupdPollJitter       = 0.3
	defaultLookupdPollTimeout      = 10 * time.Second
)

// UserAgent is the user agent this client reports unless Config.UserAgent says otherwise.
const UserAgent = "tern-nsq/" + version.Tern

// NewConfig returns a Config holding every default.
func NewConfig() *Config {
	host, _ := os.Hostname()
	short, _, _ := strings.Cut(host, ".")
	return &Config{
		DialTimeout:         defaultDialTimeout,
		ReadTimeout:         defaultReadTimeout,
		WriteTimeout:        defaultWriteTimeout,
		HeartbeatInterval:   defaultHeartbeatInterval,
		ClientID:            short,
		Hostname:            host,
		UserAgent:           UserAgent,
		OutputBufferSize:    defaultOutputBufferSize,
		OutputBufferTimeout: defaultOutputBufferTimeout,
		DeflateLevel:        defaultDeflateLevel,
		MaxInFlight:         defaultMaxInFlight,
		MaxAttempts:         defaultMaxAttempts,
		ReconnectBackoff:    defaultReconnectBackoff,
		MaxReconnectBackoff: defaultMaxReconnectBackoff,

		HandlerConcurrency:      defaultHandlerConcurrency,
		DefaultRequeueDelay:     defaultDefaultRequeueDelay,
		MaxRequeueDelay:         defaultMaxRequeueDelay,
		BackoffMultiplier:       defaultBackoffMultiplier,
		MaxBackoffDuration:      defaultMaxBackoffDuration,
		RDYRedistributeInterval: defaultRDYRedistributeInterval,
		LookupdPollInterval:     defaultLookupdPollInterval,
		LookupdPollJitter:       defaultLookupdPollJitter,
		LookupdPollTimeout:      defaultLookupdPollTimeout,
	}
}

// withDefaults returns a copy of c (or of the defaults, for a nil c) with every zero field
// set to its default. The copy is what a Producer keeps, so the caller's Config may change
// or be shared freely.
func (c *Config) withDefaults() *Config {
	d := NewConfig()
	if c == nil {
		return d
	}
	out := *c
	if out.TLS != nil {
		out.TLS = out.TLS.Clone()
	}
	setDefault(&out.DialTimeout, d.DialTimeout)
	setDefault(&out.ReadTimeout, d.ReadTimeout)
	setDefault(&out.WriteTimeout, d.WriteTimeout)
	setDefault(&out.HeartbeatInterval, d.HeartbeatInterval)
	setDefault(&out.ClientID, d.ClientID)
	setDefault(&out.Hostname, d.Hostname)
	setDefault(&out.UserAgent, d.UserAgent)
	setDefault(&out.OutputBufferSize, d.OutputBufferSize)
	setDefault(&out.OutputBufferTimeout, d.OutputBufferTimeout)
	setDefault(&out.DeflateLevel, d.DeflateLevel)
	setDefault(&out.MaxInFlight, d.MaxInFlight)
	setDefault(&out.MaxAttempts, d.MaxAttempts)
	setDefault(&out.ReconnectBackoff, d.ReconnectBackoff)
	setDefault(&out.MaxReconnectBackoff, d.MaxReconnectBackoff)
	setDefault(&out.HandlerConcurrency, d.HandlerConcurrency)
	setDefault(&out.DefaultRequeueDelay, d.DefaultRequeueDelay)
	setDefault(&out.MaxRequeueDelay, d.MaxRequeueDelay)
	setDefault(&out.BackoffMultiplier, d.BackoffMultiplier)
	setDefault(&out.MaxBackoffDuration, d.MaxBackoffDuration)
	setDefault(&out.RDYRedistributeInterval, d.RDYRedistributeInterval)
	setDefault(&out.LookupdPollInterval, d.LookupdPollInterval)
	setDefault(&out.LookupdPollJitter, d.LookupdPollJitter)
	setDefault(&out.LookupdPollTimeout, d.LookupdPollTimeout)
	return &out
}

func setDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}

// Validate reports every problem with c at once, one per line, each naming the field. Zero
// fields are checked as the defaults they stand for.
func (c *Config) Validate() error {
	v := c.withDefaults()
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("nsq: config %s: "+format, append([]any{field}, args...)...))
	}
	inRange := func(field string, d, lo, hi time.Duration) {
		if d < lo || d > hi {
			bad(field, "%v is out of range %v..%v", d, lo, hi)
		}
	}
	if v.DialTimeout < 0 {
		bad("DialTimeout", "%v must not be negative", v.DialTimeout)
	}
	inRange("ReadTimeout", v.ReadTimeout, 100*time.Millisecond, 5*time.Minute)
	inRange("WriteTimeout", v.WriteTimeout, 100*time.Millisecond, 5*time.Minute)
	if v.HeartbeatInterval > 0 {
		if v.HeartbeatInterval < time.Second {
			bad("HeartbeatInterval", "%v is below the 1s the server accepts (use a negative value to disable heartbeats)", v.HeartbeatInterval)
		}
		if v.HeartbeatInterval >= v.ReadTimeout {
			bad("HeartbeatInterval", "%v must be below ReadTimeout (%v), or an idle connection times out between heartbeats", v.HeartbeatInterval, v.ReadTimeout)
		}
	}
	if v.OutputBufferSize > 0 && v.OutputBufferSize < 64 {
		bad("OutputBufferSize", "%d is below the 64 bytes the server accepts (use a negative value to disable buffering)", v.OutputBufferSize)
	}
	if v.MsgTimeout < 0 || (v.MsgTimeout > 0 && v.MsgTimeout < time.Second) {
		bad("MsgTimeout", "%v must be 0 (the server's default) or at least 1s", v.MsgTimeout)
	}
	if v.SampleRate < 0 || v.SampleRate > 99 {
		bad("SampleRate", "%d is out of range 0..99", v.SampleRate)
	}
	if v.Snappy && v.Deflate {
		bad("Snappy", "snappy and deflate cannot both be enabled")
	}
	if v.DeflateLevel < 1 || v.DeflateLevel > 9 {
		bad("DeflateLevel", "%d is out of range 1..9", v.DeflateLevel)
	}
	if v.MaxInFlight < 0 {
		bad("MaxInFlight", "%d must not be negative", v.MaxInFlight)
	}
	if v.MaxAttempts < 0 || v.MaxAttempts > 65535 {
		bad("MaxAttempts", "%d is out of range 0..65535", v.MaxAttempts)
	}
	if v.MaxMsgSize < 0 {
		bad("MaxMsgSize", "%d must not be negative", v.MaxMsgSize)
	}
	if v.ReconnectBackoff < 0 {
		bad("ReconnectBackoff", "%v must not be negative", v.ReconnectBackoff)
	}
	if v.MaxReconnectBackoff < v.ReconnectBackoff {
		bad("MaxReconnectBackoff", "%v must not be below ReconnectBackoff (%v)", v.MaxReconnectBackoff, v.ReconnectBackoff)
	}
	if v.HandlerConcurrency < 0 {
		bad("HandlerConcurrency", "%d must not be negative", v.HandlerConcurrency)
	}
	inRange("DefaultRequeueDelay", v.DefaultRequeueDelay, -time.Hour, time.Hour)
	inRange("MaxRequeueDelay", v.MaxRequeueDelay, 0, time.Hour)
	if v.BackoffMultiplier < 0 {
		bad("BackoffMultiplier", "%v must not be negative", v.BackoffMultiplier)
	}
	inRange("MaxBackoffDuration", v.MaxBackoffDuration, -time.Hour, time.Hour)
	inRange("RDYRedistributeInterval", v.RDYRedistributeInterval, 10*time.Millisecond, 5*time.Minute)
	inRange("LookupdPollInterval", v.LookupdPollInterval, 10*time.Millisecond, 5*time.Minute)
	if v.LookupdPollJitter > 1 {
		bad("LookupdPollJitter", "%v is above 1", v.LookupdPollJitter)
	}
	if v.LookupdPollTimeout < 0 {
		bad("LookupdPollTimeout", "%v must not be negative", v.LookupdPollTimeout)
	}
	return errors.Join(errs...)
}

// identifyRequest is what this Config asks the server for, in IDENTIFY's units.
func (c *Config) identifyRequest() protocol.IdentifyRequest {
	ms := func(d time.Duration) int {
		if d < 0 {
			return -1
		}
		return int(d.Milliseconds())
	}
	return protocol.IdentifyRequest{
		ClientID:            c.ClientID,
		Hostname:            c.Hostname,
		UserAgent:           c.UserAgent,
		FeatureNegotiation:  true,
		HeartbeatInterval:   ms(c.HeartbeatInterval),
		OutputBufferSize:    max(c.OutputBufferSize, -1),
		OutputBufferTimeout: ms(c.OutputBufferTimeout),
		TLSv1:               c.TLS != nil,
		Deflate:             c.Deflate,
		DeflateLevel:        c.DeflateLevel,
		Snappy:              c.Snappy,
		SampleRate:          c.SampleRate,
		MsgTimeout:          ms(c.MsgTimeout),
	}
}
