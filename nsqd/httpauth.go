package nsqd

import (
	"context"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ternmq/tern/internal/httpapi"
)

// The HTTP API under --http-api-auth (a Tern extension; NSQ's HTTP API is open to anyone who
// reaches it). A request carries "Authorization: Bearer <secret>", checked by the same auth
// servers as AUTH, and needs:
//
//   - POST /pub, /mpub, /topic/create, /topic/pause, /topic/unpause: a publish grant on
//     the topic;
//   - POST /topic/delete, /topic/empty, and /topic/settings read or written: publish and
//     subscribe on every channel of the topic (a grant with both permissions and channel
//     ".*"): they destroy every channel's backlog, or may bound it;
//   - /channel/*: a subscribe grant on the topic and channel;
//   - /config/* and /debug/*, reads included (options, profiles, the command line):
//     publish and subscribe on every topic and channel (a grant of topic ".*" with
//     channel ".*");
//   - GET /ping, /info, /stats, /metrics: any valid secret, or none with
//     --http-api-auth-open-reads.
//
// Answers are cached per secret and client address until their ttl, so a busy producer
// does not ask the auth servers for every request; refusals are cached for a few seconds,
// and at most maxHTTPAuthQueries queries run at once, so that requests with made-up secrets
// cannot turn nsqd into a flood of queries to the auth servers.

// HTTP auth error messages, NSQ-style upper-case codes.
const (
	codeAuthRequired = "AUTH_REQUIRED"
	codeAuthFailed   = "AUTH_FAILED"
	codeUnauthorized = "UNAUTHORIZED"
)

// maxHTTPAuthCache bounds the cached answers; past it, the expired ones go, then all.
const maxHTTPAuthCache = 4096

// httpAuthRefusalTTL is how long a refused secret is refused without asking again.
const httpAuthRefusalTTL = 5 * time.Second

// maxHTTPAuthQueries bounds the auth queries the HTTP API runs at once.
const maxHTTPAuthQueries = 16

type httpAuthCache struct {
	mu      sync.Mutex
	answers map[string]*authState
	refusal map[string]time.Time // key -> until when it is refused without asking
}

// refused reports whether key was refused lately.
func (c *httpAuthCache) refused(key string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	until, ok := c.refusal[key]
	return ok && now.Before(until)
}

// refuse remembers that key was refused, until until.
func (c *httpAuthCache) refuse(key string, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refusal == nil {
		c.refusal = make(map[string]time.Time)
	}
	if len(c.refusal) >= maxHTTPAuthCache {
		now := until.Add(-httpAuthRefusalTTL)
		for k, u := range c.refusal {
			if !now.Before(u) {
				delete(c.refusal, k) // expired
			}
		}
		if len(c.refusal) >= maxHTTPAuthCache {
			clear(c.refusal)
		}
	}
	c.refusal[key] = until
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
	needTopicAdmin                 // publish and subscribe on every channel of the topic
	needSubscribe                  // subscribe on the topic and channel
	needEverything                 // publish and subscribe everywhere
)

// httpRequirement says what r needs, and whether it is an open read.
func httpRequirement(r *http.Request) (need httpNeed, openRead bool) {
	p := r.URL.Path
	switch {
	case r.Method == http.MethodGet && (p == "/ping" || p == "/info" || p == "/stats" || p == "/metrics"):
		return needSecret, true
	case p == "/topic/delete" || p == "/topic/empty" || p == "/topic/settings":
		return needTopicAdmin, false
	case p == "/pub" || p == "/mpub" || strings.HasPrefix(p, "/topic/"):
		return needPublish, false
	case strings.HasPrefix(p, "/channel/"):
		return needSubscribe, false
	}
	// /config, /debug, and anything the router does not know: the most that can be asked.
	return needEverything, false
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
	key := strings.Join([]string{req.secret, req.remoteIP, req.commonName, strconv.FormatBool(req.tls)}, "\x00")
	now := time.Now()
	if s.authCache.refused(key, now) {
		return httpapi.NewError(http.StatusUnauthorized, codeAuthFailed)
	}
	state := s.authCache.get(key, now)
	if state == nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*(o.HTTPClientConnectTimeout+o.HTTPClientRequestTimeout))
		defer cancel()
		select {
		case s.authQueries <- struct{}{}:
		case <-ctx.Done():
			return httpapi.NewError(http.StatusServiceUnavailable, codeAuthFailed)
		}
		var err error
		state, err = s.n.auth.query(ctx, req, rand.IntN(len(s.n.auth.addrs)))
		<-s.authQueries
		if err != nil {
			s.logger.Warn("HTTP API auth failed", "remote", r.RemoteAddr, "path", r.URL.Path, "error", err)
			s.authCache.refuse(key, now.Add(httpAuthRefusalTTL))
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
	case needTopicAdmin:
		allowed = state.allowsTopicAdmin(q.Get("topic"))
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
