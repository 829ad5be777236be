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

	"github.com/ternmq/tern/lookupd"
)

// nsqFlags are the flags NSQ 1.3's nsqlookupd accepts, and Tern's TLS and connection-limit
// flags.
var nsqFlags = []string{
	"broadcast-address", "config", "http-address", "inactive-producer-timeout", "log-level",
	"log-prefix",
	"max-connections", "max-connections-per-ip", // Tern's
	"tcp-address",
	"tls-cert", "tls-client-auth-policy", "tls-key", "tls-min-version", "tls-root-ca-file", // Tern's
	"tombstone-lifetime", "verbose", "version",
}

func TestFlagNamesMatchNSQ(t *testing.T) {
	var configPath string
	var version bool
	fs := spec().FlagSet(lookupd.NewOptions(), &configPath, &version)
	var got []string
	fs.VisitAll(func(fl *flag.Flag) { got = append(got, fl.Name) })
	if !slices.Equal(got, nsqFlags) {
		t.Errorf("flags = %q, want NSQ 1.3's and Tern's %q", got, nsqFlags)
	}
}

func TestEveryOptionIsSettable(t *testing.T) {
	usage := flagUsage()
	st := reflect.TypeFor[lookupd.Options]()
	seen := map[string]bool{}
	for i := range st.NumField() {
		sf := st.Field(i)
		name := sf.Tag.Get("flag")
		if sf.Tag.Get("toml") == "" || name == "" {
			t.Errorf("field %s needs both a flag and a toml tag", sf.Name)
			continue
		}
		if want := strings.ReplaceAll(name, "-", "_"); sf.Tag.Get("toml") != want {
			t.Errorf("field %s: toml key %q, want NSQ's %q", sf.Name, sf.Tag.Get("toml"), want)
		}
		seen[name] = true
		if usage[name] == "" {
			t.Errorf("flag --%s has no help text", name)
		}
	}
	for name := range usage {
		if !seen[name] {
			t.Errorf("help text for --%s, which no field declares", name)
		}
	}
}

func TestLoadOptions(t *testing.T) {
	config := writeConfig(t, `
tcp_address = "127.0.0.1:5160"
inactive_producer_timeout = "1m"
tombstone_lifetime = 30000
log_level = "WARN"
`)
	tests := []struct {
		name       string
		args       []string
		deprecated []string
		want       func(o *lookupd.Options)
	}{
		{"defaults", nil, nil, func(*lookupd.Options) {}},
		{"flags", []string{"--tcp-address=:1", "--http-address", ":2", "--broadcast-address=b", "--inactive-producer-timeout=10s", "--tombstone-lifetime=1s", "--log-prefix=x"}, nil, func(o *lookupd.Options) {
			o.TCPAddress, o.HTTPAddress, o.BroadcastAddress = ":1", ":2", "b"
			o.InactiveProducerTimeout, o.TombstoneLifetime = 10*time.Second, time.Second
			o.LogPrefix = "x"
		}},
		{"log level is case-insensitive", []string{"--log-level=DEBUG"}, nil, func(o *lookupd.Options) { o.LogLevel = "debug" }},
		{"verbose is a deprecated no-op", []string{"--verbose"}, []string{"verbose"}, func(*lookupd.Options) {}},
		{"config file over defaults", []string{"--config", config}, nil, func(o *lookupd.Options) {
			o.TCPAddress = "127.0.0.1:5160"
			o.InactiveProducerTimeout = time.Minute
			o.TombstoneLifetime = 30 * time.Second // an integer is milliseconds, as in NSQ
			o.LogLevel = "warn"
		}},
		{"flags over config file", []string{"--config=" + config, "--tombstone-lifetime=2s", "--log-level=info"}, nil, func(o *lookupd.Options) {
			o.TCPAddress = "127.0.0.1:5160"
			o.InactiveProducerTimeout = time.Minute
			o.TombstoneLifetime = 2 * time.Second
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, res, err := spec().Load(tt.args)
			if err != nil {
				t.Fatalf("Load(%q): %v", tt.args, err)
			}
			want := lookupd.NewOptions()
			tt.want(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("options:\n got  %+v\n want %+v", got, want)
			}
			if !slices.Equal(res.Deprecated, tt.deprecated) {
				t.Errorf("deprecated = %q, want %q", res.Deprecated, tt.deprecated)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		doc  string // a config file to pass, if not empty
		want string
	}{
		{"unknown flag", []string{"--mem-queue-size=1"}, "", "mem-queue-size"},
		{"duration without unit", []string{"--tombstone-lifetime=45"}, "", "want a duration"},
		{"stray argument", []string{"extra"}, "", `unexpected argument "extra"`},
		{"unknown key", nil, "max_rdy_count = 1\n", `unknown key "max_rdy_count"`},
		{"nsqd key", nil, "data_path = \"/tmp\"\n", `unknown key "data_path"`},
		{"flag name as key", nil, "tcp-address = \"x\"\n", `unknown key "tcp-address"`},
		{"wrong type", nil, "tcp_address = 4160\n", `key "tcp_address": want a string`},
		{"syntax", nil, "tcp_address = \n", "parse:"},
		{"missing file", []string{"--config=/nonexistent/nsqlookupd.toml"}, "", "read config file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.doc != "" {
				args = append(args, "--config="+writeConfig(t, tt.doc))
			}
			_, _, err := spec().Load(args)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load(%q) error = %v, want it to contain %q", args, err, tt.want)
			}
		})
	}
}

// TestExampleConfig parses contrib/nsqlookupd.toml.example strictly and checks that it sets
// every key to its default. It starts from zero Options rather than the defaults, so a key
// missing from the example, or set to something else, shows up as a difference.
func TestExampleConfig(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "contrib", "nsqlookupd.toml.example"))
	if err != nil {
		t.Fatal(err)
	}
	got := &lookupd.Options{}
	if err := spec().ApplyConfig(got, string(data)); err != nil {
		t.Fatalf("the example does not parse strictly: %v", err)
	}
	want := lookupd.NewOptions()
	// The broadcast address defaults to the host name, so the example leaves it commented out.
	if !strings.Contains(string(data), "\n# broadcast_address = ") {
		t.Error("the example does not show the commented-out broadcast_address")
	}
	got.BroadcastAddress = want.BroadcastAddress
	// max_connections defaults to the host's open-file limit less a reserve, so the example
	// leaves it commented out too.
	if !strings.Contains(string(data), "\n# max_connections = ") {
		t.Error("the example does not show the commented-out max_connections")
	}
	got.MaxConnections = want.MaxConnections
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the example sets:\n %+v\nwant the defaults:\n %+v", got, want)
	}
}

func TestUsage(t *testing.T) {
	var out strings.Builder
	spec().PrintUsage(&out)
	for _, s := range []string{"Usage: nsqlookupd", "--tcp-address <string>", "--tombstone-lifetime <duration>",
		`(default "0.0.0.0:4161")`, "(default 5m0s)", "contrib/nsqlookupd.toml.example"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("usage does not contain %q:\n%s", s, out.String())
		}
	}
}

// writeConfig writes doc to a config file in a temporary directory and returns its path.
func writeConfig(t *testing.T, doc string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nsqlookupd.toml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
