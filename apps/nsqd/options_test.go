package main

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/nsqd"
)

// nsqFlags are the flags NSQ 1.3's nsqd accepts (topology-* are on NSQ's master branch).
var nsqFlags = []string{
	"auth-http-address", "auth-http-request-method", "broadcast-address", "broadcast-http-port",
	"broadcast-tcp-port", "config", "data-path", "deflate", "e2e-processing-latency-percentile",
	"e2e-processing-latency-window-time", "enable-experiment", "http-address",
	"http-client-connect-timeout", "http-client-request-timeout", "https-address", "log-level",
	"log-prefix", "lookupd-tcp-address", "max-body-size", "max-bytes-per-file",
	"max-channel-consumers", "max-deflate-level", "max-heartbeat-interval", "max-msg-size",
	"max-msg-timeout", "max-output-buffer-size", "max-output-buffer-timeout", "max-rdy-count",
	"max-req-timeout", "mem-queue-size", "min-output-buffer-timeout", "msg-timeout", "node-id",
	"output-buffer-timeout", "queue-scan-selection-count", "queue-scan-worker-pool-max",
	"snappy", "statsd-address", "statsd-exclude-ephemeral", "statsd-interval",
	"statsd-mem-stats", "statsd-prefix", "statsd-udp-packet-size", "sync-every", "sync-timeout",
	"tcp-address", "tls-cert", "tls-client-auth-policy", "tls-key", "tls-min-version",
	"tls-required", "tls-root-ca-file", "topology-region", "topology-zone", "verbose",
	"version", "worker-id",
}

// ternFlags are Tern's additions; each is documented in the README.
var ternFlags = []string{
	"fsync-always", "mem-queue-bytes", "http-api-auth", "http-api-auth-open-reads", "lookupd-tls",
	"max-connections", "max-connections-per-ip",
}

func TestFlagNamesMatchNSQ(t *testing.T) {
	fs := newFlagSet(nsqd.NewOptions(), &cmdLine{})
	var got []string
	fs.VisitAll(func(fl *flag.Flag) { got = append(got, fl.Name) })
	want := slices.Concat(nsqFlags, ternFlags)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("flags differ from NSQ 1.3's plus Tern's:\n missing: %v\n extra:   %v",
			without(want, got), without(got, want))
	}
}

func TestEveryOptionIsSettable(t *testing.T) {
	fs := newFlagSet(nsqd.NewOptions(), &cmdLine{})
	st := reflect.TypeFor[nsqd.Options]()
	seenFlags := map[string]bool{}
	for i := range st.NumField() {
		sf := st.Field(i)
		if sf.Tag.Get("toml") == "" {
			t.Errorf("field %s has no toml tag, so no config file can set it", sf.Name)
		}
		if err := settable(sf.Type); err != nil {
			t.Errorf("field %s: %v", sf.Name, err)
		}
		name := sf.Tag.Get("flag")
		if name == "" {
			continue
		}
		seenFlags[name] = true
		if fs.Lookup(name) == nil {
			t.Errorf("field %s: flag --%s is not defined", sf.Name, name)
		}
		if flagUsage[name] == "" {
			t.Errorf("field %s: flag --%s has no help text in flagUsage", sf.Name, name)
		}
	}
	for name := range flagUsage {
		if !seenFlags[name] {
			t.Errorf("flagUsage has help for --%s, which no field of nsqd.Options declares", name)
		}
	}
}

// settable reports whether the flag and config parsers handle fields of type t.
func settable(t reflect.Type) error {
	if t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	_, err := parseScalar(t, "1")
	if err != nil && strings.Contains(err.Error(), "unsupported") {
		return err
	}
	return nil
}

