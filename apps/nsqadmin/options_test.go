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

	"github.com/ternmq/tern/admin"
)

// nsqFlags are the flags NSQ 1.3's nsqadmin accepts.
var nsqFlags = []string{
	"acl-http-header", "admin-user", "allow-config-from-cidr", "base-path", "config", "dev-static-dir",
	"graphite-url", "http-address", "http-client-connect-timeout", "http-client-request-timeout",
	"http-client-tls-cert", "http-client-tls-insecure-skip-verify", "http-client-tls-key",
	"http-client-tls-root-ca-file", "log-level", "log-prefix", "lookupd-http-address",
	"notification-http-endpoint", "nsqd-http-address", "proxy-graphite",
	"statsd-counter-format", "statsd-gauge-format", "statsd-interval", "statsd-prefix", "verbose", "version",
}

// ternFlags are Tern's own flags, which NSQ's nsqadmin does not have.
var ternFlags = []string{
	"hash-password", "max-connections", "max-connections-per-ip", "sample-interval", "secure-cookies",
	"session-key-file", "tls-cert", "tls-key", "user",
}

// nsqKeys are the TOML keys NSQ (or Tern, for its repeatable --user) names differently from
// the flag.
var nsqKeys = map[string]string{
	"lookupd-http-address": "nsqlookupd_http_addresses",
	"nsqd-http-address":    "nsqd_http_addresses",
	"admin-user":           "admin_users",
	"user":                 "users",
}

func TestFlagNamesMatchNSQ(t *testing.T) {
	var configPath string
	var version bool
	fs := spec().FlagSet(admin.NewOptions(), &configPath, &version)
	var got []string
	fs.VisitAll(func(fl *flag.Flag) { got = append(got, fl.Name) })
	want := slices.Sorted(slices.Values(append(slices.Clone(nsqFlags), ternFlags...)))
	if !slices.Equal(got, want) {
		t.Errorf("flags = %q, want %q", got, want)
	}
}

