package nsqd

import (
	"crypto/md5"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ternmq/tern/internal/connlimit"
	"github.com/ternmq/tern/internal/tlsfiles"
)

// Options configures an nsqd. It is plain data: every field carries the NSQ flag name it is
// set by (in its `flag` tag) and the TOML key of the config file (in its `toml` tag), so
// apps/nsqd can build both from this one struct. NewOptions returns NSQ 1.3's defaults.
type Options struct {
	// NodeID is the 10-bit node number placed in the high bits of every message ID.
	NodeID int64 `flag:"node-id" toml:"id"`
	// LogLevel is one of debug, info, warn, error or fatal.
	LogLevel string `flag:"log-level" toml:"log_level"`
	// LogPrefix is kept for NSQ compatibility; slog records carry the daemon name instead.
	LogPrefix string `flag:"log-prefix" toml:"log_prefix"`

	// TCPAddress is where the V2 client protocol listens.
	TCPAddress string `flag:"tcp-address" toml:"tcp_address"`
	// HTTPAddress is where the HTTP API listens; empty disables it.
	HTTPAddress string `flag:"http-address" toml:"http_address"`
	// HTTPSAddress is where the HTTPS API listens once TLS is configured.
	HTTPSAddress string `flag:"https-address" toml:"https_address"`
	// MaxConnections (a Tern option) bounds the daemon's client connections, TCP, HTTP and
	// HTTPS together: one more is refused at once, with E_TOO_MANY_CONNECTIONS over TCP and
	// 503 TOO_MANY_CONNECTIONS over HTTP. The default is the open-file limit less a reserve
	// for the daemon's own files (connlimit.DefaultMax), so that a flood of connections
	// cannot leave nsqd without descriptors for its logs and checkpoints; 0 is unlimited.
	MaxConnections int `flag:"max-connections" toml:"max_connections"`
	// MaxConnectionsPerIP (a Tern option) bounds one remote IP's connections, all listeners
	// together, the same way; 0, the default, is unlimited.
	MaxConnectionsPerIP int `flag:"max-connections-per-ip" toml:"max_connections_per_ip"`
	// BroadcastAddress is the address lookupd advertises for this node.
	BroadcastAddress string `flag:"broadcast-address" toml:"broadcast_address"`
	// BroadcastTCPPort and BroadcastHTTPPort override the advertised ports (0: the real ones).
	BroadcastTCPPort  int `flag:"broadcast-tcp-port" toml:"broadcast_tcp_port"`
	BroadcastHTTPPort int `flag:"broadcast-http-port" toml:"broadcast_http_port"`
	// LookupdTCPAddresses are the nsqlookupd instances this node registers with.
	LookupdTCPAddresses []string `flag:"lookupd-tcp-address" toml:"nsqlookupd_tcp_addresses"`
	// LookupdTLS (a Tern option) registers with the lookupds over TLS (Tern's nsqlookupd
	// with --tls-cert), verifying them against TLSRootCAFile (or the system's authorities)
	// and presenting TLSCert as a client certificate when there is one.
	LookupdTLS bool `flag:"lookupd-tls" toml:"lookupd_tls"`
	// AuthHTTPAddresses are the auth servers consulted for AUTH (host:port, asked at
	// /auth, or a URL); with any, clients must AUTH before PUB, MPUB, DPUB and SUB.
	AuthHTTPAddresses []string `flag:"auth-http-address" toml:"auth_http_addresses"`
	// AuthHTTPRequestMethod is get or post.
	AuthHTTPRequestMethod string `flag:"auth-http-request-method" toml:"auth_http_request_method"`
	// HTTPAPIAuth (a Tern option) puts the HTTP API under the same auth: a request needs
	// "Authorization: Bearer <secret>", whose grants allow it (see httpauth.go).
	HTTPAPIAuth bool `flag:"http-api-auth" toml:"http_api_auth"`
	// HTTPAPIAuthOpenReads (a Tern option) leaves GET /ping, /info, /stats and /metrics open
	// under HTTPAPIAuth, for health checks and monitoring.
	HTTPAPIAuthOpenReads bool `flag:"http-api-auth-open-reads" toml:"http_api_auth_open_reads"`
	// HTTPClientConnectTimeout and HTTPClientRequestTimeout bound calls to lookupd and auth.
	HTTPClientConnectTimeout time.Duration `flag:"http-client-connect-timeout" toml:"http_client_connect_timeout"`
	HTTPClientRequestTimeout time.Duration `flag:"http-client-request-timeout" toml:"http_client_request_timeout"`
	// TopologyRegion and TopologyZone are reported to lookupd and in IDENTIFY.
	TopologyRegion string `flag:"topology-region" toml:"topology_region"`
	TopologyZone   string `flag:"topology-zone" toml:"topology_zone"`

	// DataPath holds topic logs, channel checkpoints and the nsqd.dat metadata file.
	DataPath string `flag:"data-path" toml:"data_path"`
	// MemQueueSize is how many of a topic's newest messages stay in memory, and the bound of
	// an ephemeral topic or channel.
	MemQueueSize int64 `flag:"mem-queue-size" toml:"mem_queue_size"`
	// MemQueueBytes bounds the bytes of messages all topics together keep in memory (their
	// hot tails, and the messages of ephemeral topics). A topic that publishes while it is
	// spent keeps its newest messages on disk only, and consumers that lag read them from
	// there; an ephemeral topic drops them, as NSQ drops what overflows its memory queue.
	// The default is an eighth of the memory available (the cgroup's limit in a container).
	// A Tern extension.
	MemQueueBytes int64 `flag:"mem-queue-bytes" toml:"mem_queue_bytes"`
	// MaxBytesPerFile is the size at which a topic log rolls to a new segment.
	MaxBytesPerFile int64 `flag:"max-bytes-per-file" toml:"max_bytes_per_file"`
	// SyncEvery is how many messages may be written between fsyncs.
	SyncEvery int64 `flag:"sync-every" toml:"sync_every"`
	// SyncTimeout is the longest written data waits for an fsync.
	SyncTimeout time.Duration `flag:"sync-timeout" toml:"sync_timeout"`
	// FsyncAlways answers OK to a publish only after its data was fsynced (batched across
	// connections). A Tern extension: NSQ has no such mode.
	FsyncAlways bool `flag:"fsync-always" toml:"fsync_always"`

	// QueueScanWorkerPoolMax, QueueScanSelectionCount, QueueScanInterval,
	// QueueScanRefreshInterval and QueueScanDirtyPercent are accepted for NSQ compatibility.
	// Tern's scheduler is exact and has nothing to tune.
	QueueScanWorkerPoolMax   int           `flag:"queue-scan-worker-pool-max" toml:"queue_scan_worker_pool_max"`
	QueueScanSelectionCount  int           `flag:"queue-scan-selection-count" toml:"queue_scan_selection_count"`
	QueueScanInterval        time.Duration `toml:"queue_scan_interval"`
	QueueScanRefreshInterval time.Duration `toml:"queue_scan_refresh_interval"`
	QueueScanDirtyPercent    float64       `toml:"queue_scan_dirty_percent"`

	// MsgTimeout is how long a delivered message may stay unacknowledged by default.
	MsgTimeout time.Duration `flag:"msg-timeout" toml:"msg_timeout"`
	// MaxMsgTimeout caps a client's msg_timeout and how far TOUCH may extend a delivery.
	MaxMsgTimeout time.Duration `flag:"max-msg-timeout" toml:"max_msg_timeout"`
	// MaxMsgSize is the largest message body accepted.
	MaxMsgSize int64 `flag:"max-msg-size" toml:"max_msg_size"`
	// MaxBodySize is the largest MPUB, IDENTIFY or AUTH body accepted.
	MaxBodySize int64 `flag:"max-body-size" toml:"max_body_size"`
	// MaxReqTimeout caps REQ delays and DPUB deferrals.
	MaxReqTimeout time.Duration `flag:"max-req-timeout" toml:"max_req_timeout"`
	// ClientTimeout is how long a silent client is kept; heartbeats default to half of it.
	ClientTimeout time.Duration `toml:"client_timeout"`

	// MaxHeartbeatInterval caps a client's heartbeat_interval.
	MaxHeartbeatInterval time.Duration `flag:"max-heartbeat-interval" toml:"max_heartbeat_interval"`
	// MaxRdyCount caps RDY.
	MaxRdyCount int64 `flag:"max-rdy-count" toml:"max_rdy_count"`
	// MaxOutputBufferSize caps a client's output_buffer_size.
	MaxOutputBufferSize int64 `flag:"max-output-buffer-size" toml:"max_output_buffer_size"`
	// MinOutputBufferTimeout and MaxOutputBufferTimeout bound a client's output_buffer_timeout.
	MinOutputBufferTimeout time.Duration `flag:"min-output-buffer-timeout" toml:"min_output_buffer_timeout"`
	MaxOutputBufferTimeout time.Duration `flag:"max-output-buffer-timeout" toml:"max_output_buffer_timeout"`
	// OutputBufferTimeout is the default flush interval for buffered client output.
	OutputBufferTimeout time.Duration `flag:"output-buffer-timeout" toml:"output_buffer_timeout"`
	// MaxChannelConsumers caps clients per channel (0: unlimited).
	MaxChannelConsumers int `flag:"max-channel-consumers" toml:"max_channel_consumers"`

	// Statsd settings (statsd push arrives with the HTTP and metrics issue).
	StatsdAddress          string        `flag:"statsd-address" toml:"statsd_address"`
	StatsdPrefix           string        `flag:"statsd-prefix" toml:"statsd_prefix"`
	StatsdInterval         time.Duration `flag:"statsd-interval" toml:"statsd_interval"`
	StatsdMemStats         bool          `flag:"statsd-mem-stats" toml:"statsd_mem_stats"`
	StatsdUDPPacketSize    int           `flag:"statsd-udp-packet-size" toml:"statsd_udp_packet_size"`
	StatsdExcludeEphemeral bool          `flag:"statsd-exclude-ephemeral" toml:"statsd_exclude_ephemeral"`

	// E2EProcessingLatencyPercentiles are the quantiles of publish-to-FIN latency reported.
	E2EProcessingLatencyPercentiles []float64 `flag:"e2e-processing-latency-percentile" toml:"e2e_processing_latency_percentiles"`
	// E2EProcessingLatencyWindowTime is the window those quantiles cover.
	E2EProcessingLatencyWindowTime time.Duration `flag:"e2e-processing-latency-window-time" toml:"e2e_processing_latency_window_time"`

	// TLS settings, as NSQ's: a certificate and key turn on the tls_v1 IDENTIFY upgrade and
	// the HTTPS listener; TLSRequired true refuses everything but IDENTIFY before the upgrade
	// (and plain HTTP), tcp-https only on TCP; a client auth policy implies TLSRequired true.
	// The files are reloaded when they change and on SIGHUP.
	TLSCert             string `flag:"tls-cert" toml:"tls_cert"`
	TLSKey              string `flag:"tls-key" toml:"tls_key"`
	TLSClientAuthPolicy string `flag:"tls-client-auth-policy" toml:"tls_client_auth_policy"`
	TLSRootCAFile       string `flag:"tls-root-ca-file" toml:"tls_root_ca_file"`
	TLSRequired         string `flag:"tls-required" toml:"tls_required"`
	TLSMinVersion       string `flag:"tls-min-version" toml:"tls_min_version"`

	// DeflateEnabled, MaxDeflateLevel and SnappyEnabled govern compression negotiation.
	DeflateEnabled  bool `flag:"deflate" toml:"deflate"`
	MaxDeflateLevel int  `flag:"max-deflate-level" toml:"max_deflate_level"`
	SnappyEnabled   bool `flag:"snappy" toml:"snappy"`

	// Experiments lists enabled experiments (accepted for compatibility).
	Experiments []string `flag:"enable-experiment" toml:"enable_experiment"`
}