func TestFlagParsing(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		deprecated []string
		want       func(o *nsqd.Options)
	}{
		{"no flags give the defaults", nil, nil, func(*nsqd.Options) {}},
		{"integer", []string{"--max-rdy-count=100"}, nil, func(o *nsqd.Options) { o.MaxRdyCount = 100 }},
		{"int", []string{"-max-channel-consumers", "3"}, nil, func(o *nsqd.Options) { o.MaxChannelConsumers = 3 }},
		{"duration", []string{"--msg-timeout=90s"}, nil, func(o *nsqd.Options) { o.MsgTimeout = 90 * time.Second }},
		{"string", []string{"--data-path", "/var/lib/tern"}, nil, func(o *nsqd.Options) { o.DataPath = "/var/lib/tern" }},
		{"empty string", []string{"--http-address="}, nil, func(o *nsqd.Options) { o.HTTPAddress = "" }},
		{"bool alone", []string{"--fsync-always"}, nil, func(o *nsqd.Options) { o.FsyncAlways = true }},
		{"bool false", []string{"--snappy=false", "--deflate=0"}, nil, func(o *nsqd.Options) {
			o.SnappyEnabled = false
			o.DeflateEnabled = false
		}},
		{"repeatable", []string{"--lookupd-tcp-address=a:4160", "--lookupd-tcp-address", "b:4160"}, nil, func(o *nsqd.Options) {
			o.LookupdTCPAddresses = []string{"a:4160", "b:4160"}
		}},
		{"repeatable keeps commas", []string{"--auth-http-address=http://x/auth?a=1,2"}, nil, func(o *nsqd.Options) {
			o.AuthHTTPAddresses = []string{"http://x/auth?a=1,2"}
		}},
		{"percentiles repeated and comma separated", []string{
			"--e2e-processing-latency-percentile=0.99, 0.95", "--e2e-processing-latency-percentile", "1.0",
		}, nil, func(o *nsqd.Options) { o.E2EProcessingLatencyPercentiles = []float64{0.99, 0.95, 1} }},
		{"tls-required alone", []string{"--tls-required"}, nil, func(o *nsqd.Options) { o.TLSRequired = "true" }},
		{"tls-required tcp-https", []string{"--tls-required=TCP-HTTPS"}, nil, func(o *nsqd.Options) { o.TLSRequired = "tcp-https" }},
		{"tls-required false", []string{"--tls-required=F"}, nil, func(o *nsqd.Options) { o.TLSRequired = "false" }},
		{"tls-min-version", []string{"--tls-min-version=TLS1.2"}, nil, func(o *nsqd.Options) { o.TLSMinVersion = "tls1.2" }},
		{"empty tls-min-version keeps the default", []string{"--tls-min-version="}, nil, func(*nsqd.Options) {}},
		{"log level is case-insensitive", []string{"--log-level=WARN"}, nil, func(o *nsqd.Options) { o.LogLevel = "warn" }},
		{"node-id", []string{"--node-id=7"}, nil, func(o *nsqd.Options) { o.NodeID = 7 }},
		{"worker-id is node-id", []string{"--worker-id=9"}, []string{"worker-id"}, func(o *nsqd.Options) { o.NodeID = 9 }},
		{"last of node-id and worker-id wins", []string{"--worker-id=9", "--node-id=8"}, []string{"worker-id"}, func(o *nsqd.Options) { o.NodeID = 8 }},
		{"verbose is a no-op", []string{"--verbose"}, []string{"verbose"}, func(*nsqd.Options) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, cl, err := loadOptions(tt.args)
			if err != nil {
				t.Fatalf("loadOptions(%q): %v", tt.args, err)
			}
			want := nsqd.NewOptions()
			tt.want(want)
			assertOptions(t, got, want)
			if !slices.Equal(cl.deprecated, tt.deprecated) {
				t.Errorf("deprecated flags = %q, want %q", cl.deprecated, tt.deprecated)
			}
		})
	}
}

func TestFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--no-such-flag"}, "no-such-flag"},
		{"not an integer", []string{"--max-rdy-count=many"}, "want an integer"},
		{"integer out of range", []string{"--node-id=99999999999999999999"}, "want an integer"},
		{"duration without unit", []string{"--msg-timeout=60"}, "want a duration"},
		{"not a bool", []string{"--snappy=perhaps"}, "want true or false"},
		{"bad tls-required", []string{"--tls-required=maybe"}, "true, false or tcp-https"},
		{"ssl3.0", []string{"--tls-min-version=ssl3.0"}, "not supported"},
		{"unknown tls version", []string{"--tls-min-version=tls2"}, "want tls1.0"},
		{"bad percentile", []string{"--e2e-processing-latency-percentile=0.5,x"}, "want a number"},
		{"stray argument", []string{"--snappy", "true"}, `unexpected argument "true"`},
		{"missing config file", []string{"--config", "/nonexistent/nsqd.toml"}, "read config file"},
		{"help", []string{"-h"}, "help requested"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := loadOptions(tt.args)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("loadOptions(%q) error = %v, want it to contain %q", tt.args, err, tt.want)
			}
		})
	}
}

func TestConfigFile(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want func(o *nsqd.Options)
	}{
		{"empty file", "", func(*nsqd.Options) {}},
		{"comments only", "# nothing\n## here\n", func(*nsqd.Options) {}},
		{"node id key is id", "id = 42", func(o *nsqd.Options) { o.NodeID = 42 }},
		{"duration string", `msg_timeout = "90s"`, func(o *nsqd.Options) { o.MsgTimeout = 90 * time.Second }},
		{"duration integer is milliseconds", `sync_timeout = 1500`, func(o *nsqd.Options) { o.SyncTimeout = 1500 * time.Millisecond }},
		{"config-only keys", "client_timeout = \"30s\"\nqueue_scan_interval = \"50ms\"\nqueue_scan_dirty_percent = 1", func(o *nsqd.Options) {
			o.ClientTimeout = 30 * time.Second
			o.QueueScanInterval = 50 * time.Millisecond
			o.QueueScanDirtyPercent = 1
		}},
		{"integers", "max_rdy_count = 10\nmax_channel_consumers = 2", func(o *nsqd.Options) {
			o.MaxRdyCount = 10
			o.MaxChannelConsumers = 2
		}},
		{"integer as string, as NSQ accepts", `mem_queue_size = "500"`, func(o *nsqd.Options) { o.MemQueueSize = 500 }},
		{"booleans", "snappy = false\nfsync_always = true\nstatsd_mem_stats = \"false\"", func(o *nsqd.Options) {
			o.SnappyEnabled = false
			o.FsyncAlways = true
			o.StatsdMemStats = false
		}},
		{"arrays", `nsqlookupd_tcp_addresses = ["a:4160", "b:4160"]`, func(o *nsqd.Options) {
			o.LookupdTCPAddresses = []string{"a:4160", "b:4160"}
		}},
		{"list as a comma-separated string", `auth_http_addresses = "a:4181, b:4181"`, func(o *nsqd.Options) {
			o.AuthHTTPAddresses = []string{"a:4181", "b:4181"}
		}},
		{"percentiles mixing integers and floats", `e2e_processing_latency_percentiles = [1, 0.99, 0.5]`, func(o *nsqd.Options) {
			o.E2EProcessingLatencyPercentiles = []float64{1, 0.99, 0.5}
		}},
		{"tls_required boolean", `tls_required = true`, func(o *nsqd.Options) { o.TLSRequired = "true" }},
		{"tls_required tcp-https", `tls_required = "tcp-https"`, func(o *nsqd.Options) { o.TLSRequired = "tcp-https" }},
		{"tls_min_version", `tls_min_version = "tls1.3"`, func(o *nsqd.Options) { o.TLSMinVersion = "tls1.3" }},
		{"empty tls_min_version keeps the default", `tls_min_version = ""`, func(*nsqd.Options) {}},
		{"log_level", `log_level = "Debug"`, func(o *nsqd.Options) { o.LogLevel = "debug" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := nsqd.NewOptions()
			if err := applyConfig(got, tt.doc); err != nil {
				t.Fatalf("applyConfig: %v", err)
			}
			want := nsqd.NewOptions()
			tt.want(want)
			assertOptions(t, got, want)
		})
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{"unknown key", `max_rdy = 5`, []string{`unknown key "max_rdy"`}},
		{"flag name is not a key", `max-rdy-count = 5`, []string{`unknown key "max-rdy-count"`}},
		{"every problem at once", "bogus = 1\nmsg_timeout = true\nother = 2", []string{
			`unknown key "bogus"`, `key "msg_timeout": want a duration`, `unknown key "other"`,
		}},
		{"table", "[nsqd]\ntcp_address = \"x\"", []string{`unknown key "nsqd"`}},
		{"syntax error", `tcp_address = `, []string{"parse:"}},
		{"string for integer", `max_rdy_count = "lots"`, []string{`key "max_rdy_count": want an integer`}},
		{"float for integer", `max_rdy_count = 1.5`, []string{`key "max_rdy_count": want an integer, got a float`}},
		{"duration without unit", `msg_timeout = "60"`, []string{`key "msg_timeout": want a duration`}},
		{"duration as float", `msg_timeout = 1.5`, []string{"got a float"}},
		{"duration overflows", `msg_timeout = 9223372036854775807`, []string{"out of range"}},
		{"integer for bool", `snappy = 1`, []string{`key "snappy": want true or false, got an integer`}},
		{"integer for string", `tcp_address = 4150`, []string{`key "tcp_address": want a string, got an integer`}},
		{"scalar for list", `nsqlookupd_tcp_addresses = 4160`, []string{"want an array"}},
		{"bad list element", `e2e_processing_latency_percentiles = [0.5, "x"]`, []string{"element 1: want a number"}},
		{"bad tls_required", `tls_required = "sometimes"`, []string{"true, false or tcp-https"}},
		{"tls_required integer", `tls_required = 1`, []string{"want a string, got an integer"}},
		{"bad tls_min_version", `tls_min_version = "ssl3.0"`, []string{"not supported"}},
		{"log_level not a string", `log_level = 2`, []string{`key "log_level": want a string`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := applyConfig(nsqd.NewOptions(), tt.doc)
			if err == nil {
				t.Fatalf("applyConfig(%q) succeeded, want an error", tt.doc)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestPrecedence(t *testing.T) {
	path := writeConfig(t, `
max_rdy_count = 100
msg_timeout = "30s"
mem_queue_size = 5
nsqlookupd_tcp_addresses = ["a:4160", "b:4160"]
snappy = false
tls_min_version = "tls1.2"
`)
	tests := []struct {
		name string
		args []string
		want func(o *nsqd.Options)
	}{
		{"file over defaults", nil, func(*nsqd.Options) {}},
		{"flag over file", []string{"--max-rdy-count=200"}, func(o *nsqd.Options) { o.MaxRdyCount = 200 }},
		{"flag set to the default value still wins", []string{"--mem-queue-size=10000"}, func(o *nsqd.Options) { o.MemQueueSize = 10000 }},
		{"bool flag over file", []string{"--snappy"}, func(o *nsqd.Options) { o.SnappyEnabled = true }},
		{"repeatable flag replaces the file's list", []string{"--lookupd-tcp-address=c:4160"}, func(o *nsqd.Options) {
			o.LookupdTCPAddresses = []string{"c:4160"}
		}},
		{"duration flag over file", []string{"--msg-timeout=5s"}, func(o *nsqd.Options) { o.MsgTimeout = 5 * time.Second }},
		{"empty tls-min-version leaves the file's value", []string{"--tls-min-version="}, func(*nsqd.Options) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := loadOptions(append(slices.Clone(tt.args), "--config="+path))
			if err != nil {
				t.Fatalf("loadOptions: %v", err)
			}
			want := nsqd.NewOptions()
			want.MaxRdyCount = 100
			want.MsgTimeout = 30 * time.Second
			want.MemQueueSize = 5
			want.LookupdTCPAddresses = []string{"a:4160", "b:4160"}
			want.SnappyEnabled = false
			want.TLSMinVersion = "tls1.2"
			tt.want(want)
			assertOptions(t, got, want)
		})
	}
}

func TestConfigFileErrorNamesFile(t *testing.T) {
	path := writeConfig(t, "max_rdy = 5\n")
	_, _, err := loadOptions([]string{"--config", path})
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `unknown key "max_rdy"`) {
		t.Fatalf("error = %v, want it to name %s and the key", err, path)
	}
}

// TestExampleConfig parses contrib/nsqd.toml.example strictly and checks that it sets every
// key to its default. It starts from zero Options rather than the defaults, so a key missing
// from the example, or set to something else, shows up as a difference.
func TestExampleConfig(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "contrib", "nsqd.toml.example"))
	if err != nil {
		t.Fatal(err)
	}
	got := &nsqd.Options{}
	if err := applyConfig(got, string(data)); err != nil {
		t.Fatalf("the example does not parse strictly: %v", err)
	}
	want := nsqd.NewOptions()
	// The example leaves these commented out, because their defaults are derived from the
	// host name, its memory or its open-file limit, and any value written down would differ
	// from the default elsewhere.
	for _, key := range []string{"id", "broadcast_address", "mem_queue_bytes", "max_connections"} {
		if !strings.Contains(string(data), "\n# "+key+" = ") {
			t.Errorf("the example does not show the commented-out key %q", key)
		}
	}
	got.NodeID, got.BroadcastAddress, got.MemQueueBytes = want.NodeID, want.BroadcastAddress, want.MemQueueBytes
	got.MaxConnections = want.MaxConnections
	assertOptions(t, got, want)
}

