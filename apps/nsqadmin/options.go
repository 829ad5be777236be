package main

import (
	"github.com/ternmq/tern/admin"
	"github.com/ternmq/tern/internal/cmdline"
)

// The command line and the config file are both derived from the tags of admin.Options by
// package cmdline. This file holds what is particular to nsqadmin: the help texts and the
// deprecated flag.

// flagVerbose is NSQ's deprecated --verbose, accepted and ignored.
const flagVerbose = "verbose"

// flagHashPassword makes nsqadmin hash a password for --user instead of running (run checks
// for it before the options are parsed; it is declared in the Spec for --help).
const flagHashPassword = "hash-password"

// flagUsage returns the help text of every flag derived from admin.Options. It is the one
// thing the struct tags do not carry; TestEveryOptionIsSettable keeps it in step with the
// struct.
func flagUsage() map[string]string {
	const graphite = " (NSQ's Graphite charts; refused unless left at the default, since Tern's admin draws its own)"
	return map[string]string{
		"log-level":  "log verbosity: debug, info, warn, error or fatal",
		"log-prefix": "log message prefix (accepted for NSQ compatibility; ignored by structured logs)",

		"http-address":   "<addr>:<port> to listen on for HTTP clients",
		"base-path":      "URL base path, for an admin behind a proxy that forwards one path of its site",
		"tls-cert":       "PEM certificate to serve HTTPS with instead of HTTP on --http-address; reloaded when it changes and on SIGHUP (Tern only)",
		"tls-key":        "PEM private key of --tls-cert (Tern only)",
		"dev-static-dir": "serve the CSS and JavaScript from this directory instead of the built-in copies",

		"max-connections":        "max HTTP connections before new ones are refused (503 TOO_MANY_CONNECTIONS); the default is the open-file limit less a reserve for the admin's own requests (a quarter, at least 256); 0 is unlimited (Tern only)",
		"max-connections-per-ip": "max HTTP connections from one IP address before new ones are refused; 0 is unlimited (Tern only)",

		"lookupd-http-address": "lookupd HTTP address to discover the cluster through (may be given multiple times)",
		"nsqd-http-address":    "nsqd HTTP address, for a cluster without lookupds (may be given multiple times)",

		"http-client-connect-timeout":          "timeout for connecting to an nsqd or a lookupd",
		"http-client-request-timeout":          "timeout for one request to an nsqd or a lookupd; a node slower than this is shown as not answering",
		"http-client-tls-insecure-skip-verify": "do not verify the certificates of nsqd and lookupd over HTTPS",
		"http-client-tls-root-ca-file":         "PEM file of the certificate authorities to trust over HTTPS",
		"http-client-tls-cert":                 "PEM client certificate to present over HTTPS",
		"http-client-tls-key":                  "PEM private key of --http-client-tls-cert",

		"allow-config-from-cidr":     "the network allowed to read and change options through /config (empty: everyone); with --admin-user only those users may, and secret-bearing options are never served",
		"notification-http-endpoint": "HTTP endpoint to POST a JSON notification of every action taken to",
		"acl-http-header":            "HTTP header naming the user, set by an authenticating proxy",
		"admin-user":                 "user (by --acl-http-header, or the logged-in --user) allowed to change the cluster; with none given everyone may (may be given multiple times)",
		"user":                       "name:hash of a user who may log in, the hash from nsqadmin --hash-password; with any, every page and API call needs a login (needs --acl-http-header=\"\"; may be given multiple times; Tern only)",
		"secure-cookies":             "mark the login cookie Secure (HTTPS only) when the admin serves plain HTTP behind an HTTPS proxy; --tls-cert does it anyway (Tern only)",
		"session-key-file":           "file of 32 or more random bytes that login sessions are signed with; without it sessions end when the admin restarts, and a new key logs everyone out (Tern only)",

		"sample-interval": "how often to sample the cluster for the charts and rates (the charts keep an hour)",

		"graphite-url":          "graphite HTTP address" + graphite,
		"proxy-graphite":        "proxy HTTP requests to graphite" + graphite,
		"statsd-prefix":         "prefix of the statsd series in graphite" + graphite,
		"statsd-counter-format": "format of the statsd counter series in graphite" + graphite,
		"statsd-gauge-format":   "format of the statsd gauge series in graphite" + graphite,
		"statsd-interval":       "time interval nsqd pushes to statsd" + graphite,
	}
}

// spec returns nsqadmin's command line. It is built on each call rather than kept in a
// package variable, so that nothing can change it for later callers.
func spec() *cmdline.Spec[admin.Options] {
	return &cmdline.Spec[admin.Options]{
		Name:        "nsqadmin",
		Defaults:    admin.NewOptions,
		Usage:       flagUsage(),
		Normalizers: map[string]func(string) (string, error){"log-level": cmdline.Lowercase},
		NoOps: map[string]string{
			flagVerbose:      "[deprecated] has no effect, use --log-level",
			flagHashPassword: "read a password from one line of stdin, print its hash for --user name:<hash>, and exit",
		},
		ExampleConfig: "contrib/nsqadmin.toml.example",
	}
}
