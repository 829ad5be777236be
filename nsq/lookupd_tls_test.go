package nsq_test

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/lookupd"
	"github.com/ternmq/tern/lookupd/lookupdtest"
	"github.com/ternmq/tern/nsq"
	"github.com/ternmq/tern/nsqd"
)

// TestConsumerFindsNSQDThroughTLSLookupd: a Consumer with Config.TLS queries an https://
// lookupd that requires a verified client certificate, and consumes over TLS from the nsqd
// registered through it.
func TestConsumerFindsNSQDThroughTLSLookupd(t *testing.T) {
	ca := testutil.NewCA(t, "tern-test")
	lcert, lkey, _ := ca.Issue(t, testutil.CertOptions{})
	l := lookupdtest.Start(t, func(o *lookupd.Options) {
		o.TLSCert, o.TLSKey, o.TLSRootCAFile, o.TLSClientAuthPolicy = lcert, lkey, ca.File, "require-verify"
	})
	ncert, nkey, _ := ca.Issue(t, testutil.CertOptions{Both: true, Name: "nsqd"})
	s := startNSQD(t, func(o *nsqd.Options) {
		o.TLSCert, o.TLSKey, o.TLSRootCAFile = ncert, nkey, ca.File
		o.LookupdTCPAddresses, o.LookupdTLS = []string{l.TCPAddr().String()}, true
	})
	_, _, clientCert := ca.Issue(t, testutil.CertOptions{Client: true, Name: "consumer"})
	cfg := nsq.NewConfig()
	cfg.TLS = &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{clientCert}, MinVersion: tls.VersionTLS12}
	cfg.LookupdPollInterval = 50 * time.Millisecond

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := nsq.NewProducer(s.tcpAddr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	if err := p.Publish(ctx, "found", []byte("through TLS")); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	c, err := nsq.NewConsumer("found", "ch", nsq.HandlerFunc(func(m *nsq.Message) error {
		got <- string(m.Body)
		return nil
	}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	if err := c.ConnectToNSQLookupd("https://" + l.HTTPAddr().String()); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if b != "through TLS" {
			t.Errorf("got %q", b)
		}
	case <-ctx.Done():
		t.Fatal("the consumer found nothing through the TLS lookupd")
	}
}
