package admin

import (
	"log/slog"
	"net/http"

	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ternmq/tern/internal/httpapi"
	"github.com/ternmq/tern/internal/protocol"
)

// handler routes every page and endpoint under the base path:
//
//   - the pages (GET), and the forms of their actions (POST to the same paths);
//   - NSQ's JSON API under /api/ and /config/, with NSQ's shapes and error codes, plus
//     GET /api/series, the history behind a chart, and Tern's extensions: a channel's
//     messages, dead letters, redrive and seek, and /api/settings;
//   - /ping, /metrics (the admin's own) and /static/;
//   - with --user, /login and /logout, and every other path behind a login (auth.go).
//
// Requests that change something and come from another site's page are refused
// (net/http's CrossOriginProtection): a cross-site form could otherwise delete a topic with
// the user's credentials. Scripts and curl send no browser headers and are not affected.
// Every answer, refusals included, carries the security headers (securityHeaders).
func (a *Admin) handler() http.Handler {
	logger := a.logger.With("component", "http")
	p := a.pages
	rt := httpapi.NewRouter(httpapi.Config{
		Logger:       logger,
		WriteTimeout: httpWriteTimeout,
		NotFound:     http.HandlerFunc(p.notFound),
	})
	bp := p.base

	rt.Handle("GET", bp("/ping"), func(http.ResponseWriter, *http.Request, httprouter.Params) (any, error) {
		return protocol.OK, nil
	})

	rt.Handler("GET", bp("/"), p.handle(p.overview))
	rt.Handler("GET", bp("/topics"), p.handle(p.overview))
	rt.Handler("GET", bp("/topics/:topic"), p.handle(p.topic))
	rt.Handler("GET", bp("/topics/:topic/:channel"), p.handle(p.channel))
	rt.Handler("GET", bp("/nodes"), p.handle(p.nodes))
	rt.Handler("GET", bp("/nodes/:node"), p.handle(p.node))
	rt.Handler("GET", bp("/lookup"), p.handle(p.lookup))
	rt.Handler("GET", bp("/counter"), p.handle(p.counter))
	rt.Handler("GET", bp("/static/:asset"), http.HandlerFunc(p.serveStatic))

	if a.auth != nil {
		rt.Handler("GET", bp("/login"), http.HandlerFunc(p.loginForm))
		rt.Handler("POST", bp("/login"), http.HandlerFunc(p.login))
		rt.Handler("POST", bp("/logout"), http.HandlerFunc(p.logout))
	}

	post := http.HandlerFunc(p.postAction)
	rt.Handler("POST", bp("/topics"), post)
	rt.Handler("POST", bp("/topics/:topic"), post)
	rt.Handler("POST", bp("/topics/:topic/:channel"), post)
	rt.Handler("POST", bp("/nodes/:node"), post)

	rt.Handle("GET", bp("/api/topics"), a.apiTopics)
	rt.Handle("GET", bp("/api/topics/:topic"), a.apiTopic)
	rt.Handle("GET", bp("/api/topics/:topic/:channel"), a.apiChannel)
	rt.Handle("GET", bp("/api/topics/:topic/:channel/messages"), a.apiMessages)
	rt.Handle("GET", bp("/api/topics/:topic/:channel/dead_letters"), a.apiDeadLetters)
	rt.Handle("POST", bp("/api/topics/:topic/:channel/redrive"), a.apiRedrive)
	rt.Handle("POST", bp("/api/topics/:topic/:channel/seek"), a.apiSeek)
	// Settings have their own prefix: the router cannot tell /api/topics/:topic/settings from
	// a channel named "settings".
	rt.Handle("GET", bp("/api/settings/:topic"), a.apiGetSettings)
	rt.Handle("GET", bp("/api/settings/:topic/:channel"), a.apiGetSettings)
	rt.Handle("POST", bp("/api/settings/:topic"), a.apiPostSettings)
	rt.Handle("POST", bp("/api/settings/:topic/:channel"), a.apiPostSettings)
	rt.Handle("GET", bp("/api/nodes"), a.apiNodes)
	rt.Handle("GET", bp("/api/nodes/:node"), a.apiNode)
	rt.Handle("GET", bp("/api/counter"), a.apiCounter)
	rt.Handle("GET", bp("/api/series"), a.apiSeries)
	rt.Handle("POST", bp("/api/topics"), a.apiCreate)
	rt.Handle("POST", bp("/api/topics/:topic"), a.apiAction)
	rt.Handle("POST", bp("/api/topics/:topic/:channel"), a.apiAction)
	rt.Handle("DELETE", bp("/api/topics/:topic"), a.apiDelete)
	rt.Handle("DELETE", bp("/api/topics/:topic/:channel"), a.apiDelete)
	rt.Handle("DELETE", bp("/api/nodes/:node"), a.apiTombstone)
	rt.Handle("GET", bp("/config/:opt"), a.getConfig)
	rt.Handle("PUT", bp("/config/:opt"), a.putConfig)

	rt.Handler("GET", bp("/metrics"), promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	}))

	return securityHeaders(a.tls != nil, http.NewCrossOriginProtection().Handler(a.requireLogin(rt)))
}

// hstsPolicy is the Strict-Transport-Security of an admin serving HTTPS: a year, the host only
// (the admin does not speak for its domain's other hosts).
const hstsPolicy = "max-age=31536000"

// securityHeaders sets on every answer, pages, JSON, assets and errors alike: the strict
// Content-Security-Policy (which forbids framing with frame-ancestors), X-Frame-Options for
// browsers that predate frame-ancestors, nosniff so that nothing is run as another type than
// the one it is served as, and a Referrer-Policy that keeps the admin's URLs (topic names)
// from other sites. Over HTTPS (the admin's own, https) it adds Strict-Transport-Security for
// a year, so that a browser that has seen the admin never talks plain HTTP to it again; behind
// a proxy, HSTS is the proxy's to send.
func securityHeaders(https bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if https {
			h.Set("Strict-Transport-Security", hstsPolicy)
		}
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}
