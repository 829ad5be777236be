// Command authd is a small auth server speaking NSQ's auth protocol, for trying nsqd's AUTH
// (--auth-http-address) and --http-api-auth: it answers GET or POST /auth with the grants a
// JSON file gives each secret, and 403 for any other secret.
//
//	authd --http-address=127.0.0.1:4181 --secrets=secrets.json
//
// secrets.json maps each secret to NSQ's answer:
//
//	{
//	  "s3cret": {"ttl": 3600, "identity": "billing", "identity_url": "https://example.com/billing",
//	             "authorizations": [{"topic": "orders", "channels": [".*"],
//	                                 "permissions": ["publish", "subscribe"]}]}
//	}
//
// The file is read again on SIGHUP. Secrets are compared in constant time and never logged.
package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

// grant is NSQ's auth answer for one secret.
type grant struct {
	TTL            int    `json:"ttl"`
	Identity       string `json:"identity"`
	IdentityURL    string `json:"identity_url,omitempty"`
	Authorizations []struct {
		Topic       string   `json:"topic"`
		Channels    []string `json:"channels"`
		Permissions []string `json:"permissions"`
	} `json:"authorizations"`
}

// secrets is the file's content.
type secrets map[string]grant

func load(path string) (secrets, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s secrets
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, g := range s {
		if g.TTL <= 0 {
			return nil, fmt.Errorf("%s: the grant of identity %q needs a positive ttl", path, g.Identity)
		}
	}
	return s, nil
}

// handler answers /auth from the secrets in cur.
func handler(cur *atomic.Pointer[secrets], logger *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/auth", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, `{"message":"bad request"}`, http.StatusBadRequest)
			return
		}
		secret := r.Form.Get("secret")
		var found *grant
		for s, g := range *cur.Load() {
			if subtle.ConstantTimeCompare([]byte(s), []byte(secret)) == 1 {
				found = &g
			}
		}
		if found == nil {
			logger.Info("refused", "remote_ip", r.Form.Get("remote_ip"), "tls", r.Form.Get("tls"),
				"common_name", r.Form.Get("common_name"))
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"message":"unknown secret"}`))
			return
		}
		logger.Info("granted", "identity", found.Identity, "remote_ip", r.Form.Get("remote_ip"),
			"tls", r.Form.Get("tls"), "common_name", r.Form.Get("common_name"))
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(found)
	})
	return mux
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "authd:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("http-address", "127.0.0.1:4181", "address to listen on")
	path := flag.String("secrets", "secrets.json", "JSON file of secrets and their grants")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	s, err := load(*path)
	if err != nil {
		return err
	}
	var cur atomic.Pointer[secrets]
	cur.Store(&s)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if s, err := load(*path); err != nil {
				logger.Error("secrets not reloaded", "error", err)
			} else {
				cur.Store(&s)
				logger.Info("secrets reloaded", "count", len(s))
			}
		}
	}()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler(&cur, logger), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	logger.Info("authd listening", "address", ln.Addr().String(), "secrets", len(s))
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