// NewOptions returns NSQ 1.3's defaults. The node ID is derived from the host name, as NSQ
// derives it.
func NewOptions() *Options {
	hostname, err := os.Hostname()
	if err != nil {
		hostname = "localhost"
	}
	h := md5.New()
	_, _ = io.WriteString(h, hostname)
	nodeID := int64(crc32.ChecksumIEEE(h.Sum(nil)) % 1024)

	return &Options{
		NodeID:    nodeID,
		LogLevel:  "info",
		LogPrefix: "[nsqd] ",

		TCPAddress:       "0.0.0.0:4150",
		HTTPAddress:      "0.0.0.0:4151",
		HTTPSAddress:     "0.0.0.0:4152",
		BroadcastAddress: hostname,

		MaxConnections: connlimit.DefaultMax(),

		AuthHTTPRequestMethod:    "get",
		HTTPClientConnectTimeout: 2 * time.Second,
		HTTPClientRequestTimeout: 5 * time.Second,

		MemQueueSize:    10000,
		MemQueueBytes:   defaultMemQueueBytes(),
		MaxBytesPerFile: 100 * 1024 * 1024,
		SyncEvery:       2500,
		SyncTimeout:     2 * time.Second,

		QueueScanWorkerPoolMax:   4,
		QueueScanSelectionCount:  20,
		QueueScanInterval:        100 * time.Millisecond,
		QueueScanRefreshInterval: 5 * time.Second,
		QueueScanDirtyPercent:    0.25,

		MsgTimeout:    60 * time.Second,
		MaxMsgTimeout: 15 * time.Minute,
		MaxMsgSize:    1024 * 1024,
		MaxBodySize:   5 * 1024 * 1024,
		MaxReqTimeout: time.Hour,
		ClientTimeout: 60 * time.Second,

		MaxHeartbeatInterval:   60 * time.Second,
		MaxRdyCount:            2500,
		MaxOutputBufferSize:    64 * 1024,
		MinOutputBufferTimeout: 25 * time.Millisecond,
		MaxOutputBufferTimeout: 30 * time.Second,
		OutputBufferTimeout:    250 * time.Millisecond,

		StatsdPrefix:        "nsq.%s",
		StatsdInterval:      60 * time.Second,
		StatsdMemStats:      true,
		StatsdUDPPacketSize: 508,

		E2EProcessingLatencyWindowTime: 10 * time.Minute,

		TLSMinVersion: "tls1.0",
		TLSRequired:   "false",

		DeflateEnabled:  true,
		MaxDeflateLevel: 6,
		SnappyEnabled:   true,
	}
}

