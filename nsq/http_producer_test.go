package nsq_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ternmq/tern/nsq"
	"github.com/ternmq/tern/nsqd"
)

func TestHTTPProducer(t *testing.T) {
	t.Parallel()
	s := startNSQD(t, func(o *nsqd.Options) { o.MaxMsgSize = 100 })
	h, err := nsq.NewHTTPProducer(s.httpAddr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxTimeout(t, 5*time.Second)
	cases := []struct {
		name    string
		topic   string
		msgs    uint64
		publish func(topic string) error
	}{
		{"Publish", "h.pub", 1, func(topic string) error { return h.Publish(ctx, topic, []byte("hello")) }},
		{"DeferredPublish", "h.dpub", 1, func(topic string) error {
			return h.DeferredPublish(ctx, topic, 20*time.Millisecond, []byte("later"))
		}},
		{"MultiPublish with newlines", "h.mpub", 3, func(topic string) error {
			return h.MultiPublish(ctx, topic, [][]byte{[]byte("a\nb"), []byte("c"), []byte("\n")})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.publish(tc.topic); err != nil {
				t.Fatal(err)
			}
			waitCount(t, s, tc.topic, tc.msgs)
		})
	}

	t.Run("server error", func(t *testing.T) {
		err := h.Publish(ctx, "h.big", make([]byte, 200))
		var he *nsq.HTTPError
		if !errors.As(err, &he) || he.StatusCode != http.StatusRequestEntityTooLarge || he.Message != "MSG_TOO_BIG" {
			t.Fatalf("err = %v, want HTTP 413 MSG_TOO_BIG", err)
		}
	})
	t.Run("local error", func(t *testing.T) {
		err := h.Publish(ctx, "bad topic", []byte("x"))
		var e *nsq.Error
		if !errors.As(err, &e) || e.Code != nsq.ErrCodeBadTopic {
			t.Fatalf("err = %v, want %s", err, nsq.ErrCodeBadTopic)
		}
	})
}

func TestHTTPErrorDecoding(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		status      int
		body        string
		wantMessage string
	}{
		{"nsq 1.x", 400, `{"message":"INVALID_TOPIC"}`, "INVALID_TOPIC"},
		{"nsq 0.x", 500, `{"status_code":500,"status_txt":"INTERNAL_ERROR","data":null}`, "INTERNAL_ERROR"},
		{"proxy text", 502, "bad gateway\n", "bad gateway"},
		{"empty", 503, "", "Service Unavailable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/prefix/pub" || r.URL.Query().Get("topic") != "t" {
					t.Errorf("request %s, want /prefix/pub?topic=t", r.URL)
				}
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			t.Cleanup(srv.Close)
			h, err := nsq.NewHTTPProducer(srv.URL+"/prefix/", srv.Client())
			if err != nil {
				t.Fatal(err)
			}
			err = h.Publish(ctxTimeout(t, 5*time.Second), "t", []byte("x"))
			var he *nsq.HTTPError
			if !errors.As(err, &he) || he.StatusCode != tc.status || he.Message != tc.wantMessage {
				t.Fatalf("err = %#v, want status %d message %q", err, tc.status, tc.wantMessage)
			}
		})
	}
}

func TestNewHTTPProducerRejectsBadURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "127.0.0.1:4151", "ftp://host", "http://", "http://[::1"} {
		if _, err := nsq.NewHTTPProducer(u, nil); err == nil {
			t.Errorf("NewHTTPProducer(%q) succeeded", u)
		}
	}
}
