package admin

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/cmdline"
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
			// Browsers ignore HSTS over plain HTTP; behind a proxy it is the proxy's to send.
			if got := resp.Header.Get("Strict-Transport-Security"); got != "" {
				t.Errorf("Strict-Transport-Security %q over plain HTTP", got)
			}
		})
	}
}

// TestConfigHidesSecrets: GET /config never serves an option that carries a secret, to anyone,
// and answers for it as for an unknown option; with --admin-user only an admin reads the rest.
// Behind a proxy on the same host every request is from 127.0.0.1, inside the default
// --allow-config-from-cidr, so the CIDR alone protects nothing.
func TestConfigHidesSecrets(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "key", strings.Repeat("k", minSessionKey))
	a := startLoginAdmin(t, func(o *Options) {
		o.SessionKeyFile = dir + "/key"
		o.NotificationHTTPEndpoint = "https://hooks.example/notify?token=s3cret"
	})
	alice, bob := login(t, a, "alice"), login(t, a, "bob")
	for _, opt := range []string{"users", "session_key_file", "tls_key", "http_client_tls_key", "notification_http_endpoint"} {
		for who, want := range map[string]struct {
			cookie *http.Cookie
			code   int
			body   string
		}{
			"alice": {alice, http.StatusBadRequest, `{"message":"INVALID_OPTION"}`},
			"bob":   {bob, http.StatusForbidden, `{"message":"FORBIDDEN"}`},
		} {
			ans := send(t, nil, "GET", adminURL(a, "/config/"+opt), nil, want.cookie)
			if ans.code != want.code || ans.body != want.body {
				t.Errorf("%s reads %s: %d %s, want %d %s", who, opt, ans.code, ans.body, want.code, want.body)
			}
			if strings.Contains(ans.body, "pbkdf2") || strings.Contains(ans.body, "s3cret") || strings.Contains(ans.body, dir) {
				t.Errorf("%s reads %s: %s", who, opt, ans.body)
			}
		}
	}
	if ans := send(t, nil, "GET", adminURL(a, "/config/log_level"), nil, bob); ans.code != http.StatusForbidden {
		t.Errorf("bob, not an admin, reads log_level: %d %s", ans.code, ans.body)
	}
	if ans := send(t, nil, "GET", adminURL(a, "/config/log_level"), nil, nil, "Authorization", basic("bob", "bob-pw")); ans.code != http.StatusForbidden {
		t.Errorf("bob by Basic reads log_level: %d %s", ans.code, ans.body)
	}
	if ans := send(t, nil, "GET", adminURL(a, "/config/log_level"), nil, alice); ans.code != 200 || ans.body != a.getOpts().LogLevel {
		t.Errorf("alice reads log_level: %d %s", ans.code, ans.body)
	}
	// Every option named secret exists: a renamed one would otherwise be served again.
	for opt := range secretOptions {
		if _, ok := cmdline.ValueByKey(NewOptions(), opt); !ok {
			t.Errorf("secretOptions names %q, which is no option", opt)
		}
	}
}
