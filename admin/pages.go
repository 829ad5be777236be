package admin

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/ternmq/tern/internal/httpapi"
	"github.com/ternmq/tern/internal/version"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// liveRefresh is how often an open page refreshes its numbers and charts.
const liveRefresh = 5 * time.Second

// contentSecurityPolicy allows the page nothing but its own stylesheet, script and images:
// no inline script or style, no other origin, no framing. Every value from the cluster is
// escaped by html/template, and this is the second wall behind it.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// pages are the web UI: server-rendered HTML, complete without JavaScript. The script only
// refreshes the parts marked data-live in place and asks before an action; without it the
// server asks instead (confirm.html).
type pages struct {
	a         *Admin
	templates map[string]*template.Template
	static    fs.FS

	probeMu sync.Mutex
	probes  map[string]metricsProbe // node → whether it serves /metrics
}

// metricsProbe remembers whether a node serves Prometheus metrics.
type metricsProbe struct {
	at time.Time
	ok bool
}

// metricsProbeTTL is how long the answer of a /metrics probe is trusted.
const metricsProbeTTL = 5 * time.Minute

// pageNames are the pages, each one template file drawn inside layout.html.
var pageNames = []string{"overview", "topic", "channel", "nodes", "node", "lookup", "counter", "confirm", "message", "login"}

func newPages(a *Admin) (*pages, error) {
	p := &pages{a: a, templates: make(map[string]*template.Template), probes: make(map[string]metricsProbe)}
	static, err := fs.Sub(staticFiles, "static")
	if err != nil {
		return nil, err
	}
	p.static = static
	if dir := a.getOpts().DevStaticDir; dir != "" {
		p.static = os.DirFS(dir)
	}
	funcs := p.funcs()
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFiles,
			"templates/layout.html", "templates/actions.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", name, err)
		}
		p.templates[name] = t
	}
	return p, nil
}

// pageData is what layout.html draws around every page's Body.
type pageData struct {
	Title          string
	Section        string // the navigation entry to highlight
	Crumbs         []crumb
	Notice         string
	Warnings       []string
	Live           bool
	RefreshSeconds int
	Updated        time.Time
	User           string
	ACLHeader      string
	Login          bool // users log in (--user): the header has a logout button
	Admin          bool // the user may act
	Lookupd        bool // the cluster is found through lookupds
	Version        string
	NSQVersion     string
	Body           any
}

type crumb struct{ Label, URL string }

// base returns p under the base path.
func (p *pages) base(s string) string { return p.a.basePath + s }

func (p *pages) topicURL(topic string) string { return p.base("/topics/" + url.PathEscape(topic)) }

func (p *pages) channelURL(topic, channel string) string {
	return p.topicURL(topic) + "/" + url.PathEscape(channel)
}

func (p *pages) nodeURL(node string) string { return p.base("/nodes/" + url.PathEscape(node)) }

// actionButton is one action form (actions.html).
type actionButton struct {
	Kind, Label, Topic, Channel, Node, Confirm, Class, URL string
}

func (p *pages) funcs() template.FuncMap {
	return template.FuncMap{
		"base":       p.base,
		"topicURL":   p.topicURL,
		"channelURL": p.channelURL,
		"nodeURL":    p.nodeURL,
		"num":        formatInt,
		"rate":       formatPageRate,
		"latency":    formatLatency,
		"dur":        formatDuration,
		"unix":       func(ts int64) string { return time.Unix(ts, 0).UTC().Format("2006-01-02 15:04:05 UTC") },
		"join":       strings.Join,
		"durMs":      formatDurationMs,
		"bytes":      formatBytes,
		"firstClients": func(cs []*ClientStats) []*ClientStats {
			return cs[:min(len(cs), nodePageClients)]
		},
		"moreClients": func(cs []*ClientStats) int { return max(0, len(cs)-nodePageClients) },
		"act": func(kind, label, topic, channel, node, confirm, class string) actionButton {
			b := actionButton{Kind: kind, Label: label, Topic: topic, Channel: channel, Node: node, Confirm: confirm, Class: class}
			switch {
			case node != "":
				b.URL = p.nodeURL(node)
			case channel != "":
				b.URL = p.channelURL(topic, channel)
			default:
				b.URL = p.topicURL(topic)
			}
			return b
		},
	}
}

