package httpapi_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/ternmq/tern/internal/httpapi"
)

// logSink is a slog.Handler that keeps every record, so tests can check what was logged.
type logSink struct {
	mu   sync.Mutex
	recs []slog.Record
	seen chan struct{} // receives a value, without blocking, after each record
}

func newLogSink() *logSink { return &logSink{seen: make(chan struct{}, 1)} }

func (s *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (s *logSink) WithAttrs([]slog.Attr) slog.Handler       { return s }
func (s *logSink) WithGroup(string) slog.Handler            { return s }

func (s *logSink) Handle(_ context.Context, r slog.Record) error {
	s.mu.Lock()
	s.recs = append(s.recs, r.Clone())
	s.mu.Unlock()
	select {
	case s.seen <- struct{}{}:
	default:
	}
	return nil
}

// find returns the attributes, as strings, of the first record with msg that match accepts
// (any, if match is nil).
func (s *logSink) find(msg string, match func(map[string]string) bool) (map[string]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.recs {
		if r.Message != msg {
			continue
		}
		attrs := map[string]string{"level": r.Level.String()}
		r.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value.String()
			return true
		})
		if match == nil || match(attrs) {
			return attrs, true
		}
	}
	return nil, false
}

// waitFor waits until a record that find would return arrives, failing the test after timeout.
func (s *logSink) waitFor(t *testing.T, msg string, match func(map[string]string) bool, timeout time.Duration) map[string]string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if attrs, ok := s.find(msg, match); ok {
			return attrs
		}
		select {
		case <-s.seen:
		case <-deadline:
			t.Fatalf("no %q record within %v", msg, timeout)
		}
	}
}

type point struct {
	X int `json:"x"`
}

func newTestRouter(t *testing.T, sink *logSink, cfg httpapi.Config) *httpapi.Router {
	t.Helper()
	cfg.Logger = slog.New(sink)
	rt := httpapi.NewRouter(cfg)
	ret := func(v any, err error) httpapi.Handler {
		return func(http.ResponseWriter, *http.Request, httprouter.Params) (any, error) { return v, err }
	}
	rt.Handle("GET", "/text", ret("OK", nil))
	rt.Handle("GET", "/bytes", ret([]byte("raw\nlines\n"), nil))
	rt.Handle("POST", "/nil", ret(nil, nil))
	rt.Handle("GET", "/json", ret(point{X: 7}, nil))
	rt.Handle("GET", "/status", ret(httpapi.Status{Code: 500, Body: "NOK - disk full"}, nil))
	rt.Handle("GET", "/apierr", ret(nil, httpapi.NewError(404, "TOPIC_NOT_FOUND")))
	rt.Handle("GET", "/wrapped", ret(nil, fmt.Errorf("lookup: %w", httpapi.NewError(400, "INVALID_TOPIC"))))
	rt.Handle("GET", "/plainerr", ret(nil, errors.New("disk on fire")))
	rt.Handle("GET", "/unencodable", ret(func() {}, nil))
	rt.Handle("GET", "/param/:name", func(_ http.ResponseWriter, _ *http.Request, ps httprouter.Params) (any, error) {
		return ps.ByName("name"), nil
	})
	rt.Handle("GET", "/panic", func(http.ResponseWriter, *http.Request, httprouter.Params) (any, error) {
		panic("handler bug")
	})
	rt.Handler("GET", "/raw", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/x-raw")
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, "raw handler")
	}))
	return rt
}

