package main

import (
	"context"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/internal/version"
)

// loopbackArgs keep a test daemon off the well-known ports and out of the working directory.
func loopbackArgs(t *testing.T) []string {
	t.Helper()
	return []string{
		"--tcp-address=127.0.0.1:0",
		"--http-address=127.0.0.1:0",
		"--https-address=127.0.0.1:0",
		"--broadcast-address=127.0.0.1",
		"--data-path=" + t.TempDir(),
	}
}

func TestRun(t *testing.T) {
	badConfig := writeConfig(t, "max_rdy = 1\n")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = busy.Close() })
	testutil.CheckRun(t, run, []testutil.RunCase{
		{Name: "version", Args: []string{"--version"}, Code: 0, Stdout: version.String("nsqd") + "\n"},
		{Name: "version ignores a broken config", Args: []string{"--config=" + badConfig, "--version"}, Code: 0, Stdout: version.String("nsqd") + "\n"},
		{Name: "help", Args: []string{"--help"}, Code: 0, Stdout: "Usage: nsqd"},
		{Name: "bad flag", Args: []string{"--max-rdy-count=x"}, Code: 1, Stderr: "nsqd: invalid value \"x\" for flag -max-rdy-count"},
		{Name: "unknown flag", Args: []string{"--frobnicate"}, Code: 1, Stderr: "--help for usage"},
		{Name: "bad config", Args: []string{"--config=" + badConfig}, Code: 1, Stderr: `unknown key "max_rdy"`},
		{Name: "invalid options", Args: []string{"--max-deflate-level=12", "--node-id=4096"}, Code: 1, Stderr: "--max-deflate-level"},
		// Until TLS and AUTH are implemented, asking for them must stop start-up, naming the
		// option, rather than serve in the clear or let unauthenticated clients in.
		{Name: "tls-required without a certificate", Args: append(loopbackArgs(t), "--tls-required=true"), Code: 1, Stderr: "cannot require TLS client connections without TLS key and cert"},
		{Name: "tls-required tcp-https without a certificate", Args: append(loopbackArgs(t), "--tls-required=tcp-https"), Code: 1, Stderr: "cannot require TLS client connections without TLS key and cert"},
		{Name: "tls-cert without a key", Args: append(loopbackArgs(t), "--tls-cert=c.pem"), Code: 1, Stderr: "--tls-cert and --tls-key must be given together"},
		{Name: "tls files missing", Args: append(loopbackArgs(t), "--tls-cert=/nonexistent/c.pem", "--tls-key=/nonexistent/k.pem"), Code: 1, Stderr: "failed to start: --tls-cert /nonexistent/c.pem and --tls-key /nonexistent/k.pem: open /nonexistent/c.pem: no such file or directory"},
		{Name: "tls-root-ca-file without a certificate", Args: append(loopbackArgs(t), "--tls-root-ca-file=ca.pem"), Code: 1, Stderr: "--tls-root-ca-file needs --tls-cert and --tls-key"},
		{Name: "tls-client-auth-policy without a certificate", Args: append(loopbackArgs(t), "--tls-client-auth-policy=require"), Code: 1, Stderr: "cannot require TLS client connections without TLS key and cert"},
		{Name: "bad tls-client-auth-policy", Args: append(loopbackArgs(t), "--tls-client-auth-policy=maybe"), Code: 1, Stderr: "--tls-client-auth-policy must be require or require-verify"},
		{Name: "http-api-auth without auth servers", Args: append(loopbackArgs(t), "--http-api-auth"), Code: 1, Stderr: "--http-api-auth needs --auth-http-address"},
		{Name: "auth-http-address with a bad port", Args: append(loopbackArgs(t), "--auth-http-address=auth.example:80x"), Code: 1, Stderr: `--auth-http-address "auth.example:80x"`},
		{Name: "bad auth-http-address", Args: append(loopbackArgs(t), "--auth-http-address=host:1?x=y"), Code: 1, Stderr: "want host:port or an http(s):// URL without a query"},
		{Name: "tls-required false starts", Args: append(loopbackArgs(t), "--tls-required=false", "--tls-min-version=tls1.2"), Code: 0, Stderr: "msg=starting", Cancelled: true},
		{Name: "failed start", Args: append(loopbackArgs(t), "--tcp-address="+busy.Addr().String()), Code: 1, Stderr: "nsqd: failed to start:"},
		{Name: "clean shutdown", Args: append(loopbackArgs(t), "--log-level=debug"), Code: 0, Stderr: "msg=starting", Cancelled: true},
		{Name: "deprecated flags warn", Args: append(loopbackArgs(t), "--verbose", "--worker-id=3"), Code: 0, Stderr: "flag=--worker-id", Cancelled: true},
		{Name: "log level error hides info", Args: append(loopbackArgs(t), "--log-level=error"), Code: 0, NotStderr: "msg=starting", Cancelled: true},
	})
}

// TestBinary builds nsqd and runs it the way an operator does: --version, a bad flag, and a
// start followed by SIGTERM, which must end in a clean exit 0.
func TestBinary(t *testing.T) {
	testutil.CheckBinary(t, "nsqd", "--tls-required=sometimes", loopbackArgs(t))
}

// TestRunReloadsTLSOnSIGHUP: with TLS configured, SIGHUP reloads the certificate files
// rather than ending the process.
func TestRunReloadsTLSOnSIGHUP(t *testing.T) {
	ca := testutil.NewCA(t, "tern-test")
	cert, key, _ := ca.Issue(t, testutil.CertOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := testutil.NewOutput()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append(loopbackArgs(t), "--tls-cert="+cert, "--tls-key="+key), io.Discard, log)
	}()
	if !log.WaitFor("nsqd started", 10*time.Second) {
		t.Fatalf("no start in the log:\n%s", log.String())
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !log.WaitFor("TLS files reloaded", 10*time.Second) {
		t.Errorf("no reload in the log after SIGHUP:\n%s", log.String())
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit %d after the reload and a stop", code)
	}
}
