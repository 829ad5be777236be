package nsqd

import (
	"context"
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

// tlsReloadCheckInterval is how often the certificate files are checked for a change.
const tlsReloadCheckInterval = time.Second

// tlsHandshakeTimeout bounds the TLS handshake of an IDENTIFY upgrade, as NSQ's.
const tlsHandshakeTimeout = 5 * time.Second

// tlsFiles serves nsqd's TLS configuration (--tls-cert, --tls-key, --tls-root-ca-file,
// --tls-client-auth-policy, --tls-min-version) and reloads it when the files change or on
// Reload (SIGHUP), without dropping a connection: every handshake asks for the current
// configuration, so a renewed certificate is served to new connections at once and
// established ones keep theirs. A reload that fails keeps the configuration in use and logs
// why.
type tlsFiles struct {
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

// newTLSFiles loads the TLS files of o, or returns nil when o configures no TLS.
func newTLSFiles(o *Options, logger *slog.Logger) (*tlsFiles, error) {
	if o.TLSCert == "" && o.TLSKey == "" {
		return nil, nil
	}
	f := &tlsFiles{
		certFile: o.TLSCert, keyFile: o.TLSKey, caFile: o.TLSRootCAFile,
		minVersion: tlsVersion(o.TLSMinVersion), logger: logger,
	}
	switch o.TLSClientAuthPolicy {
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

// tlsVersion maps --tls-min-version's names (checked by the binary) to Go's constants.
func tlsVersion(name string) uint16 {
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
func (f *tlsFiles) reload() error {
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
		pem, err := os.ReadFile(f.caFile)
		if err != nil {
			return fmt.Errorf("--tls-root-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--tls-root-ca-file %s: no PEM certificate in it", f.caFile)
		}
		cfg.ClientCAs = pool
	}
	f.current.Store(cfg)
	f.stamp = stamp
	return nil
}

// fileStamp describes the files' sizes and modification times; a change means a reload.
func (f *tlsFiles) fileStamp() string {
	s := ""
	for _, name := range []string{f.certFile, f.keyFile, f.caFile} {
		if name == "" {
			continue
		}
		if fi, err := os.Stat(name); err == nil {
			s += fmt.Sprintf("%d@%d;", fi.Size(), fi.ModTime().UnixNano())
		} else {
			s += "missing;"
		}
	}
	return s
}

// Reload reloads the files now, as on SIGHUP, logging the outcome.
func (f *tlsFiles) Reload() error {
	err := f.reload()
	if err != nil {
		f.logger.Error("TLS files not reloaded; the previous ones stay in use", "error", err)
		return err
	}
	f.logger.Info("TLS files reloaded", "cert", f.certFile)
	return nil
}

// watch reloads the files whenever they change, until ctx ends. Files being replaced may be
// caught half-written: that reload fails, is logged, and the next check tries again.
func (f *tlsFiles) watch(ctx context.Context) {
	tick := time.NewTicker(tlsReloadCheckInterval)
	defer tick.Stop()
	failed := ""
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
		if !changed || stamp == failed {
			continue
		}
		if err := f.Reload(); err != nil {
			failed = stamp // logged once per version of the files
			continue
		}
		failed = ""
	}
}

// errTLSAgain refuses a second TLS upgrade, or one after compression, on a connection.
var errTLSAgain = errors.New("IDENTIFY cannot negotiate TLS again, or after compression")
