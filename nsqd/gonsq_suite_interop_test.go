//go:build interop

package nsqd_test

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/lookupd"
	"github.com/ternmq/tern/lookupd/lookupdtest"
	"github.com/ternmq/tern/nsqd"
	"github.com/ternmq/tern/nsqd/nsqdtest"
)

// TestInteropGoNSQSuiteTLS runs go-nsq's own TLS tests (v1.1.0, from the module proxy)
// against Tern's nsqd, started as go-nsq's test.sh starts NSQ's: its test certificates on
// the default ports. The tests pass against an nsqd without TLS too, in the clear, so their
// debug log must show every IDENTIFY answered with TLSv1:true.
func TestInteropGoNSQSuiteTLS(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:4150", "127.0.0.1:4151", "127.0.0.1:4160", "127.0.0.1:4161"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("go-nsq's tests need %s free (stop make up or make dev): %v", addr, err)
		}
		_ = ln.Close()
	}
	src := goNSQSource(t)
	lookupdtest.Start(t, func(o *lookupd.Options) {
		o.TCPAddress, o.HTTPAddress = "127.0.0.1:4160", "127.0.0.1:4161"
	})
	nsqdtest.Start(t, func(o *nsqd.Options) {
		o.TCPAddress, o.HTTPAddress = "127.0.0.1:4150", "127.0.0.1:4151"
		o.LookupdTCPAddresses = []string{"127.0.0.1:4160"}
		o.TLSCert = filepath.Join(src, "test/server.pem")
		o.TLSKey = filepath.Join(src, "test/server.key")
		o.TLSRootCAFile = filepath.Join(src, "test/ca.pem")
	})

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-v", "-timeout=90s", "-run", "TLS", ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := cmd.CombinedOutput()
	text := string(out)
	if err != nil {
		t.Fatalf("go-nsq's TLS tests failed against Tern's nsqd: %v\n%s", err, text)
	}
	passed := strings.Count(text, "--- PASS: Test")
	upgraded := strings.Count(text, "TLSv1:true")
	if passed == 0 || upgraded < passed || strings.Contains(text, "TLSv1:false") {
		t.Errorf("%d go-nsq TLS tests passed, with %d IDENTIFY answers of TLSv1:true:\n%s", passed, upgraded, text)
	}
	t.Logf("%d go-nsq TLS tests passed over TLS (%d upgrades)", passed, upgraded)
}

// goNSQSource returns a writable copy of go-nsq v1.1.0's source.
func goNSQSource(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "mod", "download", "-json", "github.com/nsqio/go-nsq@v1.1.0").Output()
	if err != nil {
		t.Fatalf("go mod download go-nsq: %v", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download go-nsq: %s", out)
	}
	dst := t.TempDir()
	if err := os.CopyFS(dst, os.DirFS(mod.Dir)); err != nil {
		t.Fatal(err)
	}
	if err := filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chmod(p, 0o755)
	}); err != nil {
		t.Fatal(err)
	}
	return dst
}
