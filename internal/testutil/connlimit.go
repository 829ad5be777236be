package testutil

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// CheckConnectionLimitOptions checks a daemon's --max-connections and --max-connections-per-ip,
// which every daemon takes alike: set by flags and by the config file, flags first; 0 taken as
// given (unlimited); a negative value stopping start-up with a clear error; and the limits in
// the start-up record. load parses args as the daemon's main does and returns the limits and
// what loading or validating the options said; run is the daemon's main without the exit;
// base is what every command line needs to start on loopback.
func CheckConnectionLimitOptions(t *testing.T, load func(args []string) (total, perIP int, err error),
	run func(ctx context.Context, args []string, stdout, stderr io.Writer) int, base []string) {
	t.Helper()
	config := writeFile(t, "max_connections = 500\nmax_connections_per_ip = \"20\"\n")
	with := func(extra ...string) []string { return append(slices.Clone(base), extra...) }
	for _, tc := range []struct {
		name         string
		args         []string
		total, perIP int
	}{
		{"flags", []string{"--max-connections=100", "--max-connections-per-ip", "4"}, 100, 4},
		{"config file", []string{"--config=" + config}, 500, 20},
		{"flags over the config file", []string{"--config=" + config, "--max-connections-per-ip=2"}, 500, 2},
		{"0 is unlimited", []string{"--max-connections=0"}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			total, perIP, err := load(with(tc.args...))
			if err != nil {
				t.Fatal(err)
			}
			if total != tc.total || perIP != tc.perIP {
				t.Errorf("max connections %d, per IP %d; want %d, %d", total, perIP, tc.total, tc.perIP)
			}
		})
	}
	negative := writeFile(t, "max_connections_per_ip = -3\n")
	CheckRun(t, run, []RunCase{
		{Name: "negative flag", Args: with("--max-connections=-1"), Code: 1,
			Stderr: "--max-connections must not be negative (0 is unlimited), got -1"},
		{Name: "negative key", Args: with("--config=" + negative), Code: 1,
			Stderr: "--max-connections-per-ip must not be negative (0 is unlimited), got -3"},
		{Name: "limits in the start-up record", Args: with("--max-connections=7", "--max-connections-per-ip=3"),
			Stderr: "max_connections=7 max_connections_per_ip=3", Cancelled: true},
	})
}

// writeFile writes a config file with doc in a temporary directory and returns its path.
func writeFile(t *testing.T, doc string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// GetFrom GETs url over a connection from the local IP from (a 127.0.0.0/8 address other
// than 127.0.0.1 counts as another client), not kept alive, over TLS with tlsConfig when the
// url is https. It returns the status and the body.
func GetFrom(t testing.TB, url, from string, tlsConfig *tls.Config, timeout time.Duration) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext:       (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext,
		TLSClientConfig:   tlsConfig,
		DisableKeepAlives: true,
	}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", url, from, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}
