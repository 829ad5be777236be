package admin

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"strings"
	"time"

	"github.com/ternmq/tern/internal/connlimit"
	"github.com/ternmq/tern/internal/logging"
)

// Options configures an Admin. It is plain data: every field carries the NSQ flag name it is
// set by (its `flag` tag) and its TOML key in a config file (its `toml` tag), so apps/nsqadmin
// builds both from this one struct. NewOptions returns NSQ 1.3's defaults.
type Options struct {
	// LogLevel is one of debug, info, warn, error or fatal (fatal logs as error: only main
	// exits).
	LogLevel string `flag:"log-level" toml:"log_level"`
	// LogPrefix is kept for NSQ compatibility; slog records carry their source as attributes
	// instead.
	LogPrefix string `flag:"log-prefix" toml:"log_prefix"`

	// HTTPAddress is where the web UI and the JSON API listen.
	HTTPAddress string `flag:"http-address" toml:"http_address"`
	// BasePath is the URL prefix every page and endpoint is served under, for an admin behind
	// a reverse proxy that forwards one path of its site. It is normalised to begin with a
	// slash and to have none at its end ("/" serves at the root).
	BasePath string `flag:"base-path" toml:"base_path"`
	// TLSCert and TLSKey, when set (both or neither), make the admin serve HTTPS instead of
	// HTTP on HTTPAddress. The files are reloaded when they change and on SIGHUP (Reload),
	// without a restart. Not NSQ options: NSQ's admin serves plain HTTP only.
	TLSCert string `flag:"tls-cert" toml:"tls_cert"`
	// TLSKey is the private key of TLSCert.
	TLSKey string `flag:"tls-key" toml:"tls_key"`
	// DevStaticDir, when set, serves the CSS and JavaScript from this directory instead of
	// the copies built into the binary, so that they can be edited without rebuilding.
	DevStaticDir string `flag:"dev-static-dir" toml:"dev_static_dir"`
	// MaxConnections (a Tern option) bounds the admin's HTTP connections: one more is
	// refused at once with 503 TOO_MANY_CONNECTIONS. The default is the open-file limit less
	// a reserve (connlimit.DefaultMax), which leaves the admin descriptors for its own
	// requests to the cluster; 0 is unlimited.
	MaxConnections int `flag:"max-connections" toml:"max_connections"`
	// MaxConnectionsPerIP (a Tern option) bounds one remote IP's connections the same way;
	// 0, the default, is unlimited.
	MaxConnectionsPerIP int `flag:"max-connections-per-ip" toml:"max_connections_per_ip"`

	// NSQLookupdHTTPAddresses are the lookupds the cluster is discovered through. Exactly one
	// of it and NSQDHTTPAddresses must be set. "https://host:port" (a Tern addition) asks a
	// lookupd that serves TLS, verified with the --http-client-tls-* options.
	NSQLookupdHTTPAddresses []string `flag:"lookupd-http-address" toml:"nsqlookupd_http_addresses"`
	// NSQDHTTPAddresses is a fixed list of nsqd nodes, for a cluster without lookupds.
	NSQDHTTPAddresses []string `flag:"nsqd-http-address" toml:"nsqd_http_addresses"`

	// HTTPClientConnectTimeout bounds connecting to an nsqd or a lookupd.
	HTTPClientConnectTimeout time.Duration `flag:"http-client-connect-timeout" toml:"http_client_connect_timeout"`
	// HTTPClientRequestTimeout bounds one whole request to an nsqd or a lookupd: a node that
	// takes longer is reported on the page as not answering, and the page shows the rest.
	HTTPClientRequestTimeout time.Duration `flag:"http-client-request-timeout" toml:"http_client_request_timeout"`
	// HTTPClientTLSInsecureSkipVerify turns off verification of nsqd's and lookupd's
	// certificates.
	HTTPClientTLSInsecureSkipVerify bool `flag:"http-client-tls-insecure-skip-verify" toml:"http_client_tls_insecure_skip_verify"`
	// HTTPClientTLSRootCAFile is a PEM file of the certificate authorities to trust, instead
	// of the system's.
	HTTPClientTLSRootCAFile string `flag:"http-client-tls-root-ca-file" toml:"http_client_tls_root_ca_file"`
	// HTTPClientTLSCert and HTTPClientTLSKey are the client certificate presented to nsqd
	// and lookupd over HTTPS; both or neither.
	HTTPClientTLSCert string `flag:"http-client-tls-cert" toml:"http_client_tls_cert"`
	// HTTPClientTLSKey is the private key of HTTPClientTLSCert.
	HTTPClientTLSKey string `flag:"http-client-tls-key" toml:"http_client_tls_key"`

	// AllowConfigFromCIDR is the network that may read and change options through
	// /config/:opt. Empty allows everyone.
	AllowConfigFromCIDR string `flag:"allow-config-from-cidr" toml:"allow_config_from_cidr"`
	// NotificationHTTPEndpoint, when set, receives a JSON POST for every action taken
	// through the admin (topic deleted, channel paused, ...), in NSQ's format.
	NotificationHTTPEndpoint string `flag:"notification-http-endpoint" toml:"notification_http_endpoint"`
	// ACLHTTPHeader is the request header carrying the user's name, set by an authenticating
	// proxy in front of the admin. It must be empty with Users: one source of identity.
	ACLHTTPHeader string `flag:"acl-http-header" toml:"acl_http_header"`
	// AdminUsers, when not empty, are the only users (by ACLHTTPHeader, or the logged-in user
	// with Users) allowed to act on the cluster; everyone may still look.
	AdminUsers []string `flag:"admin-user" toml:"admin_users"`
	// Users, when set, are the only people who may use the admin: each "name:hash", the hash
	// made by `nsqadmin --hash-password` (pbkdf2-sha256$<iterations>$<salt>$<hash>), never
	// the password itself. Every page then needs a login, and the JSON API a session or the
	// user's HTTP Basic credentials. Not an NSQ option: NSQ's admin has no login of its own.
	Users []string `flag:"user" toml:"users"`
	// SessionKeyFile holds the key (32 bytes or more) login sessions are signed with, so that
	// they survive a restart and are valid on every admin sharing the file. Without it the
	// key is random per process: every session ends when the admin restarts.
	SessionKeyFile string `flag:"session-key-file" toml:"session_key_file"`
	// SecureCookies marks the session cookie Secure, so that browsers send it over HTTPS
	// only, when the admin serves plain HTTP behind a proxy that serves HTTPS (with TLSCert
	// the cookie is Secure anyway). The admin does not trust X-Forwarded-Proto to tell.
	SecureCookies bool `flag:"secure-cookies" toml:"secure_cookies"`

	// SampleInterval is how often the admin samples the cluster for its charts and rates; the
	// charts keep an hour of samples. Not an NSQ option: NSQ's admin draws charts only from
	// Graphite.
	SampleInterval time.Duration `flag:"sample-interval" toml:"sample_interval"`

	// The Graphite and statsd options are NSQ's way to chart the cluster. Tern's admin draws
	// its own charts, so these are accepted at their defaults, for NSQ config files, and
	// refused otherwise (Validate): an option that does nothing must not look as if it worked.
	GraphiteURL         string        `flag:"graphite-url" toml:"graphite_url"`
	ProxyGraphite       bool          `flag:"proxy-graphite" toml:"proxy_graphite"`
	StatsdPrefix        string        `flag:"statsd-prefix" toml:"statsd_prefix"`
	StatsdCounterFormat string        `flag:"statsd-counter-format" toml:"statsd_counter_format"`
	StatsdGaugeFormat   string        `flag:"statsd-gauge-format" toml:"statsd_gauge_format"`
	StatsdInterval      time.Duration `flag:"statsd-interval" toml:"statsd_interval"`
}

