package lookupd_test

import (
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/lookupd"
	"github.com/ternmq/tern/lookupd/lookupdtest"
	"github.com/ternmq/tern/nsqd"
	"github.com/ternmq/tern/nsqd/nsqdtest"
)

// TestTLS: a lookupd with a certificate serves TLS only, on TCP and HTTP. An nsqd with
// --lookupd-tls registers through it, presenting its certificate; one in plain text cannot;
// an HTTP client needs TLS and, with require-verify, a certificate of the root CA.
func TestTLS(t *testing.T) {
	ca := testutil.NewCA(t, "tern-test")
	lcert, lkey, _ := ca.Issue(t, testutil.CertOptions{})
	l := lookupdtest.Start(t, func(o *lookupd.Options) {
		o.TLSCert, o.TLSKey, o.TLSRootCAFile, o.TLSClientAuthPolicy = lcert, lkey, ca.File, "require-verify"
	})
	ncert, nkey, _ := ca.Issue(t, testutil.CertOptions{Both: true, Name: "nsqd-1"})
	secure := nsqdtest.Start(t, func(o *nsqd.Options) {
		o.LookupdTCPAddresses = []string{l.TCPAddr().String()}
		o.LookupdTLS = true
		o.TLSCert, o.TLSKey, o.TLSRootCAFile = ncert, nkey, ca.File
	})
	plain := nsqdtest.Start(t, func(o *nsqd.Options) {
		o.NodeID = 2
		o.LookupdTCPAddresses = []string{l.TCPAddr().String()}
	})
	_, _, clientCert := ca.Issue(t, testutil.CertOptions{Client: true, Name: "admin"})
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: ca.Pool(), Certificates: []tls.Certificate{clientCert},
	}}}
	t.Cleanup(client.CloseIdleConnections)
	nodes := func() []int {
		resp, err := client.Get("https://" + l.HTTPAddr().String() + "/nodes")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v struct {
			Producers []struct {
				TCPPort int `json:"tcp_port"`
			} `json:"producers"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			t.Fatal(err)
		}
		var ports []int
		for _, p := range v.Producers {
			ports = append(ports, p.TCPPort)
		}
		return ports
	}
	securePort := secure.TCPAddr().(*net.TCPAddr).Port
	testutil.Eventually(t, 10*time.Second, func() bool {
		p := nodes()
		return len(p) == 1 && p[0] == securePort
	}, "only the nsqd with --lookupd-tls is registered (not %v): %v", plain.TCPAddr(), nodes)

	if resp, err := http.Get("http://" + l.HTTPAddr().String() + "/ping"); err == nil {
		_ = resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP was served")
		}
	}
	noCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	t.Cleanup(noCert.CloseIdleConnections)
	if resp, err := noCert.Get("https://" + l.HTTPAddr().String() + "/ping"); err == nil {
		_ = resp.Body.Close()
		t.Error("HTTPS without a client certificate was served under require-verify")
	}
}
