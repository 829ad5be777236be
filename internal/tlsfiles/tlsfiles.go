// Package tlsfiles serves a daemon's TLS configuration from its certificate, key and root CA
// files, and reloads them when they change or on demand (SIGHUP), without dropping a
// connection: every handshake asks for the configuration in use, so a renewed certificate
// is served to new connections at once while established ones keep theirs. A reload that
// fails keeps the configuration in use and says why. nsqd and nsqlookupd use it.
package tlsfiles

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// checkInterval is how often the files are checked for a change.
const checkInterval = time.Second

// retryChecks is how many checks pass before files that failed to load are tried again.
const retryChecks = 30

// Config names the files and the policy, as the daemons' --tls-* options do.
type Config struct {
	CertFile, KeyFile string
	// RootCAFile, when set, holds the authorities client certificates are verified against.
	RootCAFile string
	// ClientAuthPolicy is "" (no client certificate asked for), "require" (any) or
	// "require-verify" (one the root CA signed), NSQ's --tls-client-auth-policy.
	ClientAuthPolicy string
	// MinVersion is "tls1.0" (the default), "tls1.1", "tls1.2" or "tls1.3".
	MinVersion string
}

// Check reports what is wrong with c as the daemons' --tls-* options name it: a certificate
// without its key, an unknown client auth policy or TLS version.
func (c Config) Check() []error {
	var errs []error
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key must be given together"))
	}
	switch c.ClientAuthPolicy {
	case "", "require", "require-verify":
	default:
		errs = append(errs, fmt.Errorf("--tls-client-auth-policy must be require or require-verify, got %q", c.ClientAuthPolicy))
	}
	switch c.MinVersion {
	case "", "tls1.0", "tls1.1", "tls1.2", "tls1.3":
	default:
		errs = append(errs, fmt.Errorf("--tls-min-version must be tls1.0, tls1.1, tls1.2 or tls1.3, got %q", c.MinVersion))
	}
	return errs
}

// Files is a TLS configuration loaded from files. Its methods are safe for concurrent use.
type Files struct {
	certFile, keyFile, caFile string
	clientAuth                tls.ClientAuthType
	minVersion                uint16
	logger                    *slog.Logger

	current atomic.Pointer[tls.Config]
	// server is what listeners and upgrades are given: it hands each handshake current.
	server *tls.Config

	mu    sync.Mutex // serialises reloads
	stamp string     // size and mtime of the files current was built from
}

// Load loads the files of c, or returns nil when c names no certificate.
func Load(c Config, logger *slog.Logger) (*Files, error) {
	if c.CertFile == "" && c.KeyFile == "" {
		return nil, nil
	}
	f := &Files{
		certFile: c.CertFile, keyFile: c.KeyFile, caFile: c.RootCAFile,
		minVersion: Version(c.MinVersion), logger: logger,
	}
	switch c.ClientAuthPolicy {
	case "require":
		f.clientAuth = tls.RequireAnyClientCert
	case "require-verify":
		f.clientAuth = tls.RequireAndVerifyClientCert
	default:
		f.clientAuth = tls.NoClientCert // NSQ's default, a root CA file notwithstanding
	}
	f.server = &tls.Config{
		MinVersion: f.minVersion,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return f.current.Load(), nil
		},
	}
	if err := f.reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// RootCAs reads a PEM file of authorities, for a client's RootCAs; "" means the system's.
func RootCAs(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", file)
	}
	return pool, nil
}

// Version maps --tls-min-version's names to Go's constants; anything else is TLS 1.0.
func Version(name string) uint16 {
	switch name {
	case "tls1.1":
		return tls.VersionTLS11
	case "tls1.2":
		return tls.VersionTLS12
	case "tls1.3":
		return tls.VersionTLS13
	}
	return tls.VersionTLS10
}

// reload rebuilds the configuration from the files and puts it in use.
func (f *Files) reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	stamp := f.fileStamp()
	cert, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		return fmt.Errorf("--tls-cert %s and --tls-key %s: %w", f.certFile, f.keyFile, err)
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   f.clientAuth,
		MinVersion:   f.minVersion,
	}
	if f.caFile != "" {
		pool, err := RootCAs(f.caFile)
		if err != nil {
			return fmt.Errorf("--tls-root-ca-file: %w", err)
		}
		cfg.ClientCAs = pool
	}
	f.current.Store(cfg)
	f.stamp = stamp
	return nil
}

// fileStamp identifies the files' contents; a change means a reload.
//
// The stamp is a hash of the files' contents, not their sizes and times: a renewed
// certificate is often the same size, and a copy may keep the old time (cp -p, rsync -t).
// Certificate files are a few KB; reading them once a second costs nothing.
func (f *Files) fileStamp() string {
	h := sha256.New()
	for _, name := range []string{f.certFile, f.keyFile, f.caFile} {
		if name == "" {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			fmt.Fprintf(h, "unreadable %q;", err)
			continue
		}
		fmt.Fprintf(h, "%d;", len(b))
		h.Write(b)
	}
	return string(h.Sum(nil))
}

// Server is the configuration for listeners and handshakes: it hands each handshake the
// configuration in use.
func (f *Files) Server() *tls.Config { return f.server }

// ClientCertificate presents the certificate in use as a client certificate, for a daemon
// that dials others with the identity it serves with (nsqd to nsqlookupd). It is a
// tls.Config.GetClientCertificate.
func (f *Files) ClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return &f.current.Load().Certificates[0], nil
}

// Reload reloads the files now, as on SIGHUP, logging the outcome.
func (f *Files) Reload() error {
	err := f.reload()
	if err != nil {
		f.logger.Error("TLS files not reloaded; the previous ones stay in use", "error", err)
		return err
	}
	f.logger.Info("TLS files reloaded", "cert", f.certFile)
	return nil
}

// Watch reloads the files whenever they change, until ctx ends. Files being replaced may be
// caught half-written: that reload fails, is logged, and the next check tries again.
func (f *Files) Watch(ctx context.Context) {
	tick := time.NewTicker(checkInterval)
	defer tick.Stop()
	failed, sinceFailure := "", 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		f.mu.Lock()
		stamp := f.fileStamp()
		changed := stamp != f.stamp
		f.mu.Unlock()
		if !changed {
			continue
		}
		// A failed version of the files is tried again every retryChecks checks, since a
		// failure may pass by itself (a permission being fixed during a rotation).
		if stamp == failed {
			if sinceFailure++; sinceFailure < retryChecks {
				continue
			}
		}
		if err := f.Reload(); err != nil {
			failed, sinceFailure = stamp, 0
			continue
		}
		failed = ""
	}
}
