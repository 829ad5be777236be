package nsq_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/nsq"
	"github.com/ternmq/tern/nsqd"
)

// TestAuthAgainstNSQD runs the Producer and the Consumer with an AuthSecret against Tern's
// nsqd and an auth server speaking NSQ's protocol, and checks that a refused secret is an
// *Error with NSQ's code.
func TestAuthAgainstNSQD(t *testing.T) {
	authd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("secret") != "s3cret" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		_, _ = w.Write([]byte(`{"ttl":3600,"identity":"app","authorizations":[` +
			`{"topic":"events","channels":[".*"],"permissions":["publish","subscribe"]}]}`))
	}))
	t.Cleanup(authd.Close)
	s := startNSQD(t, func(o *nsqd.Options) {
		o.AuthHTTPAddresses = []string{strings.TrimPrefix(authd.URL, "http://")}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	cfg := nsq.NewConfig()
	cfg.AuthSecret = "s3cret"
	p, err := nsq.NewProducer(s.tcpAddr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	if err := p.Publish(ctx, "events", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	var nerr *nsq.Error
	if err := p.Publish(ctx, "secrets", []byte("x")); !errors.As(err, &nerr) || nerr.Code != nsq.ErrCodeUnauthorized {
		t.Errorf("a publish the grants do not allow: %v", err)
	}

	got := make(chan string, 1)
	c, err := nsq.NewConsumer("events", "ch", nsq.HandlerFunc(func(m *nsq.Message) error {
		got <- string(m.Body)
		return nil
	}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	if err := c.ConnectToNSQD(ctx, s.tcpAddr()); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if b != "hello" {
			t.Errorf("got %q", b)
		}
	case <-ctx.Done():
		t.Fatal("nothing delivered")
	}

	wrong := nsq.NewConfig()
	wrong.AuthSecret = "guess"
	c2, err := nsq.NewConsumer("events", "ch", nsq.HandlerFunc(func(*nsq.Message) error { return nil }), wrong)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c2.Stop(context.Background()) })
	if err := c2.ConnectToNSQD(ctx, s.tcpAddr()); !errors.As(err, &nerr) || nerr.Code != nsq.ErrCodeAuthFailed {
		t.Errorf("a wrong secret: %v", err)
	}
}