func TestRouterRendering(t *testing.T) {
	sink := newLogSink()
	rt := newTestRouter(t, sink, httpapi.Config{})
	tests := []struct {
		name, method, path string
		status             int
		contentType        string
		body               string
		allow              string
	}{
		{"string is text", "GET", "/text", 200, httpapi.ContentTypeText, "OK", ""},
		{"bytes are text", "GET", "/bytes", 200, httpapi.ContentTypeText, "raw\nlines\n", ""},
		{"nil is an empty 200", "POST", "/nil", 200, "", "", ""},
		{"struct is JSON", "GET", "/json", 200, httpapi.ContentTypeJSON, `{"x":7}`, ""},
		{"status overrides 200", "GET", "/status", 500, httpapi.ContentTypeText, "NOK - disk full", ""},
		{"typed error", "GET", "/apierr", 404, httpapi.ContentTypeJSON, `{"message":"TOPIC_NOT_FOUND"}`, ""},
		{"wrapped typed error", "GET", "/wrapped", 400, httpapi.ContentTypeJSON, `{"message":"INVALID_TOPIC"}`, ""},
		{"untyped error", "GET", "/plainerr", 500, httpapi.ContentTypeJSON, `{"message":"INTERNAL_ERROR"}`, ""},
		{"unencodable result", "GET", "/unencodable", 500, httpapi.ContentTypeJSON, `{"message":"INTERNAL_ERROR"}`, ""},
		{"path parameter", "GET", "/param/mem_queue_size", 200, httpapi.ContentTypeText, "mem_queue_size", ""},
		{"panic", "GET", "/panic", 500, httpapi.ContentTypeJSON, `{"message":"INTERNAL_ERROR"}`, ""},
		{"unknown path", "GET", "/nowhere", 404, httpapi.ContentTypeJSON, `{"message":"NOT_FOUND"}`, ""},
		{"wrong method", "POST", "/text", 405, httpapi.ContentTypeJSON, `{"message":"METHOD_NOT_ALLOWED"}`, "GET, OPTIONS"},
		{"raw handler keeps its answer", "GET", "/raw", 418, "text/x-raw", "raw handler", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			rt.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			res := rec.Result()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tc.status || string(body) != tc.body {
				t.Errorf("got %d %q, want %d %q", res.StatusCode, body, tc.status, tc.body)
			}
			if got := res.Header.Get("Content-Type"); got != tc.contentType {
				t.Errorf("Content-Type %q, want %q", got, tc.contentType)
			}
			if got := res.Header.Get("X-NSQ-Content-Type"); got != "nsq; version=1.0" {
				t.Errorf("X-NSQ-Content-Type %q, want %q", got, "nsq; version=1.0")
			}
			if tc.allow != "" && res.Header.Get("Allow") != tc.allow {
				t.Errorf("Allow %q, want %q", res.Header.Get("Allow"), tc.allow)
			}
		})
	}
}

func TestRouterLogsFailures(t *testing.T) {
	tests := []struct {
		path, msg string
		want      map[string]string // attributes the record must carry
		absent    string            // a message that must not be logged
	}{
		{"/plainerr", "http handler failed", map[string]string{"level": "ERROR", "error": "disk on fire", "path": "/plainerr"}, ""},
		{"/panic", "http handler panicked", map[string]string{"level": "ERROR", "panic": "handler bug", "path": "/panic"}, ""},
		{"/unencodable", "http response not encodable", map[string]string{"level": "ERROR"}, ""},
		{"/apierr", "http request", map[string]string{"level": "DEBUG", "status": "404", "method": "GET"}, "http handler failed"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			sink := newLogSink()
			rt := newTestRouter(t, sink, httpapi.Config{})
			rt.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", tc.path, nil))
			attrs, ok := sink.find(tc.msg, nil)
			if !ok {
				t.Fatalf("no %q record", tc.msg)
			}
			for k, v := range tc.want {
				if attrs[k] != v {
					t.Errorf("%s = %q, want %q", k, attrs[k], v)
				}
			}
			if tc.msg == "http handler panicked" && !strings.Contains(attrs["stack"], "httpapi_test") {
				t.Errorf("stack does not show the panicking handler: %q", attrs["stack"])
			}
			if tc.absent != "" {
				if _, ok := sink.find(tc.absent, nil); ok {
					t.Errorf("a typed error was logged as %q", tc.absent)
				}
			}
		})
	}
}