// nodePageClients is how many clients the node page lists per channel; the channel page
// lists them all.
const nodePageClients = 20

// newPageData fills what every page has.
func (p *pages) newPageData(r *http.Request, title, section string) *pageData {
	o := p.a.getOpts()
	return &pageData{
		Title:          title,
		Section:        section,
		RefreshSeconds: int(liveRefresh / time.Second),
		Updated:        time.Now(),
		User:           p.a.user(r),
		Login:          p.a.auth != nil,
		ACLHeader:      o.ACLHTTPHeader,
		Admin:          p.a.isAdmin(r),
		Lookupd:        len(o.NSQLookupdHTTPAddresses) > 0,
		Version:        version.Tern,
		NSQVersion:     version.Binary,
		Notice:         noticeText(r.URL.Query().Get("done")),
	}
}

// render draws page name with d. It renders into a buffer first, so that a template error is
// an error page rather than half a page.
func (p *pages) render(w http.ResponseWriter, status int, name string, d *pageData) {
	var buf bytes.Buffer
	if err := p.templates[name].ExecuteTemplate(&buf, "layout", d); err != nil {
		p.a.logger.Error("page not rendered", "page", name, "error", err)
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString("<!doctype html><title>Error</title><p>The page could not be drawn; the admin's log says why.")
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store") // the security headers are set for every answer (securityHeaders)
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// pageHandler is one page: it fills d (its Body at least) and names the template, or fails.
type pageHandler func(r *http.Request, ps httprouter.Params, d *pageData) (string, error)

// handle adapts a pageHandler to the router. An error becomes a page saying what went wrong,
// with the status an *httpapi.Error carries.
func (p *pages) handle(h pageHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ps := httprouter.ParamsFromContext(r.Context())
		d := p.newPageData(r, "", "")
		name, err := h(r, ps, d)
		if err != nil {
			p.renderError(w, r, err)
			return
		}
		p.render(w, http.StatusOK, name, d)
	})
}

// renderError answers err as a page.
func (p *pages) renderError(w http.ResponseWriter, r *http.Request, err error) {
	status, text := http.StatusInternalServerError, "The admin failed; its log says why."
	var apiE *httpapi.Error
	switch {
	case errors.As(err, &apiE):
		status, text = apiE.Code, errorText(apiE.Text)
	case errors.Is(err, context.Canceled):
		return // the browser went away
	default:
		p.a.logger.Error("page failed", "path", r.URL.Path, "error", err)
	}
	d := p.newPageData(r, http.StatusText(status), "")
	d.Body = messageBody{Class: "error", Heading: http.StatusText(status), Text: text, Back: p.base("/"), BackLabel: "Back to the topics"}
	p.render(w, status, "message", d)
}

// errorText explains an API error code to a person.
func errorText(code string) string {
	switch {
	case code == codeTopicNotFound:
		return "No node and no lookupd has this topic."
	case code == codeChanNotFound:
		return "No node has this channel."
	case code == codeNodeNotFound:
		return "No such node in the cluster."
	case code == codeForbidden:
		return "Only the admin users may change the cluster."
	case code == codeInvalidTopic:
		return "Topic names are 1 to 64 characters of letters, digits, '.', '_' and '-', with an optional '#ephemeral' suffix."
	case code == codeInvalidChannel:
		return "Channel names are 1 to 64 characters of letters, digits, '.', '_' and '-', with an optional '#ephemeral' suffix."
	case code == codeExiting:
		return "The admin is shutting down."
	case strings.HasPrefix(code, codeUpstreamError):
		return "No daemon of the cluster answered. " + strings.TrimPrefix(code, codeUpstreamError+": ")
	case code == httpapi.CodeNotFound:
		return "There is no such page."
	}
	return code
}

// messageBody is message.html: an outcome or an error, and where to go next.
type messageBody struct {
	Class, Heading, Text string
	Details              []string
	Back, BackLabel      string
}

// notFound answers a path no route matches: a page for a person, NSQ's JSON under /api/.
func (p *pages) notFound(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, p.base("/api/")) || strings.HasPrefix(r.URL.Path, p.base("/config/")) {
		httpapi.RespondError(w, httpapi.NewError(http.StatusNotFound, httpapi.CodeNotFound))
		return
	}
	p.renderError(w, r, httpapi.NewError(http.StatusNotFound, httpapi.CodeNotFound))
}

