package nsqd

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ternmq/tern/internal/httpapi"
)

// The HTTP API under --http-api-auth (a Tern extension; NSQ's HTTP API is open to anyone who
// reaches it). A request carries "Authorization: Bearer <secret>", checked by the same auth
// servers as AUTH, and needs:
//
//   - POST /pub, /mpub and /topic/*: a publish grant on the topic;
//   - POST /channel/*: a subscribe grant on the topic and channel;
//   - PUT /config/*, /debug/setblockrate, POST /debug/freememory: publish and subscribe on
//     every topic and channel (a grant of topic ".*" with channel ".*");
//   - everything else (GET /ping, /info, /stats, /metrics, /config, /debug/pprof): any
//     valid secret, or none with --http-api-auth-open-reads for /ping, /info, /stats and
//     /metrics.
//
// Answers are cached per secret and client address until their ttl, so a busy producer
// does not ask the auth servers for every request.

// HTTP auth error messages, NSQ-style upper-case codes.
const (
	codeAuthRequired = "AUTH_REQUIRED"
	codeAuthFailed   = "AUTH_FAILED"
	codeUnauthorized = "UNAUTHORIZED"
)

// maxHTTPAuthCache bounds the cached answers; past it, the expired ones go, then all.
const maxHTTPAuthCache = 4096

type httpAuthCache struct {
	mu      sync.Mutex
	answers map[string]*authState
}

func (c *httpAuthCache) get(key string, now time.Time) *authState {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.answers[key]
	if s == nil || now.After(s.expires) {
		return nil
	}
	return s
}

func (c *httpAuthCache) put(key string, s *authState, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.answers == nil {
		c.answers = make(map[string]*authState)
	}
	if len(c.answers) >= maxHTTPAuthCache {
		for k, old := range c.answers {
			if now.After(old.expires) {
				delete(c.answers, k)
			}
		}
		if len(c.answers) >= maxHTTPAuthCache {
			clear(c.answers)
		}
	}
	c.answers[key] = s
}

// httpNeed is what a request needs of the secret's grants.
type httpNeed int

const (
	needSecret     httpNeed = iota // any valid secret
	needPublish                    // publish on the topic
	needSubscribe                  // subscribe on the topic and channel
	needEverything                 // publish and subscribe everywhere
)

// httpRequirement says what r needs, and whether it is an open read.
func httpRequirement(r *http.Request) (need httpNeed, openRead bool) {
	p := r.URL.Path
	switch {
	case r.Method == http.MethodGet && (p == "/ping" || p == "/info" || p == "/stats" || p == "/metrics"):
		return needSecret, true
	case p == "/pub" || p == "/mpub" || strings.HasPrefix(p, "/topic/"):
		return needPublish, false
	case strings.HasPrefix(p, "/channel/"):
		return needSubscribe, false
	case r.Method != http.MethodGet && (strings.HasPrefix(p, "/config/") || strings.HasPrefix(p, "/debug/")):
		return needEverything, false
	}
	return needSecret, false
}

// authorizeHTTP checks r against the auth servers; it returns nil to serve r, or the error
// to answer.
func (s *httpAPI) authorizeHTTP(r *http.Request) *httpapi.Error {
	o := s.n.getOpts()
	need, openRead := httpRequirement(r)
	if openRead && o.HTTPAPIAuthOpenReads {
		return nil
	}
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || secret == "" {
		return httpapi.NewError(http.StatusUnauthorized, codeAuthRequired)
	}
	req := authRequest{secret: secret, tls: r.TLS != nil}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		req.remoteIP = host
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		req.commonName = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	key := strings.Join([]string{req.secret, req.remoteIP, req.commonName, boolString(req.tls)}, "\x00")
	now := time.Now()
	state := s.authCache.get(key, now)
	if state == nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*(o.HTTPClientConnectTimeout+o.HTTPClientRequestTimeout))
		defer cancel()
		var err error
		state, err = s.n.auth.query(ctx, req, 0)
		if err != nil {
			s.logger.Warn("HTTP API auth failed", "remote", r.RemoteAddr, "path", r.URL.Path, "error", err)
			return httpapi.NewError(http.StatusUnauthorized, codeAuthFailed)
		}
		s.authCache.put(key, state, now)
	}
	q := r.URL.Query()
	allowed := false
	switch need {
	case needSecret:
		allowed = len(state.grants) > 0
	case needPublish:
		allowed = state.allows(q.Get("topic"), "")
	case needSubscribe:
		allowed = state.allows(q.Get("topic"), q.Get("channel"))
	case needEverything:
		allowed = state.allowsEverything()
	}
	if !allowed {
		return httpapi.NewError(http.StatusForbidden, codeUnauthorized)
	}
	return nil
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
