package admin

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// startLoneAdmin runs an admin over an nsqd that does not exist: its pages show the warning
// and its API answers 502, which is enough for what the security tests look at.
func startLoneAdmin(t *testing.T, configure func(*Options)) *Admin {
	t.Helper()
	return startAdmin(t, func(o *Options) {
		o.NSQDHTTPAddresses = []string{"127.0.0.1:1"}
		o.HTTPClientConnectTimeout = 100 * time.Millisecond
		if configure != nil {
			configure(o)
		}
	})
}

// TestSecurityHeaders checks every kind of answer carries the security headers: pages, JSON,
// assets, errors, and the refusal of a cross-site form.
func TestSecurityHeaders(t *testing.T) {
	a := startLoneAdmin(t, nil)
	tests := []struct {
		method, path string
		header       []string
		code         int
	}{
		{"GET", "/", nil, 200},
		{"GET", "/nodes", nil, 200},
		{"GET", "/api/topics", nil, 502},
		{"GET", "/static/admin.css", nil, 200},
		{"GET", "/ping", nil, 200},
		{"GET", "/metrics", nil, 200},
		{"GET", "/no/such/page", nil, 404},
		{"POST", "/topics", []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}, 403},
	}
	want := map[string]string{
		"Content-Security-Policy": contentSecurityPolicy,
		"X-Frame-Options":         "DENY",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "same-origin",
	}
	if !strings.Contains(contentSecurityPolicy, "frame-ancestors 'none'") || strings.Contains(contentSecurityPolicy, "unsafe-inline") {
		t.Errorf("the policy is not strict: %s", contentSecurityPolicy)
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, adminURL(a, tt.path), nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i+1 < len(tt.header); i += 2 {
				req.Header.Set(tt.header[i], tt.header[i+1])
			}
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != tt.code {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.code)
			}
			for k, v := range want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
		})
	}
}