// checkAuthAddress accepts host:port, or an http:// or https:// URL with a host and no query
// or fragment: what the AUTH query is built on.
func checkAuthAddress(a string) error {
	raw := a
	if !strings.Contains(a, "://") {
		raw = "http://" + a + "/auth"
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return errors.New("want host:port or an http(s):// URL without a query")
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("want an http:// or https:// URL")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n <= 0 || n > 65535 {
			return fmt.Errorf("bad port %q", p)
		}
	}
	return nil
}

// tlsConfig is the TLS files and policy of o.
func (o *Options) tlsConfig() tlsfiles.Config {
	return tlsfiles.Config{
		CertFile: o.TLSCert, KeyFile: o.TLSKey, RootCAFile: o.TLSRootCAFile,
		ClientAuthPolicy: o.TLSClientAuthPolicy, MinVersion: o.TLSMinVersion,
	}
}

// tlsRequired is --tls-required in effect: as in NSQ, a client auth policy makes TLS
// required when it was not.
func (o *Options) tlsRequired() string {
	if o.TLSClientAuthPolicy != "" && (o.TLSRequired == "" || o.TLSRequired == "false") {
		return "true"
	}
	if o.TLSRequired == "" {
		return "false"
	}
	return o.TLSRequired
}

// Validate reports every problem with the options at once.
func (o *Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if o.NodeID < 0 || o.NodeID >= 1024 {
		bad("--node-id must be in [0,1024), got %d", o.NodeID)
	}
	switch o.LogLevel {
	case "debug", "info", "warn", "error", "fatal":
	default:
		bad("--log-level must be debug, info, warn, error or fatal, got %q", o.LogLevel)
	}
	if o.TCPAddress == "" {
		bad("--tcp-address is required")
	}
	if o.MaxDeflateLevel < 1 || o.MaxDeflateLevel > 9 {
		bad("--max-deflate-level must be in [1,9], got %d", o.MaxDeflateLevel)
	}
	for _, p := range o.E2EProcessingLatencyPercentiles {
		if p <= 0 || p > 1 {
			bad("--e2e-processing-latency-percentile %v must be in (0,1]", p)
		}
	}
	switch o.AuthHTTPRequestMethod {
	case "get", "post":
	default:
		bad("--auth-http-request-method must be get or post, got %q", o.AuthHTTPRequestMethod)
	}
	switch o.TLSRequired {
	case "", "false", "true", "tcp-https":
	default:
		bad("--tls-required must be true, false or tcp-https, got %q", o.TLSRequired)
	}
	if o.HTTPAPIAuth && len(o.AuthHTTPAddresses) == 0 {
		bad("--http-api-auth needs --auth-http-address: the secrets are checked by the auth servers")
	}
	if o.HTTPAPIAuthOpenReads && !o.HTTPAPIAuth {
		bad("--http-api-auth-open-reads only applies with --http-api-auth")
	}
	for _, a := range o.AuthHTTPAddresses {
		if err := checkAuthAddress(a); err != nil {
			bad("--auth-http-address %q: %v", a, err)
		}
	}
	errs = append(errs, o.tlsConfig().Check()...)
	if o.TLSCert == "" && o.TLSRootCAFile != "" {
		bad("--tls-root-ca-file needs --tls-cert and --tls-key: it verifies client certificates")
	}
	if o.TLSCert == "" && o.tlsRequired() != "false" {
		bad("cannot require TLS client connections without TLS key and cert (--tls-required or --tls-client-auth-policy without --tls-cert and --tls-key)")
	}
	positive := []struct {
		name string
		v    int64
	}{
		{"--max-msg-size", o.MaxMsgSize},
		{"--max-body-size", o.MaxBodySize},
		{"--max-bytes-per-file", o.MaxBytesPerFile},
		{"--mem-queue-bytes", o.MemQueueBytes},
		{"--max-rdy-count", o.MaxRdyCount},
		{"--max-output-buffer-size", o.MaxOutputBufferSize},
		{"--sync-every", o.SyncEvery},
		{"--msg-timeout", int64(o.MsgTimeout)},
		{"--max-msg-timeout", int64(o.MaxMsgTimeout)},
		{"--max-heartbeat-interval", int64(o.MaxHeartbeatInterval)},
		{"--sync-timeout", int64(o.SyncTimeout)},
	}
	for _, p := range positive {
		if p.v <= 0 {
			bad("%s must be positive, got %d", p.name, p.v)
		}
	}
	if o.ClientTimeout <= 0 {
		// It bounds a new client's magic and first command: 0 would drop every client.
		bad("client_timeout must be positive, got %v", o.ClientTimeout)
	}
	if o.StatsdAddress != "" && o.StatsdInterval <= 0 {
		bad("--statsd-interval must be positive, got %v", o.StatsdInterval)
	}
	if o.StatsdUDPPacketSize <= 0 {
		bad("--statsd-udp-packet-size must be positive, got %d", o.StatsdUDPPacketSize)
	}
	if o.MemQueueSize < 0 {
		bad("--mem-queue-size must not be negative, got %d", o.MemQueueSize)
	}
	if o.MaxConnections < 0 {
		bad("--max-connections must not be negative (0 is unlimited), got %d", o.MaxConnections)
	}
	if o.MaxConnectionsPerIP < 0 {
		bad("--max-connections-per-ip must not be negative (0 is unlimited), got %d", o.MaxConnectionsPerIP)
	}
	if o.MaxReqTimeout < 0 {
		bad("--max-req-timeout must not be negative, got %v", o.MaxReqTimeout)
	}
	return errors.Join(errs...)
}
