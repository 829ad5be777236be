package main

import (
	"errors"
	"flag"
	"io"
	"reflect"
	"strconv"
	"strings"

	"github.com/ternmq/tern/internal/cmdline"
	"github.com/ternmq/tern/nsqd"
)

// The command line and the config file are both derived from the tags of nsqd.Options by
// package cmdline, so a field added there is settable both ways without touching this file
// (except for its help text, which options_test.go insists on). This file holds what is
// particular to nsqd: the help texts, the options with wider spellings than their fields,
// and the deprecated flags.

// Flags that are not fields of nsqd.Options, besides --config and --version.
const (
	flagVerbose  = "verbose"
	flagWorkerID = "worker-id"
)

// aliasOf returns the flag a deprecated flag stands for, or "".
func aliasOf(name string) string { return spec().Aliases[name] }

// flagUsage is the help text of every flag derived from nsqd.Options. It is the one thing
// the struct tags do not carry; TestFlagUsageComplete keeps it in step with the struct.
var flagUsage = map[string]string{
	"node-id":    "unique part for message IDs, in [0,1024); the default is derived from the hostname",
	"log-level":  "log verbosity: debug, info, warn, error or fatal",
	"log-prefix": "log message prefix (accepted for NSQ compatibility; ignored by structured logs)",

	"tcp-address":                 "<addr>:<port> to listen on for TCP clients",
	"http-address":                "<addr>:<port> to listen on for HTTP clients (empty disables)",
	"https-address":               "<addr>:<port> to listen on for HTTPS clients",
	"max-connections":             "max client connections, TCP, HTTP and HTTPS together, before new ones are refused (E_TOO_MANY_CONNECTIONS, or HTTP 503 TOO_MANY_CONNECTIONS); the default is the open-file limit less a reserve for nsqd's own files (a quarter, at least 256); 0 is unlimited (Tern extension)",
	"max-connections-per-ip":      "max client connections from one IP address, all ports together, before new ones are refused; 0 is unlimited (Tern extension)",
	"broadcast-address":           "address registered with lookupd; the default is the OS hostname",
	"broadcast-tcp-port":          "TCP port registered with lookupd; 0 means the TCP listen port",
	"broadcast-http-port":         "HTTP port registered with lookupd; 0 means the HTTP listen port",
	"lookupd-tcp-address":         "lookupd TCP address (may be given multiple times)",
	"auth-http-address":           "<addr>:<port> or full URL of an auth server (may be given multiple times)",
	"auth-http-request-method":    "HTTP method used to query the auth server: get or post",
	"lookupd-tls":                 "register with the lookupds over TLS, verified with --tls-root-ca-file, presenting --tls-cert (Tern extension)",
	"http-api-auth":               "require an auth secret (Authorization: Bearer) for the HTTP API, checked by the auth servers (Tern extension)",
	"http-api-auth-open-reads":    "with --http-api-auth, leave GET /ping, /info, /stats and /metrics open (Tern extension)",
	"http-client-connect-timeout": "timeout for connecting to lookupd and auth servers over HTTP",
	"http-client-request-timeout": "timeout for HTTP requests to lookupd and auth servers",
	"topology-region":             "region this node runs in, reported to lookupd and clients",
	"topology-zone":               "zone this node runs in, reported to lookupd and clients",

	"data-path":          "path to store topic logs and metadata; empty means the current directory",
	"mem-queue-size":     "number of a topic's newest messages kept in memory (and the bound of ephemeral topics and channels)",
	"mem-queue-bytes":    "bytes of messages all topics together keep in memory; the default is an eighth of the memory available (Tern extension)",
	"max-bytes-per-file": "number of bytes per topic log segment before rolling",
	"sync-every":         "number of messages written between fsyncs",
	"sync-timeout":       "longest time written data waits for an fsync",
	"fsync-always":       "acknowledge a publish only after its data was fsynced (Tern extension)",

	"queue-scan-worker-pool-max": "accepted for NSQ compatibility; Tern's scheduler has nothing to tune",
	"queue-scan-selection-count": "accepted for NSQ compatibility; Tern's scheduler has nothing to tune",

	"msg-timeout":     "default time a delivered message may stay unacknowledged before it is requeued",
	"max-msg-timeout": "maximum msg_timeout a client may ask for, and the cap of TOUCH",
	"max-msg-size":    "maximum size of a single message in bytes",
	"max-body-size":   "maximum size of a single command body in bytes",
	"max-req-timeout": "maximum requeue delay and DPUB deferral",

	"max-heartbeat-interval":    "maximum client configurable time between heartbeats",
	"max-rdy-count":             "maximum RDY count for a client",
	"max-output-buffer-size":    "maximum client configurable size (in bytes) of a client output buffer",
	"min-output-buffer-timeout": "minimum client configurable time between flushes to a client",
	"max-output-buffer-timeout": "maximum client configurable time between flushes to a client",
	"output-buffer-timeout":     "default time between flushes to a client",
	"max-channel-consumers":     "maximum consumer connections per channel (0 is unlimited)",

	"statsd-address":           "UDP <addr>:<port> of a statsd daemon to push stats to",
	"statsd-prefix":            "prefix of the keys sent to statsd (%s is replaced by the host)",
	"statsd-interval":          "time between pushes to statsd",
	"statsd-mem-stats":         "send memory and GC stats to statsd",
	"statsd-udp-packet-size":   "size in bytes of statsd UDP packets",
	"statsd-exclude-ephemeral": "leave ephemeral topics and channels out of statsd",

	"e2e-processing-latency-percentile":  "message processing time percentile in (0,1] to track (may be given multiple times or comma separated: 1.0,0.99,0.95)",
	"e2e-processing-latency-window-time": "time window the end-to-end latency percentiles cover",

	"tls-cert":               "path to the certificate file",
	"tls-key":                "path to the key file",
	"tls-client-auth-policy": "client certificate policy: require or require-verify",
	"tls-root-ca-file":       "path to the certificate authority file",
	"tls-required":           "require TLS for client connections: true, false or tcp-https (give a value with =, as in --tls-required=tcp-https)",
	"tls-min-version":        "minimum TLS version: tls1.0, tls1.1, tls1.2 or tls1.3",

	"deflate":           "enable deflate negotiation (client compression)",
	"max-deflate-level": "maximum deflate level a client may negotiate, 1-9 (higher costs nsqd more CPU)",
	"snappy":            "enable snappy negotiation (client compression)",

	"enable-experiment": "enable an experimental feature (may be given multiple times)",
}