// serveStatic serves the embedded CSS, script and images (or --dev-static-dir's).
func (p *pages) serveStatic(w http.ResponseWriter, r *http.Request) {
	name := httprouter.ParamsFromContext(r.Context()).ByName("asset")
	if name == "" || strings.Contains(name, "/") || strings.HasPrefix(name, ".") {
		http.NotFound(w, r)
		return
	}
	data, err := fs.ReadFile(p.static, name)
	if err != nil {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte("NOT_FOUND"))
		return
	}
	h := w.Header()
	if p.a.getOpts().DevStaticDir == "" {
		h.Set("Cache-Control", "public, max-age=3600")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	switch path.Ext(name) {
	case ".css":
		h.Set("Content-Type", "text/css; charset=utf-8")
	case ".js":
		h.Set("Content-Type", "text/javascript; charset=utf-8")
	case ".svg":
		h.Set("Content-Type", "image/svg+xml")
	}
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
}

// pageSnapshot returns a recent snapshot, with its failures as the page's warnings. A page
// shows whatever the cluster answered, however little.
func (p *pages) pageSnapshot(r *http.Request, d *pageData) (*snapshot, error) {
	s, err := p.a.cache.get(r.Context(), pageMaxAge)
	if err != nil {
		return nil, snapshotErr(err)
	}
	for _, e := range s.errs {
		d.Warnings = append(d.Warnings, e.Error())
	}
	d.Updated = s.taken
	d.Live = true
	return s, nil
}

// noticeText is the line shown after an action, from the "done" parameter of the redirect.
func noticeText(done string) string {
	kind, object, ok := strings.Cut(done, "_")
	if !ok || (object != "topic" && object != "channel" && object != "topic_producer") {
		return ""
	}
	object = strings.TrimSuffix(object, "_producer")
	switch kind {
	case actCreate:
		return "Created the " + object + "."
	case actDelete:
		return "Deleted the " + object + "."
	case actPause:
		return "Paused the " + object + "."
	case actUnpause:
		return "Unpaused the " + object + "."
	case actEmpty:
		return "Emptied the " + object + "."
	case actTombstone:
		return "Tombstoned the topic on the node."
	case actSettings:
		return "Changed the " + object + "'s settings."
	case actRedrive:
		return "Sent the dead letters back to the channel."
	case actSeek:
		return "Moved the channel."
	}
	return ""
}

// formatInt writes an integer with thousands separators: 1,234,567.
func formatInt(v any) string {
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int32:
		n = int64(x)
	case int64:
		n = x
	case uint64:
		n = int64(min(x, 1<<63-1))
	default:
		return fmt.Sprint(v)
	}
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// formatPageRate writes a rate for a table or a card: "1,234/s", "0.5/s", or "–" before the
// second sample.
func formatPageRate(v float64, known bool) string {
	switch {
	case !known:
		return "–"
	case v >= 100:
		return formatInt(int64(v+0.5)) + "/s"
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64) + "/s"
	default:
		return trimFloat(v) + "/s"
	}
}

// formatLatency writes the end-to-end latency percentiles, highest first: "p99 12ms · p50
// 1.2ms". For a sum over nodes it shows the worst node's value, which is what an operator
// looks for.
func formatLatency(l *Latency) string {
	if l == nil || len(l.Percentiles) == 0 || l.Count == 0 {
		return "–"
	}
	parts := make([]string, 0, len(l.Percentiles))
	for _, p := range l.Percentiles {
		v := p.Max
		if p.HasValue {
			v = p.Value
		}
		parts = append(parts, p.Label()+" "+formatNanos(v))
	}
	return strings.Join(parts, " · ")
}

// formatNanos writes a duration in nanoseconds with three significant digits.
func formatNanos(ns float64) string {
	d := time.Duration(ns)
	switch {
	case d >= time.Second:
		return strconv.FormatFloat(d.Seconds(), 'g', 3, 64) + "s"
	case d >= time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e6, 'g', 3, 64) + "ms"
	default:
		return strconv.FormatFloat(float64(d)/1e3, 'g', 3, 64) + "µs"
	}
}

// formatDuration writes how long a client has been connected: 45s, 12m, 3h 5m, 2d 4h.
func formatDuration(d time.Duration) string {
	d = d.Truncate(time.Second)
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}
