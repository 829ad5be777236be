package lookupd

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/connlimit"
)

func TestNewOptionsAreNSQDefaults(t *testing.T) {
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	want := Options{
		LogLevel: "info", LogPrefix: "[nsqlookupd] ",
		TCPAddress: "0.0.0.0:4160", HTTPAddress: "0.0.0.0:4161", BroadcastAddress: hostname,
		InactiveProducerTimeout: 300 * time.Second, TombstoneLifetime: 45 * time.Second,
		TLSMinVersion: "tls1.2", // Tern's TLS, off without a certificate
		// Tern's connection bound, derived from the open-file limit.
		MaxConnections: connlimit.DefaultMax(),
	}
	if got := *NewOptions(); got != want {
		t.Errorf("NewOptions() = %+v, want %+v", got, want)
	}
	a, b := NewOptions(), NewOptions()
	a.TCPAddress = "changed"
	if b.TCPAddress == "changed" {
		t.Error("NewOptions returns a shared value")
	}
}

func TestValidate(t *testing.T) {
	o := NewOptions()
	if err := o.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	o = &Options{LogLevel: "loud", InactiveProducerTimeout: -1}
	err := o.Validate()
	for _, want := range []string{"--log-level", "--tcp-address", "--http-address", "--inactive-producer-timeout", "--tombstone-lifetime"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error %v does not mention %s", err, want)
		}
	}
}
