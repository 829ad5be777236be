package tlsfiles

import (
	"context"
	"crypto/x509"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/testutil"
)

// servedName is the common name of the certificate f serves now.
func servedName(t *testing.T, f *Files) string {
	t.Helper()
	leaf, err := x509.ParseCertificate(f.current.Load().Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.Subject.CommonName
}

// TestWatchSeesContentNotTimes: a replaced certificate is picked up even when the copy keeps
// the old file's modification time, and a failed version is kept out until it is fixed.
func TestWatchSeesContentNotTimes(t *testing.T) {
	ca := testutil.NewCA(t, "tern-test")
	certFile, keyFile, _ := ca.Issue(t, testutil.CertOptions{Name: "first"})
	f, err := Load(Config{CertFile: certFile, KeyFile: keyFile}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { f.Watch(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	fi, err := os.Stat(certFile)
	if err != nil {
		t.Fatal(err)
	}
	copyKeepingTime := func(name string) {
		c, k, _ := ca.Issue(t, testutil.CertOptions{Name: name})
		for _, p := range [][2]string{{c, certFile}, {k, keyFile}} {
			b, err := os.ReadFile(p[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p[1], b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p[1], fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
		}
	}
	copyKeepingTime("again")
	testutil.Eventually(t, 10*time.Second, func() bool { return servedName(t, f) == "again" },
		"a copy with the old modification time was not picked up")

	if err := os.WriteFile(certFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.Reload(); err == nil {
		t.Fatal("garbage loaded")
	}
	if got := servedName(t, f); got != "again" {
		t.Errorf("after a failed reload, serving %q", got)
	}
}
