package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/admin"
	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/internal/version"
)

// loopbackArgs keep a test admin off the well-known port. The lookupd need not exist: the
// admin starts and reports it on its pages.
var loopbackArgs = []string{"--http-address=127.0.0.1:0", "--lookupd-http-address=127.0.0.1:1"}

func TestRun(t *testing.T) {
	badConfig := writeConfig(t, "max_rdy = 1\n")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = busy.Close() })
	with := func(extra ...string) []string { return append(append([]string{}, loopbackArgs...), extra...) }
	testutil.CheckRun(t, run, []testutil.RunCase{
		{Name: "version", Args: []string{"--version"}, Stdout: version.String("nsqadmin") + "\n"},
		{Name: "help", Args: []string{"--help"}, Stdout: "Usage: nsqadmin"},
		{Name: "bad flag", Args: []string{"--http-client-request-timeout=x"}, Code: 1, Stderr: `nsqadmin: invalid value "x" for flag -http-client-request-timeout`},
		{Name: "bad config", Args: []string{"--config=" + badConfig}, Code: 1, Stderr: `unknown key "max_rdy"`},
		{Name: "no cluster", Args: []string{"--http-address=127.0.0.1:0"}, Code: 1, Stderr: "--nsqd-http-address or --lookupd-http-address required"},
		{Name: "graphite refused", Args: with("--graphite-url=http://graphite"), Code: 1, Stderr: "--graphite-url is not supported"},
		{Name: "failed start", Args: []string{"--http-address=" + busy.Addr().String(), "--lookupd-http-address=127.0.0.1:1"}, Code: 1, Stderr: "nsqadmin: failed to start:"},
		{Name: "missing root CA", Args: with("--http-client-tls-root-ca-file=/nonexistent.pem"), Code: 1, Stderr: "--http-client-tls-root-ca-file"},
		{Name: "missing certificate", Args: with("--tls-cert=/nonexistent.pem", "--tls-key=/nonexistent-key.pem"), Code: 1, Stderr: "nsqadmin: failed to start: --tls-cert /nonexistent.pem"},
		{Name: "clean shutdown", Args: with("--log-level=debug"), Stderr: "msg=starting", Cancelled: true},
		{Name: "verbose warns", Args: with("--verbose"), Stderr: "flag=--verbose", Cancelled: true},
	})
}

// httpAddrRE finds the HTTP address in the "nsqadmin started" log record.
var httpAddrRE = regexp.MustCompile(`http_address=(\S+)`)

// TestRunServes runs the admin through run, asks for a page, and stops it by cancelling.
func TestRunServes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := testutil.NewOutput()
	done := make(chan int, 1)
	go func() { done <- run(ctx, loopbackArgs, io.Discard, log) }()
	if !log.WaitFor("nsqadmin started", 10*time.Second) {
		t.Fatalf("no start in the log:\n%s", log.String())
	}
	m := httpAddrRE.FindStringSubmatch(log.String())
	if m == nil {
		t.Fatalf("no http_address in the log:\n%s", log.String())
	}
	resp, err := http.Get("http://" + m[1] + "/")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /: %d", resp.StatusCode)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit code %d after cancel; log:\n%s", code, log.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return within 10s of cancel")
	}
}

// TestBinary builds nsqadmin and runs it the way an operator does: --version, a bad flag,
// and a start followed by SIGTERM, which must end in a clean exit 0.
func TestBinary(t *testing.T) {
	testutil.CheckBinary(t, "nsqadmin", "--http-client-connect-timeout=soon", loopbackArgs)
}

// TestHashPassword: --hash-password prints a hash that admin accepts for --user, and is
// recognised however it is spelt.
func TestHashPassword(t *testing.T) {
	var out, errs strings.Builder
	if code := hashPassword(strings.NewReader("s3cret pass\n"), &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	hash := strings.TrimSpace(out.String())
	if !strings.HasPrefix(hash, "pbkdf2-sha256$600000$") || strings.Contains(hash, "s3cret") {
		t.Fatalf("hash %q", hash)
	}
	o := admin.NewOptions()
	o.NSQDHTTPAddresses = []string{"127.0.0.1:4151"}
	o.ACLHTTPHeader = ""
	o.Users = []string{"alice:" + hash}
	if err := o.Validate(); err != nil {
		t.Errorf("the printed hash is refused: %v", err)
	}
	out.Reset()
	if code := hashPassword(strings.NewReader(""), &out, &errs); code != 1 || out.Len() != 0 {
		t.Errorf("empty stdin: exit %d, printed %q", code, out.String())
	}
	for args, want := range map[string]bool{
		"--hash-password": true, "-hash-password": true, "--hash-password=true": true,
		"--hash-password=false": false, "--user=x --hash-password": true, "-- --hash-password": false, "--http-address=x": false,
	} {
		if got := wantsHashPassword(strings.Fields(args)); got != want {
			t.Errorf("wantsHashPassword(%q) = %v", args, got)
		}
	}
}
