package admin

import (
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/testutil"
)

// TestHTTPS serves the admin over HTTPS with a certificate from a test CA, refuses plain
// HTTP, and serves a renewed certificate after Reload (as on SIGHUP) and after the files
// change (the watch).
func TestHTTPS(t *testing.T) {
	ca := testutil.NewCA(t, "admin")
	cert, key, first := ca.Issue(t, testutil.CertOptions{Name: "first"})
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	copyFile(t, cert, certFile)
	copyFile(t, key, keyFile)
	a := startLoneAdmin(t, func(o *Options) { o.TLSCert, o.TLSKey = certFile, keyFile })
	if !a.TLS() {
		t.Fatal("TLS() = false with --tls-cert")
	}
	addr := a.HTTPAddr().String()

	// served is the serial of the certificate a new connection is served.
	served := func() string {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + addr + "/ping")
		if err != nil {
			t.Fatalf("GET https /ping: %v", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.TLS == nil {
			t.Fatalf("GET https /ping: %d", resp.StatusCode)
		}
		if resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Error("no security headers over HTTPS")
		}
		if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=31536000" {
			t.Errorf("Strict-Transport-Security %q over HTTPS", got)
		}
		return resp.TLS.PeerCertificates[0].Subject.CommonName
	}
	if got := served(); got != first.Leaf.Subject.CommonName {
		t.Errorf("served %q, want the first certificate", got)
	}
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/ping"); err == nil {
		_ = resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP is served beside HTTPS")
		}
	}

	// Reload, as on SIGHUP.
	cert2, key2, _ := ca.Issue(t, testutil.CertOptions{Name: "second"})
	copyFile(t, cert2, certFile)
	copyFile(t, key2, keyFile)
	if err := a.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := served(); got != "second" {
		t.Errorf("after Reload served %q, want second", got)
	}

	// The watch, without a signal.
	cert3, key3, _ := ca.Issue(t, testutil.CertOptions{Name: "third"})
	copyFile(t, cert3, certFile)
	copyFile(t, key3, keyFile)
	testutil.Eventually(t, 10*time.Second, func() bool { return served() == "third" }, "the changed files are served")

	// A broken file keeps the certificate in use.
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err == nil {
		t.Error("Reload of a broken certificate succeeded")
	}
	if got := served(); got != "third" {
		t.Errorf("after a failed Reload served %q, want third", got)
	}
}

// TestHTTPSMissingFiles: New fails, naming the files.
func TestHTTPSMissingFiles(t *testing.T) {
	o := NewOptions()
	o.HTTPAddress = "127.0.0.1:0"
	o.NSQDHTTPAddresses = []string{"127.0.0.1:1"}
	o.TLSCert, o.TLSKey = "/nonexistent/cert.pem", "/nonexistent/key.pem"
	a, err := New(o, testutil.Logger(t), nil)
	if err == nil {
		_ = a.listener.Close()
		a.cancel()
		t.Fatal("New succeeded without the certificate files")
	}
	if !strings.Contains(err.Error(), "--tls-cert /nonexistent/cert.pem") {
		t.Errorf("New: %v, want it to name the file", err)
	}
}

// TestReloadWithoutTLS: Reload does nothing for a plain HTTP admin.
func TestReloadWithoutTLS(t *testing.T) {
	a := startLoneAdmin(t, nil)
	if err := a.Reload(); err != nil || a.TLS() {
		t.Errorf("Reload() = %v, TLS() = %v", err, a.TLS())
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
