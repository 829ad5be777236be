package nsqd

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzHTTPAPI sends arbitrary requests to nsqd's HTTP API, NSQ's endpoints and Tern's
// extensions alike: whatever the path, query and body, the daemon answers without a 5xx (a
// panic is answered 500 by the router) and every error is a JSON object with a message.
func FuzzHTTPAPI(f *testing.F) {
	n, _ := startTestDaemon(f, f.TempDir(), withHTTP(false, nil), withLogger(slog.New(slog.DiscardHandler)))
	h := n.httpHandler()
	for _, seed := range []struct {
		method uint8
		target string
		body   string
	}{
		{1, "/pub?topic=t", "hello"},
		{1, "/pub?topic=t&defer=1000", "later"},
		{1, "/mpub?topic=t", "a\nb\n"},
		{1, "/mpub?topic=t&binary=true", "\x00\x00\x00\x01\x00\x00\x00\x01x"},
		{1, "/topic/create?topic=t", ""},
		{1, "/channel/create?topic=t&channel=c", ""},
		{1, "/channel/create?topic=t&channel=d&to=oldest", ""},
		{1, "/topic/settings?topic=t", `{"message_ttl_ms":1000,"max_messages":10,"quota_policy":"drop_oldest"}`},
		{1, "/channel/settings?topic=t&channel=c", `{"max_attempts":2,"dead_letter_expired":true}`},
		{0, "/channel/settings?topic=t&channel=c", ""},
		{1, "/channel/seek?topic=t&channel=c&time=2026-01-01T00:00:00Z", ""},
		{1, "/channel/seek?topic=t&channel=c&id=0123456789abcdef", ""},
		{0, "/channel/dead_letters?topic=t&channel=c&n=5", ""},
		{1, "/channel/redrive?topic=t&channel=c&id=0123456789abcdef", ""},
		{0, "/channel/peek?topic=t&channel=c&state=deferred&n=3", ""},
		{0, "/channel/message?topic=t&channel=c&id=0123456789abcdef", ""},
		{0, "/stats?format=json&topic=t&channel=c&include_clients=false", ""},
		{2, "/config/log_level", `"debug"`},
		{1, "/topic/empty?topic=t", ""},
		{1, "/channel/pause?topic=t&channel=c", ""},
	} {
		f.Add(seed.method, seed.target, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, method uint8, target string, body []byte) {
		if !strings.HasPrefix(target, "/") || strings.HasPrefix(target, "/debug/") || len(body) > 1<<16 {
			return // profiles and free-memory are not inputs; targets must be paths
		}
		m := []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete}[method%4]
		req, err := http.NewRequest(m, "http://nsqd"+target, bytes.NewReader(body))
		if err != nil {
			return
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %s %q: %d %s", m, target, body, w.Code, w.Body.Bytes())
		}
		if w.Code >= 400 && strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
			var e struct {
				Message string `json:"message"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Message == "" {
				t.Fatalf("%s %s: error answer %q is not a JSON message", m, target, w.Body.Bytes())
			}
		}
	})
}
