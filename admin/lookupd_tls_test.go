package admin

import (
	"net"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/lookupd"
	"github.com/ternmq/tern/lookupd/lookupdtest"
	"github.com/ternmq/tern/nsqd"
	"github.com/ternmq/tern/nsqd/nsqdtest"
)

// TestLookupdOverTLS: the admin finds the cluster through an https:// lookupd that requires
// a verified client certificate, presenting --http-client-tls-cert.
func TestLookupdOverTLS(t *testing.T) {
	ca := testutil.NewCA(t, "tern-test")
	lcert, lkey, _ := ca.Issue(t, testutil.CertOptions{})
	l := lookupdtest.Start(t, func(o *lookupd.Options) {
		o.TLSCert, o.TLSKey, o.TLSRootCAFile, o.TLSClientAuthPolicy = lcert, lkey, ca.File, "require-verify"
	})
	ncert, nkey, _ := ca.Issue(t, testutil.CertOptions{Both: true, Name: "nsqd"})
	d := nsqdtest.Start(t, func(o *nsqd.Options) {
		o.TLSCert, o.TLSKey, o.TLSRootCAFile = ncert, nkey, ca.File
		o.LookupdTCPAddresses, o.LookupdTLS = []string{l.TCPAddr().String()}, true
	})
	acert, akey, _ := ca.Issue(t, testutil.CertOptions{Client: true, Name: "nsqadmin"})
	a := startAdmin(t, func(o *Options) {
		o.NSQLookupdHTTPAddresses = []string{"https://" + l.HTTPAddr().String()}
		o.HTTPClientTLSRootCAFile, o.HTTPClientTLSCert, o.HTTPClientTLSKey = ca.File, acert, akey
	})
	var nodes struct {
		Nodes []struct {
			HTTPPort int `json:"http_port"`
		} `json:"nodes"`
		Message string `json:"message"`
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		a.cache.invalidate()
		code := getJSON(t, adminURL(a, "/api/nodes"), &nodes)
		return code == 200 && len(nodes.Nodes) == 1 && nodes.Message == "" &&
			nodes.Nodes[0].HTTPPort == d.HTTPAddr().(*net.TCPAddr).Port
	}, "the admin lists the node through the TLS lookupd: %+v", &nodes)
}
