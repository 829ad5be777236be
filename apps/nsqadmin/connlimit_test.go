package main

import (
	"testing"

	"github.com/ternmq/tern/internal/testutil"
)

// TestConnectionLimitOptions checks --max-connections and --max-connections-per-ip are set
// by flags and by the config file, flags first, that 0 is taken as given (unlimited), and
// that a negative value stops start-up with a clear error.
func TestConnectionLimitOptions(t *testing.T) {
	config := writeConfig(t, "max_connections = 500\nmax_connections_per_ip = \"20\"\n")
	tests := []struct {
		name         string
		args         []string
		total, perIP int
	}{
		{"flags", []string{"--max-connections=100", "--max-connections-per-ip", "4"}, 100, 4},
		{"config file", []string{"--config=" + config}, 500, 20},
		{"flags over the config file", []string{"--config=" + config, "--max-connections-per-ip=2"}, 500, 2},
		{"0 is unlimited", []string{"--max-connections=0"}, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, _, err := spec().Load(append(tc.args, loopbackArgs...))
			if err != nil {
				t.Fatal(err)
			}
			if o.MaxConnections != tc.total || o.MaxConnectionsPerIP != tc.perIP {
				t.Errorf("max connections %d, per IP %d; want %d, %d", o.MaxConnections, o.MaxConnectionsPerIP, tc.total, tc.perIP)
			}
			if err := o.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
	with := func(extra ...string) []string { return append(append([]string{}, loopbackArgs...), extra...) }
	negative := writeConfig(t, "max_connections_per_ip = -3\n")
	testutil.CheckRun(t, run, []testutil.RunCase{
		{Name: "negative flag", Args: with("--max-connections=-1"), Code: 1,
			Stderr: "--max-connections must not be negative (0 is unlimited), got -1"},
		{Name: "negative key", Args: with("--config=" + negative), Code: 1,
			Stderr: "--max-connections-per-ip must not be negative (0 is unlimited), got -3"},
		{Name: "limits in the start-up record", Args: with("--max-connections=7", "--max-connections-per-ip=3"),
			Stderr: "max_connections=7 max_connections_per_ip=3", Cancelled: true},
	})
}