// NewOptions returns NSQ 1.3's defaults: HTTP on 4171 at the root path, 2 s to connect and 5 s
// per request to the cluster, /config from loopback only, and the user's name in
// X-Forwarded-User. No lookupd or nsqd is configured: one of the two must be given.
func NewOptions() *Options {
	return &Options{
		LogLevel:  "info",
		LogPrefix: "[nsqadmin] ",

		HTTPAddress: "0.0.0.0:4171",
		BasePath:    "/",

		MaxConnections: connlimit.DefaultMax(),

		HTTPClientConnectTimeout: 2 * time.Second,
		HTTPClientRequestTimeout: 5 * time.Second,

		AllowConfigFromCIDR: "127.0.0.1/8",
		ACLHTTPHeader:       "X-Forwarded-User",

		SampleInterval: 10 * time.Second,

		StatsdPrefix:        "nsq.%s",
		StatsdCounterFormat: "stats.counters.%s.count",
		StatsdGaugeFormat:   "stats.gauges.%s",
		StatsdInterval:      60 * time.Second,
	}
}

// minSampleInterval keeps the sampler from turning the admin into a load generator: each
// sample is a /stats request to every nsqd.
const minSampleInterval = time.Second

// Validate reports every problem with the options at once.
func (o *Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, err := logging.ParseLevel(o.LogLevel); err != nil {
		bad("--log-level must be debug, info, warn, error or fatal, got %q", o.LogLevel)
	}
	if o.HTTPAddress == "" {
		bad("--http-address is required")
	}
	// NSQ's own messages for the two ways to find the cluster.
	switch {
	case len(o.NSQLookupdHTTPAddresses) == 0 && len(o.NSQDHTTPAddresses) == 0:
		bad("--nsqd-http-address or --lookupd-http-address required")
	case len(o.NSQLookupdHTTPAddresses) > 0 && len(o.NSQDHTTPAddresses) > 0:
		bad("use --nsqd-http-address or --lookupd-http-address not both")
	}
	for _, a := range o.NSQLookupdHTTPAddresses {
		if err := checkHostPort(strings.TrimPrefix(a, "https://")); err != nil {
			bad("--lookupd-http-address %q: %v", a, err)
		}
	}
	for _, a := range o.NSQDHTTPAddresses {
		if err := checkHostPort(a); err != nil {
			bad("--nsqd-http-address %q: %v", a, err)
		}
	}
	if o.MaxConnections < 0 {
		bad("--max-connections must not be negative (0 is unlimited), got %d", o.MaxConnections)
	}
	if o.MaxConnectionsPerIP < 0 {
		bad("--max-connections-per-ip must not be negative (0 is unlimited), got %d", o.MaxConnectionsPerIP)
	}
	if o.HTTPClientConnectTimeout <= 0 {
		bad("--http-client-connect-timeout must be positive, got %v", o.HTTPClientConnectTimeout)
	}
	if o.HTTPClientRequestTimeout <= 0 {
		bad("--http-client-request-timeout must be positive, got %v", o.HTTPClientRequestTimeout)
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		bad("--tls-cert and --tls-key must be given together")
	}
	if (o.HTTPClientTLSCert == "") != (o.HTTPClientTLSKey == "") {
		bad("--http-client-tls-cert and --http-client-tls-key must be given together")
	}
	if o.AllowConfigFromCIDR != "" {
		if _, err := netip.ParsePrefix(o.AllowConfigFromCIDR); err != nil {
			bad("--allow-config-from-cidr %q is not a CIDR network such as 127.0.0.1/8", o.AllowConfigFromCIDR)
		}
	}
	if o.NotificationHTTPEndpoint != "" && !strings.HasPrefix(o.NotificationHTTPEndpoint, "http://") &&
		!strings.HasPrefix(o.NotificationHTTPEndpoint, "https://") {
		bad("--notification-http-endpoint must be an http:// or https:// URL, got %q", o.NotificationHTTPEndpoint)
	}
	users := make(map[string]bool)
	for i, u := range o.Users {
		name, _, err := parseUser(u)
		switch {
		case err != nil:
			bad("--user #%d: %v", i+1, err)
		case users[name]:
			bad("--user %q is given twice", name)
		}
		users[name] = true
	}
	switch {
	case len(o.Users) > 0 && o.ACLHTTPHeader != "":
		bad("--user and --acl-http-header both say who the user is: with --user, set --acl-http-header to \"\" (acl_http_header = \"\")")
	case len(o.Users) > 0:
		for _, u := range o.AdminUsers {
			if !users[u] {
				bad("--admin-user %q is not one of the --user users", u)
			}
		}
	case o.ACLHTTPHeader == "" && len(o.AdminUsers) > 0:
		bad("--admin-user needs --acl-http-header or --user to tell who the user is")
	}
	if o.SessionKeyFile != "" && len(o.Users) == 0 {
		bad("--session-key-file signs login sessions and needs --user")
	}
	if o.SecureCookies && len(o.Users) == 0 {
		bad("--secure-cookies marks the login session's cookie and needs --user")
	}
	if o.SampleInterval < minSampleInterval {
		bad("--sample-interval must be at least %v, got %v", minSampleInterval, o.SampleInterval)
	}

	def := NewOptions()
	const graphite = "Tern's admin draws its own charts without Graphite"
	if o.GraphiteURL != "" {
		bad("--graphite-url is not supported: %s", graphite)
	}
	if o.ProxyGraphite {
		bad("--proxy-graphite is not supported: %s", graphite)
	}
	if o.StatsdPrefix != def.StatsdPrefix || o.StatsdCounterFormat != def.StatsdCounterFormat ||
		o.StatsdGaugeFormat != def.StatsdGaugeFormat || o.StatsdInterval != def.StatsdInterval {
		bad("the --statsd-* options name Graphite series and are not supported: %s", graphite)
	}
	return errors.Join(errs...)
}

// checkHostPort accepts host:port with a port number, which is what every nsqd and lookupd
// address must be: the admin builds URLs from it.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port")
	}
	if host == "" {
		return errors.New("want host:port with a host")
	}
	if port == "" || strings.Trim(port, "0123456789") != "" {
		return errors.New("want host:port with a port number")
	}
	return nil
}

// normalizeBasePath returns p with one leading slash and no trailing one; the root is "".
// Paths are then built as basePath + "/topics".
func normalizeBasePath(p string) string {
	p = path.Clean("/" + p)
	if p == "/" {
		return ""
	}
	return p
}
