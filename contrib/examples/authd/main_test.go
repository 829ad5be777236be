package main

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gonsq "github.com/nsqio/go-nsq"

	"github.com/ternmq/tern/nsqd"
	"github.com/ternmq/tern/nsqd/nsqdtest"
)

// TestAuthdWithNSQD runs authd's handler as nsqd's auth server and go-nsq against that nsqd:
// a granted secret publishes, a wrong one is refused.
func TestAuthdWithNSQD(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.json")
	if err := os.WriteFile(path, []byte(`{"s3cret": {"ttl": 60, "identity": "billing",
		"authorizations": [{"topic": "orders", "channels": [".*"], "permissions": ["publish"]}]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := load(path)
	if err != nil {
		t.Fatal(err)
	}
	var cur atomic.Pointer[secrets]
	cur.Store(&s)
	srv := httptest.NewServer(handler(&cur, slog.New(slog.NewTextHandler(io.Discard, nil))))
	t.Cleanup(srv.Close)
	d := nsqdtest.Start(t, func(o *nsqd.Options) {
		o.AuthHTTPAddresses = []string{strings.TrimPrefix(srv.URL, "http://")}
	})

	publish := func(secret string) error {
		cfg := gonsq.NewConfig()
		cfg.AuthSecret = secret
		cfg.DialTimeout = 5 * time.Second
		p, err := gonsq.NewProducer(d.TCPAddr().String(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		p.SetLogger(nil, gonsq.LogLevelError)
		defer p.Stop()
		return p.Publish("orders", []byte("paid"))
	}
	if err := publish("s3cret"); err != nil {
		t.Errorf("a granted secret: %v", err)
	}
	if err := publish("guess"); err == nil || !strings.Contains(err.Error(), "E_AUTH_FAILED") {
		t.Errorf("a wrong secret: %v", err)
	}
	if ts, _ := d.TopicStats("orders"); ts.MessageCount != 1 {
		t.Errorf("%d messages published, want 1", ts.MessageCount)
	}
}

func TestLoadRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"not json": `{`,
		"no ttl":   `{"x": {"identity": "a", "authorizations": []}}`,
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := load(path); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}