func TestEveryOptionIsSettable(t *testing.T) {
	usage := flagUsage()
	st := reflect.TypeFor[admin.Options]()
	seen := map[string]bool{}
	for i := range st.NumField() {
		sf := st.Field(i)
		name := sf.Tag.Get("flag")
		if sf.Tag.Get("toml") == "" || name == "" {
			t.Errorf("field %s needs both a flag and a toml tag", sf.Name)
			continue
		}
		want := strings.ReplaceAll(name, "-", "_")
		if k, ok := nsqKeys[name]; ok {
			want = k
		}
		if sf.Tag.Get("toml") != want {
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
nsqlookupd_http_addresses = ["l1:4161", "l2:4161"]
admin_users = "alice,bob"
http_client_request_timeout = 3000
log_level = "WARN"
`)
	tests := []struct {
		name string
		args []string
		want func(o *admin.Options)
	}{
		{"defaults", nil, func(*admin.Options) {}},
		{"repeated flags", []string{"--lookupd-http-address=a:1", "--lookupd-http-address", "b:2", "--admin-user=x", "--base-path=/admin"}, func(o *admin.Options) {
			o.NSQLookupdHTTPAddresses = []string{"a:1", "b:2"}
			o.AdminUsers = []string{"x"}
			o.BasePath = "/admin"
		}},
		{"config file", []string{"--config", config}, func(o *admin.Options) {
			o.NSQLookupdHTTPAddresses = []string{"l1:4161", "l2:4161"}
			o.AdminUsers = []string{"alice", "bob"}
			o.HTTPClientRequestTimeout = 3 * time.Second
			o.LogLevel = "warn"
		}},
		{"flags over config file", []string{"--config=" + config, "--lookupd-http-address=z:9", "--sample-interval=30s"}, func(o *admin.Options) {
			o.NSQLookupdHTTPAddresses = []string{"z:9"}
			o.AdminUsers = []string{"alice", "bob"}
			o.HTTPClientRequestTimeout = 3 * time.Second
			o.LogLevel = "warn"
			o.SampleInterval = 30 * time.Second
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := spec().Load(tt.args)
			if err != nil {
				t.Fatalf("Load(%q): %v", tt.args, err)
			}
			want := admin.NewOptions()
			tt.want(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("options:\n got  %+v\n want %+v", got, want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(o *admin.Options)
		want   string
	}{
		{"no cluster", func(*admin.Options) {}, "--nsqd-http-address or --lookupd-http-address required"},
		{"both", func(o *admin.Options) { o.NSQDHTTPAddresses = []string{"a:1"} }, "use --nsqd-http-address or --lookupd-http-address not both"},
		{"bad address", func(o *admin.Options) { o.NSQLookupdHTTPAddresses = []string{"nohost"} }, `--lookupd-http-address "nohost": want host:port`},
		{"graphite", func(o *admin.Options) { o.GraphiteURL = "http://g" }, "--graphite-url is not supported"},
		{"statsd", func(o *admin.Options) { o.StatsdPrefix = "x" }, "--statsd-* options"},
		{"cert without key", func(o *admin.Options) { o.HTTPClientTLSCert = "c.pem" }, "must be given together"},
		{"tls key without cert", func(o *admin.Options) { o.TLSKey = "k.pem" }, "--tls-cert and --tls-key must be given together"},
		{"bad cidr", func(o *admin.Options) { o.AllowConfigFromCIDR = "everyone" }, "not a CIDR network"},
		{"bad endpoint", func(o *admin.Options) { o.NotificationHTTPEndpoint = "ftp://x" }, "must be an http:// or https:// URL"},
		{"fast sampling", func(o *admin.Options) { o.SampleInterval = time.Millisecond }, "--sample-interval must be at least 1s"},
		{"bad level", func(o *admin.Options) { o.LogLevel = "loud" }, "--log-level"},
		{"plain password", func(o *admin.Options) { o.ACLHTTPHeader = ""; o.Users = []string{"alice:secret"} }, "want pbkdf2-sha256$<iterations>"},
		{"no name", func(o *admin.Options) { o.ACLHTTPHeader = ""; o.Users = []string{"secret"} }, "want name:hash"},
		{"few iterations", func(o *admin.Options) {
			o.ACLHTTPHeader = ""
			o.Users = []string{"alice:pbkdf2-sha256$10$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA=="}
		}, "iterations must be a number from 10000"},
		{"users and header", func(o *admin.Options) { o.Users = []string{"alice:" + testHash} }, "--user and --acl-http-header both say who the user is"},
		{"admin not a user", func(o *admin.Options) {
			o.ACLHTTPHeader, o.Users, o.AdminUsers = "", []string{"alice:" + testHash}, []string{"bob"}
		}, `--admin-user "bob" is not one of the --user users`},
		{"key without users", func(o *admin.Options) { o.SessionKeyFile = "k" }, "--session-key-file signs login sessions and needs --user"},
		{"secure cookies without users", func(o *admin.Options) { o.SecureCookies = true }, "--secure-cookies marks the login session's cookie and needs --user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := admin.NewOptions()
			if tt.name != "no cluster" {
				o.NSQLookupdHTTPAddresses = []string{"127.0.0.1:4161"}
			}
			tt.modify(o)
			err := o.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// testHash is a well-formed hash, for the validation tests.
const testHash = "pbkdf2-sha256$10000$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g="

// TestExampleConfig parses contrib/nsqadmin.toml.example strictly and checks that it sets
// every key to its default. It starts from zero Options rather than the defaults, so a key
// missing from the example, or set to something else, shows up as a difference.
func TestExampleConfig(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "contrib", "nsqadmin.toml.example"))
	if err != nil {
		t.Fatal(err)
	}
	got := &admin.Options{}
	if err := spec().ApplyConfig(got, string(data)); err != nil {
		t.Fatalf("the example does not parse strictly: %v", err)
	}
	want := admin.NewOptions()
	// Empty lists in the file decode as empty, not nil.
	got.NSQLookupdHTTPAddresses, got.NSQDHTTPAddresses, got.AdminUsers, got.Users = nil, nil, nil, nil
	// max_connections defaults to the host's open-file limit less a reserve, so the example
	// leaves it commented out.
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
	for _, s := range []string{"Usage: nsqadmin", "--lookupd-http-address <string>", "--http-client-request-timeout <duration>",
		`(default "0.0.0.0:4171")`, "(default 5s)", "contrib/nsqadmin.toml.example"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("usage does not contain %q:\n%s", s, out.String())
		}
	}
}

// writeConfig writes doc to a config file in a temporary directory and returns its path.
func writeConfig(t *testing.T, doc string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nsqadmin.toml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
