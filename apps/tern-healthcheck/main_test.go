package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ping", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("OK")) })
	mux.HandleFunc("/sick", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "NOK - disk full", http.StatusInternalServerError)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	closed := httptest.NewServer(mux)
	closed.Close()

	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"healthy", []string{srv.URL + "/ping"}, 0, ""},
		{"every URL must answer", []string{srv.URL + "/ping", srv.URL + "/sick"}, 1, "500 Internal Server Error: NOK - disk full"},
		{"nothing listens", []string{closed.URL + "/ping"}, 1, "connection refused"},
		{"no URL", nil, 1, "Usage: tern-healthcheck"},
		{"bad timeout", []string{"--timeout=0s", srv.URL}, 1, "Usage: tern-healthcheck"},
		{"help", []string{"--help"}, 0, "Usage: tern-healthcheck"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(context.Background(), tc.args, &stderr); code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tc.stderr)
			}
		})
	}
}
