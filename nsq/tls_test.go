package nsq_test

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/nsq"
	"github.com/ternmq/tern/nsqd"
)

// TestTLSAgainstNSQD runs the Producer and the Consumer over TLS against Tern's nsqd, with
// and without a client certificate, and checks that a client that asks for TLS is not
// served in the clear by an nsqd that offers none.
func TestTLSAgainstNSQD(t *testing.T) {
	ca := testutil.NewCA(t, "tern-test")
	serverCert, serverKey, _ := ca.Issue(t, testutil.CertOptions{})
	_, _, clientCert := ca.Issue(t, testutil.CertOptions{Client: true, Name: "client"})
	for _, tc := range []struct {
		name   string
		policy string
		cert   *tls.Certificate
	}{
		{"server certificate only", "", nil},
		{"client certificate verified", "require-verify", &clientCert},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startNSQD(t, func(o *nsqd.Options) {
				o.TLSCert, o.TLSKey, o.TLSRootCAFile = serverCert, serverKey, ca.File
				o.TLSClientAuthPolicy, o.TLSRequired = tc.policy, "true"
			})
			cfg := nsq.NewConfig()
			cfg.TLS = &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
			if tc.cert != nil {
				cfg.TLS.Certificates = []tls.Certificate{*tc.cert}
			}
			cfg.Snappy = true
			p, err := nsq.NewProducer(s.tcpAddr(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Stop)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := p.Publish(ctx, "sealed", []byte("hello")); err != nil {
				t.Fatal(err)
			}
			got := make(chan string, 1)
			c, err := nsq.NewConsumer("sealed", "ch", nsq.HandlerFunc(func(m *nsq.Message) error {
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
				t.Fatal("nothing delivered over TLS")
			}
			cs, _ := s.d.ChannelStats("sealed", "ch")
			if len(cs.Clients) != 1 || !cs.Clients[0].TLS || !cs.Clients[0].Snappy {
				t.Errorf("the consumer's connection: %+v", cs.Clients)
			}
		})
	}

	t.Run("no TLS offered", func(t *testing.T) {
		s := startNSQD(t, nil)
		cfg := nsq.NewConfig()
		cfg.TLS = &tls.Config{RootCAs: ca.Pool()}
		p, err := nsq.NewProducer(s.tcpAddr(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err = p.Publish(ctx, "t", []byte("must not go in the clear"))
		if err == nil || !errors.Is(err, nsq.ErrNotConnected) {
			t.Errorf("publish to an nsqd without TLS: %v, want a refused connection", err)
		}
		if _, ok := s.d.TopicStats("t"); ok {
			t.Error("the message went in the clear")
		}
	})
}