// spec returns nsqd's command line. It is built on each call rather than kept in a package
// variable, so that nothing can change it for later callers.
func spec() *cmdline.Spec[nsqd.Options] {
	return &cmdline.Spec[nsqd.Options]{
		Name:     "nsqd",
		Defaults: nsqd.NewOptions,
		Usage:    flagUsage,
		Normalizers: map[string]func(string) (string, error){
			"tls-required":    normalizeTLSRequired,
			"tls-min-version": normalizeTLSMinVersion,
			"log-level":       cmdline.Lowercase,
		},
		// NSQ lets --tls-required stand alone, meaning true, and tls_required be a TOML boolean.
		BoolLike:      map[string]bool{"tls-required": true},
		Aliases:       map[string]string{flagWorkerID: "node-id"},
		NoOps:         map[string]string{flagVerbose: "[deprecated] has no effect, use --log-level"},
		ExampleConfig: "contrib/nsqd.toml.example",
	}
}

// normalizeTLSRequired accepts any spelling of a boolean, as NSQ does, and tcp-https.
func normalizeTLSRequired(s string) (string, error) {
	s = strings.ToLower(s)
	if s == "tcp-https" {
		return s, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return "", errors.New("want true, false or tcp-https")
	}
	return strconv.FormatBool(b), nil
}

// normalizeTLSMinVersion accepts the version names NSQ accepts; an empty one keeps the
// default, as in NSQ. ssl3.0 is refused because Go's TLS stack no longer implements it.
func normalizeTLSMinVersion(s string) (string, error) {
	s = strings.ToLower(s)
	switch s {
	case "":
		return "", cmdline.ErrKeepDefault
	case "tls1.0", "tls1.1", "tls1.2", "tls1.3":
		return s, nil
	case "ssl3.0":
		return "", errors.New("ssl3.0 is not supported; want tls1.0, tls1.1, tls1.2 or tls1.3")
	}
	return "", errors.New("want tls1.0, tls1.1, tls1.2 or tls1.3")
}

// cmdLine is what the command line asks for beyond the options themselves.
type cmdLine struct {
	configPath string
	version    bool
	// deprecated lists the deprecated flags that were used, so main can warn once the
	// logger exists.
	deprecated []string
}

// newFlagSet returns the nsqd flag set, writing option flags into opts and the others into
// cl. Parse errors are returned, never printed: main decides what the user sees.
func newFlagSet(opts *nsqd.Options, cl *cmdLine) *flag.FlagSet {
	return spec().FlagSet(opts, &cl.configPath, &cl.version)
}

// loadOptions resolves the command line and the config file it names into Options. It
// returns flag.ErrHelp when help was asked for. With --version set it returns before reading
// the config file, so a broken file does not stop --version.
func loadOptions(args []string) (*nsqd.Options, *cmdLine, error) {
	opts, res, err := spec().Load(args)
	if err != nil {
		return nil, nil, err
	}
	return opts, &cmdLine{configPath: res.ConfigPath, version: res.Version, deprecated: res.Deprecated}, nil
}

// applyConfig applies a TOML document to opts. Every key must be a known one; every problem
// in the document is reported at once.
func applyConfig(opts *nsqd.Options, doc string) error { return spec().ApplyConfig(opts, doc) }

// parseScalar parses text into a value of type t, as flags are parsed.
func parseScalar(t reflect.Type, s string) (reflect.Value, error) { return cmdline.ParseScalar(t, s) }

// printUsage writes the help text: every flag, the kind of value it takes and its default.
func printUsage(w io.Writer) { spec().PrintUsage(w) }
