// Command nsqadmin runs Tern's web UI, a drop-in replacement for NSQ 1.3's nsqadmin.
//
// It takes NSQ's flags and NSQ's TOML config keys (--config), resolves them with the
// precedence defaults < config file < flags given on the command line (package cmdline), and
// hands the result to package admin, which does all the work. The daemon runs until SIGINT or
// SIGTERM, then exits 0; bad flags, a bad config file or a failed start exit 1 with a message
// on stderr.
//
// `nsqadmin --hash-password` instead reads a password from one line of stdin, prints its hash
// for --user (name:<hash>) and exits.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ternmq/tern/admin"
	"github.com/ternmq/tern/internal/cmdline"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, so tests can drive it: it returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if wantsHashPassword(args) {
		return hashPassword(os.Stdin, stdout, stderr)
	}
	return cmdline.Binary[admin.Options]{
		Name:              "nsqadmin",
		Spec:              spec(),
		Validate:          (*admin.Options).Validate,
		LogLevel:          func(o *admin.Options) string { return o.LogLevel },
		DeprecationAdvice: func(string) string { return "it has no effect; use --log-level" },
		New: func(o *admin.Options, logger *slog.Logger, reg *prometheus.Registry) (cmdline.Daemon, error) {
			return admin.New(o, logger, reg)
		},
	}.Main(ctx, args, stdout, stderr)
}

// wantsHashPassword reports whether args ask for --hash-password (or -hash-password, or
// =true), before the flags that end at "--".
func wantsHashPassword(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != flagHashPassword {
			continue
		}
		if !hasValue {
			return true
		}
		b, err := strconv.ParseBool(value)
		return err == nil && b
	}
	return false
}

// hashPassword reads one line from in, prints its hash and returns the exit code.
func hashPassword(in io.Reader, stdout, stderr io.Writer) int {
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintf(stderr, "nsqadmin: --hash-password: %v\n", err)
		return 1
	}
	password := strings.TrimRight(line, "\r\n")
	if password == "" {
		fmt.Fprintln(stderr, "nsqadmin: --hash-password: give the password on one line of stdin")
		return 1
	}
	hash, err := admin.HashPassword(password)
	if err != nil {
		fmt.Fprintf(stderr, "nsqadmin: --hash-password: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, hash)
	return 0
}
