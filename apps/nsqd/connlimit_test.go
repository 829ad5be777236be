package main

import (
	"testing"

	"github.com/ternmq/tern/internal/testutil"
)

// TestConnectionLimitOptions checks --max-connections and --max-connections-per-ip are set
// by flags and by the config file, flags first, that 0 is taken as given (unlimited), and
// that a negative value stops start-up with a clear error.
func TestConnectionLimitOptions(t *testing.T) {
	testutil.CheckConnectionLimitOptions(t, func(args []string) (int, int, error) {
		o, _, err := loadOptions(args)
		if err != nil {
			return 0, 0, err
		}
		return o.MaxConnections, o.MaxConnectionsPerIP, o.Validate()
	}, run, loopbackArgs(t))
}
