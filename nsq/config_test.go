package nsq_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/nsq"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		mutate func(c *nsq.Config)
		want   []string // substrings of the error, one per problem; none means valid
	}{
		{"defaults", func(c *nsq.Config) {}, nil},
		{"zero literal", func(c *nsq.Config) { *c = nsq.Config{} }, nil},
		{"disabled features", func(c *nsq.Config) {
			c.HeartbeatInterval, c.OutputBufferSize, c.OutputBufferTimeout = -1, -1, -1
		}, nil},
		{"read timeout", func(c *nsq.Config) { c.ReadTimeout = time.Millisecond }, []string{"ReadTimeout", "HeartbeatInterval"}},
		{"write timeout", func(c *nsq.Config) { c.WriteTimeout = time.Hour }, []string{"WriteTimeout"}},
		{"heartbeat too short", func(c *nsq.Config) { c.HeartbeatInterval = 10 * time.Millisecond }, []string{"HeartbeatInterval"}},
		{"heartbeat above read timeout", func(c *nsq.Config) { c.HeartbeatInterval = 2 * time.Minute }, []string{"below ReadTimeout"}},
		{"output buffer", func(c *nsq.Config) { c.OutputBufferSize = 10 }, []string{"OutputBufferSize"}},
		{"msg timeout", func(c *nsq.Config) { c.MsgTimeout = 10 * time.Millisecond }, []string{"MsgTimeout"}},
		{"sample rate", func(c *nsq.Config) { c.SampleRate = 100 }, []string{"SampleRate"}},
		{"both compressions", func(c *nsq.Config) { c.Snappy, c.Deflate = true, true }, []string{"snappy and deflate"}},
		{"deflate level", func(c *nsq.Config) { c.DeflateLevel = 10 }, []string{"DeflateLevel"}},
		{"max in flight", func(c *nsq.Config) { c.MaxInFlight = -1 }, []string{"MaxInFlight"}},
		{"max attempts", func(c *nsq.Config) { c.MaxAttempts = 70000 }, []string{"MaxAttempts"}},
		{"backoff order", func(c *nsq.Config) { c.ReconnectBackoff = time.Minute }, []string{"MaxReconnectBackoff"}},
		{"every problem at once", func(c *nsq.Config) {
			c.SampleRate, c.DeflateLevel, c.MaxInFlight = -1, 42, -5
		}, []string{"SampleRate", "DeflateLevel", "MaxInFlight"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := nsq.NewConfig()
			tc.mutate(c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted the config, want errors about %v", tc.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Errorf("Validate reported %d problems, want %d:\n%v", len(lines), len(tc.want), err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestNewConfigDefaults(t *testing.T) {
	t.Parallel()
	c := nsq.NewConfig()
	if c.UserAgent != nsq.UserAgent || !strings.HasPrefix(c.UserAgent, "tern-nsq/") {
		t.Errorf("UserAgent %q", c.UserAgent)
	}
	if c.DialTimeout != time.Second || c.ReadTimeout != time.Minute || c.HeartbeatInterval != 30*time.Second ||
		c.OutputBufferSize != 16384 || c.DeflateLevel != 6 || c.MaxInFlight != 1 || c.Logger != nil {
		t.Errorf("unexpected defaults %+v", c)
	}
	// Each call returns fresh defaults: changing one does not change the next.
	c.MaxInFlight = 99
	if nsq.NewConfig().MaxInFlight != 1 {
		t.Error("NewConfig shares state between calls")
	}
}