func TestRouterPassesAbortHandler(t *testing.T) {
	rt := httpapi.NewRouter(httpapi.Config{})
	rt.Handle("GET", "/abort", func(http.ResponseWriter, *http.Request, httprouter.Params) (any, error) {
		panic(http.ErrAbortHandler)
	})
	defer func() {
		if rcv := recover(); rcv != http.ErrAbortHandler {
			t.Fatalf("recovered %v, want http.ErrAbortHandler passed on to net/http", rcv)
		}
	}()
	rt.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/abort", nil))
	t.Fatal("the abort was swallowed")
}

func TestRespond(t *testing.T) {
	tests := []struct {
		name   string
		status int
		v      any
		body   string
	}{
		{"json with extra fields", 403, map[string]any{"message": "TLS_REQUIRED", "https_port": 4152}, `{"https_port":4152,"message":"TLS_REQUIRED"}`},
		{"text", 200, "OK", "OK"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			if _, err := httpapi.Respond(rec, tc.status, tc.v); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tc.status || rec.Body.String() != tc.body {
				t.Errorf("got %d %q, want %d %q", rec.Code, rec.Body.String(), tc.status, tc.body)
			}
			if rec.Header().Get("X-NSQ-Content-Type") != "nsq; version=1.0" {
				t.Error("no X-NSQ-Content-Type")
			}
		})
	}
	rec := httptest.NewRecorder()
	httpapi.RespondError(rec, httpapi.NewError(413, `MSG_"TOO"_BIG`))
	if rec.Code != 413 || rec.Body.String() != `{"message":"MSG_\"TOO\"_BIG"}` {
		t.Errorf("RespondError: got %d %q", rec.Code, rec.Body.String())
	}
}

// TestRouterWriteTimeout checks that a client which never reads its answer does not hold the
// handler beyond the write timeout, and that the timeout starts when the answer is written, so
// a slow handler on a keep-alive connection is not cut short.
func TestRouterWriteTimeout(t *testing.T) {
	const writeTimeout = 200 * time.Millisecond
	sink := newLogSink()
	rt := httpapi.NewRouter(httpapi.Config{Logger: slog.New(sink), WriteTimeout: writeTimeout})
	big := make([]byte, 64<<20) // far more than the socket buffers hold
	rt.Handle("GET", "/big", func(http.ResponseWriter, *http.Request, httprouter.Params) (any, error) {
		return big, nil
	})
	rt.Handle("GET", "/slow", func(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
		select { // simulated work that outlasts the write timeout
		case <-time.After(2 * writeTimeout):
		case <-r.Context().Done():
		}
		return "done", nil
	})
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)

	// The slow handler's answer arrives, twice on one connection.
	client := srv.Client()
	for i := range 2 {
		res, err := client.Get(srv.URL + "/slow")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || string(body) != "done" {
			t.Fatalf("request %d: %q, %v", i, body, err)
		}
	}

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// The request record is logged once the handler has given up writing.
	start := time.Now()
	sink.waitFor(t, "http request", func(a map[string]string) bool { return a["uri"] == "/big" }, 10*time.Second)
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("handler held for %v by a client that does not read", elapsed)
	}
	// The connection was closed under the client: reading finds the start of the answer
	// and then the end.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, bufio.NewReader(conn))
	if n >= int64(len(big)) {
		t.Errorf("read %d bytes: the whole answer was sent after the timeout (%v)", n, err)
	}
}

func TestRouterCustomNotFound(t *testing.T) {
	rt := httpapi.NewRouter(httpapi.Config{NotFound: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	})})
	rt.Handle("GET", "/known", func(http.ResponseWriter, *http.Request, httprouter.Params) (any, error) { return "ok", nil })
	for path, want := range map[string]int{"/unknown": http.StatusTeapot, "/known": http.StatusOK} {
		w := httptest.NewRecorder()
		rt.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code != want {
			t.Errorf("GET %s: %d, want %d", path, w.Code, want)
		}
	}
}