func TestUsage(t *testing.T) {
	var out strings.Builder
	printUsage(&out)
	for _, name := range []string{"--tcp-address <string>", "--msg-timeout <duration>", "--snappy\n", `(default "0.0.0.0:4150")`} {
		if !strings.Contains(out.String(), name) {
			t.Errorf("usage does not contain %q:\n%s", name, out.String())
		}
	}
	if strings.Contains(out.String(), "PANIC") || strings.Contains(out.String(), "panic") {
		t.Errorf("usage mentions a panic:\n%s", out.String())
	}
}

func FuzzApplyConfig(f *testing.F) {
	if data, err := os.ReadFile(filepath.Join("..", "..", "contrib", "nsqd.toml.example")); err == nil {
		f.Add(string(data))
	}
	for _, seed := range []string{
		"", `msg_timeout = 1500`, `tls_required = "tcp-https"`, `e2e_processing_latency_percentiles = [1, 0.5]`,
		`auth_http_addresses = "a,b"`, "[t]\nx = 1", `max_rdy_count = 9223372036854775807`,
		`nsqlookupd_tcp_addresses = [[1], {a = 1}]`, `sync_timeout = 1979-05-27T07:32:00Z`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		opts := nsqd.NewOptions()
		if err := applyConfig(opts, doc); err != nil {
			return
		}
		// Whatever a config sets, applying it again must give the same options: decoding
		// does not depend on state left in the options.
		again := nsqd.NewOptions()
		if err := applyConfig(again, doc); err != nil {
			t.Fatalf("second apply failed: %v", err)
		}
		if !reflect.DeepEqual(opts, again) {
			t.Fatalf("applying %q twice differs:\n%+v\n%+v", doc, opts, again)
		}
		// Validation must cope with whatever a config file can set.
		_ = opts.Validate()
	})
}

// assertOptions fails the test with every field that differs between got and want.
func assertOptions(t *testing.T, got, want *nsqd.Options) {
	t.Helper()
	g, w := reflect.ValueOf(got).Elem(), reflect.ValueOf(want).Elem()
	for i := range g.NumField() {
		if !reflect.DeepEqual(g.Field(i).Interface(), w.Field(i).Interface()) {
			t.Errorf("%s = %#v, want %#v", g.Type().Field(i).Name, g.Field(i).Interface(), w.Field(i).Interface())
		}
	}
}

// writeConfig writes doc to a config file in a temporary directory and returns its path.
func writeConfig(t *testing.T, doc string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nsqd.toml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// without returns the elements of a that are not in b.
func without(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}
