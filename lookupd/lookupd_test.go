package lookupd

import (
	"net"
	"strings"
	"testing"
)

func TestNewErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = busy.Close() })
	// free is an address that was free a moment ago: New binding TCP there before failing on
	// HTTP must release it again.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := probe.Addr().String()
	_ = probe.Close()

	tests := []struct {
		name      string
		configure func(o *Options)
		want      string
	}{
		{"invalid options", func(o *Options) { o.TombstoneLifetime = 0 }, "--tombstone-lifetime must be positive"},
		{"TCP port taken", func(o *Options) { o.TCPAddress = busy.Addr().String() }, "listen on " + busy.Addr().String()},
		{"HTTP port taken", func(o *Options) { o.TCPAddress, o.HTTPAddress = free, busy.Addr().String() }, "listen on " + busy.Addr().String()},
		{"bad address", func(o *Options) { o.HTTPAddress = "127.0.0.1:nonsense" }, "listen on 127.0.0.1:nonsense"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := NewOptions()
			opts.TCPAddress, opts.HTTPAddress = "127.0.0.1:0", "127.0.0.1:0"
			tt.configure(opts)
			l, err := New(opts, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				if l != nil {
					_ = l.tcpListener.Close()
					_ = l.httpListener.Close()
				}
				t.Fatalf("New: %v, want an error containing %q", err, tt.want)
			}
		})
	}
	// The failed New released the TCP port it had bound.
	ln, err := net.Listen("tcp", free)
	if err != nil {
		t.Fatalf("the port of the failed New is still bound: %v", err)
	}
	_ = ln.Close()
}
