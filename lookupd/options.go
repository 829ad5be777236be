package lookupd

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ternmq/tern/internal/connlimit"
	"github.com/ternmq/tern/internal/logging"
	"github.com/ternmq/tern/internal/tlsfiles"
)

// Options configures a Lookupd. It is plain data: every field carries the NSQ flag name it is
// set by (its `flag` tag) and its TOML key in a config file (its `toml` tag), so apps/nsqlookupd
// builds both from this one struct. NewOptions returns NSQ 1.3's defaults.
type Options struct {
	// LogLevel is one of debug, info, warn, error or fatal (fatal logs as error: only main
	// exits).
	LogLevel string `flag:"log-level" toml:"log_level"`
	// LogPrefix is kept for NSQ compatibility; slog records carry their source as attributes
	// instead.
	LogPrefix string `flag:"log-prefix" toml:"log_prefix"`

	// TCPAddress is where nsqd nodes register over the V1 protocol.
	TCPAddress string `flag:"tcp-address" toml:"tcp_address"`
	// HTTPAddress is where consumers and nsqadmin query the registry.
	HTTPAddress string `flag:"http-address" toml:"http_address"`
	// BroadcastAddress is the address this lookupd reports for itself in IDENTIFY answers.
	BroadcastAddress string `flag:"broadcast-address" toml:"broadcast_address"`
	// MaxConnections (a Tern option) bounds the lookupd's connections, TCP and HTTP
	// together: one more is refused at once, with E_TOO_MANY_CONNECTIONS over TCP and 503
	// TOO_MANY_CONNECTIONS over HTTP. The default is the open-file limit less a reserve
	// (connlimit.DefaultMax); 0 is unlimited.
	MaxConnections int `flag:"max-connections" toml:"max_connections"`
	// MaxConnectionsPerIP (a Tern option) bounds one remote IP's connections, TCP and HTTP
	// together, the same way; 0, the default, is unlimited.
	MaxConnectionsPerIP int `flag:"max-connections-per-ip" toml:"max_connections_per_ip"`

	// InactiveProducerTimeout is how long after its last IDENTIFY or PING an nsqd stays in
	// /lookup and /nodes. A connection silent for that long is also closed, which removes
	// its registrations.
	InactiveProducerTimeout time.Duration `flag:"inactive-producer-timeout" toml:"inactive_producer_timeout"`
	// TombstoneLifetime is how long POST /topic/tombstone hides an nsqd from /lookup for a
	// topic.
	TombstoneLifetime time.Duration `flag:"tombstone-lifetime" toml:"tombstone_lifetime"`

	// TLS (Tern extensions; NSQ's lookupd speaks only plain text): with a certificate and
	// key, the TCP and HTTP listeners serve TLS only, so nsqd registers (--lookupd-tls) and
	// consumers and nsqadmin query over TLS. TLSClientAuthPolicy require or require-verify
	// asks clients for a certificate, verified against TLSRootCAFile with require-verify.
	// The files are reloaded when they change and on SIGHUP.
	TLSCert             string `flag:"tls-cert" toml:"tls_cert"`
	TLSKey              string `flag:"tls-key" toml:"tls_key"`
	TLSRootCAFile       string `flag:"tls-root-ca-file" toml:"tls_root_ca_file"`
	TLSClientAuthPolicy string `flag:"tls-client-auth-policy" toml:"tls_client_auth_policy"`
	TLSMinVersion       string `flag:"tls-min-version" toml:"tls_min_version"`
}

// NewOptions returns NSQ 1.3's defaults: TCP on 4160, HTTP on 4161, the OS host name as the
// broadcast address, a 300 s inactive timeout and a 45 s tombstone lifetime; and Tern's
// connection limits, derived from the open-file limit in total and none per IP.
func NewOptions() *Options {
	hostname, err := os.Hostname()
	if err != nil {
		hostname = "localhost"
	}
	return &Options{
		LogLevel:  "info",
		LogPrefix: "[nsqlookupd] ",

		TCPAddress:       "0.0.0.0:4160",
		HTTPAddress:      "0.0.0.0:4161",
		BroadcastAddress: hostname,
		MaxConnections:   connlimit.DefaultMax(),

		InactiveProducerTimeout: 300 * time.Second,
		TombstoneLifetime:       45 * time.Second,

		TLSMinVersion: "tls1.2",
	}
}

// Validate reports every problem with the options at once.
func (o *Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, err := logging.ParseLevel(o.LogLevel); err != nil {
		bad("--log-level must be debug, info, warn, error or fatal, got %q", o.LogLevel)
	}
	if o.TCPAddress == "" {
		bad("--tcp-address is required")
	}
	if o.HTTPAddress == "" {
		bad("--http-address is required")
	}
	if o.MaxConnections < 0 {
		bad("--max-connections must not be negative (0 is unlimited), got %d", o.MaxConnections)
	}
	if o.MaxConnectionsPerIP < 0 {
		bad("--max-connections-per-ip must not be negative (0 is unlimited), got %d", o.MaxConnectionsPerIP)
	}
	if o.InactiveProducerTimeout <= 0 {
		bad("--inactive-producer-timeout must be positive, got %v", o.InactiveProducerTimeout)
	}
	if o.TombstoneLifetime <= 0 {
		bad("--tombstone-lifetime must be positive, got %v", o.TombstoneLifetime)
	}
	errs = append(errs, o.tlsConfig().Check()...)
	if o.TLSCert == "" && (o.TLSRootCAFile != "" || o.TLSClientAuthPolicy != "") {
		bad("--tls-root-ca-file and --tls-client-auth-policy need --tls-cert and --tls-key")
	}
	return errors.Join(errs...)
}

// tlsConfig is the TLS files and policy of o.
func (o *Options) tlsConfig() tlsfiles.Config {
	return tlsfiles.Config{
		CertFile: o.TLSCert, KeyFile: o.TLSKey, RootCAFile: o.TLSRootCAFile,
		ClientAuthPolicy: o.TLSClientAuthPolicy, MinVersion: o.TLSMinVersion,
	}
}
