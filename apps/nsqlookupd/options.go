package main

import (
	"github.com/ternmq/tern/internal/cmdline"
	"github.com/ternmq/tern/lookupd"
)

// The command line and the config file are both derived from the tags of lookupd.Options by
// package cmdline. This file holds what is particular to nsqlookupd: the help texts and the
// deprecated flag.

// flagVerbose is NSQ's deprecated --verbose, accepted and ignored.
const flagVerbose = "verbose"

// flagUsage returns the help text of every flag derived from lookupd.Options. It is the one
// thing the struct tags do not carry; TestEveryOptionIsSettable keeps it in step with the
// struct.
func flagUsage() map[string]string {
	return map[string]string{
		"log-level":  "log verbosity: debug, info, warn, error or fatal",
		"log-prefix": "log message prefix (accepted for NSQ compatibility; ignored by structured logs)",

		"tcp-address":       "<addr>:<port> to listen on for TCP clients",
		"http-address":      "<addr>:<port> to listen on for HTTP clients",
		"broadcast-address": "address of this lookupd node; the default is the OS hostname",

		"max-connections":        "max connections, TCP and HTTP together, before new ones are refused (E_TOO_MANY_CONNECTIONS, or HTTP 503 TOO_MANY_CONNECTIONS); the default is the open-file limit less a reserve (a quarter, at least 256); 0 is unlimited (Tern extension)",
		"max-connections-per-ip": "max connections from one IP address, TCP and HTTP together, before new ones are refused; 0 is unlimited (Tern extension)",

		"inactive-producer-timeout": "duration of time a producer will remain in the active list since its last ping",
		"tombstone-lifetime":        "duration of time a producer will remain tombstoned if registration remains",

		"tls-cert":               "path to a certificate file: TCP and HTTP then serve TLS only (Tern extension)",
		"tls-key":                "path to the certificate's key file (Tern extension)",
		"tls-root-ca-file":       "path to the authorities that sign client certificates (Tern extension)",
		"tls-client-auth-policy": "client certificate policy: require or require-verify (Tern extension)",
		"tls-min-version":        "minimum TLS version: tls1.0, tls1.1, tls1.2 or tls1.3 (Tern extension)",
	}
}

// spec returns nsqlookupd's command line. It is built on each call rather than kept in a
// package variable, so that nothing can change it for later callers.
func spec() *cmdline.Spec[lookupd.Options] {
	return &cmdline.Spec[lookupd.Options]{
		Name:          "nsqlookupd",
		Defaults:      lookupd.NewOptions,
		Usage:         flagUsage(),
		Normalizers:   map[string]func(string) (string, error){"log-level": cmdline.Lowercase, "tls-min-version": cmdline.Lowercase},
		NoOps:         map[string]string{flagVerbose: "[deprecated] has no effect, use --log-level"},
		ExampleConfig: "contrib/nsqlookupd.toml.example",
	}
}
