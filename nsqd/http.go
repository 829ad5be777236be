package nsqd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ternmq/tern/internal/cmdline"
	"github.com/ternmq/tern/internal/httpapi"
	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/quantile"
	"github.com/ternmq/tern/internal/version"
)

// httpWriteTimeout bounds writing one API answer: a client that stops reading a large /stats
// cannot hold its handler and the buffered answer for longer. It is per answer, not the
// server's WriteTimeout, which would cut /debug/pprof/profile?seconds=60 short.
const httpWriteTimeout = 30 * time.Second

// NSQ's API error codes (the "message" of an error answer).
const (
	codeInvalidRequest  = "INVALID_REQUEST"
	codeMissingTopic    = "MISSING_ARG_TOPIC"
	codeInvalidTopic    = "INVALID_TOPIC"     // /pub, /mpub and /topic/*
	codeInvalidArgTopic = "INVALID_ARG_TOPIC" // /channel/*: NSQ's other spelling
	codeMissingChannel  = "MISSING_ARG_CHANNEL"
	codeInvalidChannel  = "INVALID_ARG_CHANNEL"
	codeTopicNotFound   = "TOPIC_NOT_FOUND"
	codeChanNotFound    = "CHANNEL_NOT_FOUND"
	codeMsgTooBig       = "MSG_TOO_BIG"
	codeBodyTooBig      = "BODY_TOO_BIG"
	codeMsgEmpty        = "MSG_EMPTY"
	codeInvalidDefer    = "INVALID_DEFER"
	codeExiting         = "EXITING"
	codeInvalidOption   = "INVALID_OPTION"
	codeInvalidValue    = "INVALID_VALUE"
	codeInvalidRate     = "INVALID_BLOCK_RATE"
	codeTLSRequired     = "TLS_REQUIRED"
)

func apiErr(status int, code string) error { return httpapi.NewError(status, code) }

// httpTimeouts are the HTTP server's connection limits.
type httpTimeouts struct {
	readHeader time.Duration // a slowloris client is dropped after this
	read       time.Duration // the whole request, body included
	idle       time.Duration // between keep-alive requests
}

// defaultHTTPTimeouts are the limits Run serves with.
func defaultHTTPTimeouts() httpTimeouts {
	return httpTimeouts{readHeader: httpReadHeaderTimeout, read: httpReadTimeout, idle: httpIdleTimeout}
}

// newHTTPServer returns the server for handler h. Every limit is set: without them one
// connection that sends half a header, or never finishes its body, holds a goroutine forever.
func (n *NSQD) newHTTPServer(h http.Handler, t httpTimeouts) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.readHeader,
		ReadTimeout:       t.read,
		IdleTimeout:       t.idle,
		ErrorLog:          slog.NewLogLogger(n.logger.Handler(), slog.LevelDebug),
	}
}

// httpAPI is nsqd's HTTP API, NSQ 1.3's endpoints with NSQ's parameters, answers and error
// codes (reference §3.2), plus GET /metrics.
type httpAPI struct {
	secure      bool // served over HTTPS
	authCache   httpAuthCache
	authQueries chan struct{} // capacity maxHTTPAuthQueries: the HTTP auth queries running
	n           *NSQD
	logger      *slog.Logger
	router      *httpapi.Router

	// configMu serialises PUT /config: each writer copies the options, changes one field and
	// stores the copy, and two at once would lose one change.
	configMu sync.Mutex
}

// httpHandler returns the handler of the plain HTTP listener.
func (n *NSQD) httpHandler() http.Handler { return n.newHTTPAPI(nil) }

// httpsHandler is the API on the HTTPS listener, which never answers TLS_REQUIRED.
func (n *NSQD) httpsHandler() http.Handler {
	s := n.newHTTPAPI(nil)
	s.secure = true
	return s
}

// newHTTPAPI builds the API. extra, when not nil, registers more routes; tests use it.
func (n *NSQD) newHTTPAPI(extra func(*httpapi.Router)) *httpAPI {
	s := &httpAPI{n: n, logger: n.logger.With("component", "http"), authQueries: make(chan struct{}, maxHTTPAuthQueries)}
	rt := httpapi.NewRouter(httpapi.Config{Logger: s.logger, WriteTimeout: httpWriteTimeout})
	s.router = rt

	rt.Handle("GET", "/ping", s.ping)
	rt.Handle("GET", "/info", s.info)
	rt.Handle("POST", "/pub", s.pub)
	rt.Handle("POST", "/mpub", s.mpub)
	rt.Handle("GET", "/stats", s.stats)

	rt.Handle("POST", "/topic/create", s.topicCreate)
	rt.Handle("POST", "/topic/delete", s.topicDelete)
	rt.Handle("POST", "/topic/empty", s.topicEmpty)
	rt.Handle("POST", "/topic/pause", s.topicPause(true))
	rt.Handle("POST", "/topic/unpause", s.topicPause(false))
	rt.Handle("POST", "/channel/create", s.channelCreate)
	rt.Handle("POST", "/channel/delete", s.channelDelete)
	rt.Handle("POST", "/channel/empty", s.channelEmpty)
	rt.Handle("POST", "/channel/pause", s.channelPause(true))
	rt.Handle("POST", "/channel/unpause", s.channelPause(false))
	rt.Handle("GET", "/channel/peek", s.channelPeek)
	rt.Handle("GET", "/channel/message", s.channelMessage)
	rt.Handle("GET", "/topic/settings", s.topicSettings)
	rt.Handle("POST", "/topic/settings", s.topicSettings)
	rt.Handle("GET", "/channel/settings", s.channelSettings)
	rt.Handle("POST", "/channel/settings", s.channelSettings)
	rt.Handle("POST", "/channel/seek", s.channelSeek)
	rt.Handle("GET", "/channel/dead_letters", s.channelDeadLetters)
	rt.Handle("POST", "/channel/redrive", s.channelRedrive)
	rt.Handle("GET", "/config/:opt", s.getConfig)
	rt.Handle("PUT", "/config/:opt", s.putConfig)

	rt.Handler("GET", "/metrics", promhttp.HandlerFor(n.registry, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(s.logger.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	}))

	// pprof's handlers, on this router only: the daemon never serves http.DefaultServeMux,
	// where importing net/http/pprof also registers them.
	rt.Handler("GET", "/debug/pprof/", http.HandlerFunc(pprof.Index))
	rt.Handler("GET", "/debug/pprof/cmdline", http.HandlerFunc(pprof.Cmdline))
	rt.Handler("GET", "/debug/pprof/profile", http.HandlerFunc(pprof.Profile))
	rt.Handler("GET", "/debug/pprof/symbol", http.HandlerFunc(pprof.Symbol))
	rt.Handler("POST", "/debug/pprof/symbol", http.HandlerFunc(pprof.Symbol))
	rt.Handler("GET", "/debug/pprof/trace", http.HandlerFunc(pprof.Trace))
	for _, p := range []string{"heap", "goroutine", "block", "threadcreate", "mutex", "allocs"} {
		rt.Handler("GET", "/debug/pprof/"+p, pprof.Handler(p))
	}
	rt.Handle("PUT", "/debug/setblockrate", s.setBlockRate)
	rt.Handle("POST", "/debug/freememory", s.freeMemory)

	if extra != nil {
		extra(rt)
	}
	return s
}

// ServeHTTP answers every request 403 TLS_REQUIRED, as NSQ does on its plain listener, while
// --tls-required=true; otherwise, and on the HTTPS listener, it routes it.
func (s *httpAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.secure && s.n.getOpts().tlsRequired() == "true" {
		_, _ = httpapi.Respond(w, http.StatusForbidden, struct {
			Message   string `json:"message"`
			HTTPSPort int    `json:"https_port"`
		}{codeTLSRequired, s.httpsPort()})
		return
	}
	if s.n.getOpts().HTTPAPIAuth {
		if e := s.authorizeHTTP(r); e != nil {
			if e.Code == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="nsqd"`)
			}
			httpapi.RespondError(w, e)
			return
		}
	}
	s.router.ServeHTTP(w, r)
}

// httpsPort is the port the HTTPS API listens on, or that of --https-address.
func (s *httpAPI) httpsPort() int {
	addr := s.n.getOpts().HTTPSAddress
	if a := s.n.HTTPSAddr(); a != nil {
		addr = a.String()
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return -1
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return -1
	}
	return p
}

func (s *httpAPI) ping(http.ResponseWriter, *http.Request, httprouter.Params) (any, error) {
	if err := s.n.Health(); err != nil {
		return httpapi.Status{Code: http.StatusInternalServerError, Body: "NOK - " + err.Error()}, nil
	}
	if s.n.exiting.Load() {
		return httpapi.Status{Code: http.StatusInternalServerError, Body: "NOK - exiting"}, nil
	}
	return "OK", nil
}

// infoResponse is GET /info. The durations are time.Duration, integer nanoseconds in JSON,
// which is what NSQ sends and what its tools parse.
type infoResponse struct {
	Version                string        `json:"version"`
	BroadcastAddress       string        `json:"broadcast_address"`
	Hostname               string        `json:"hostname"`
	HTTPPort               int           `json:"http_port"`
	TCPPort                int           `json:"tcp_port"`
	StartTime              int64         `json:"start_time"`
	MaxHeartbeatInterval   time.Duration `json:"max_heartbeat_interval"`
	MaxOutputBufferSize    int64         `json:"max_output_buffer_size"`
	MaxOutputBufferTimeout time.Duration `json:"max_output_buffer_timeout"`
	MaxDeflateLevel        int           `json:"max_deflate_level"`
	TopologyZone           string        `json:"topology_zone"`
	TopologyRegion         string        `json:"topology_region"`
}

func (s *httpAPI) info(http.ResponseWriter, *http.Request, httprouter.Params) (any, error) {
	hostname, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("hostname: %w", err)
	}
	opts := s.n.getOpts()
	tcpPort, httpPort := protocol.ListenPort(s.n.TCPAddr()), protocol.ListenPort(s.n.HTTPAddr())
	if opts.BroadcastTCPPort != 0 {
		tcpPort = opts.BroadcastTCPPort
	}
	if opts.BroadcastHTTPPort != 0 {
		httpPort = opts.BroadcastHTTPPort
	}
	return infoResponse{
		Version:                version.Binary,
		BroadcastAddress:       opts.BroadcastAddress,
		Hostname:               hostname,
		HTTPPort:               httpPort,
		TCPPort:                tcpPort,
		StartTime:              s.n.startTime.Unix(),
		MaxHeartbeatInterval:   opts.MaxHeartbeatInterval,
		MaxOutputBufferSize:    opts.MaxOutputBufferSize,
		MaxOutputBufferTimeout: opts.MaxOutputBufferTimeout,
		MaxDeflateLevel:        opts.MaxDeflateLevel,
		TopologyZone:           opts.TopologyZone,
		TopologyRegion:         opts.TopologyRegion,
	}, nil
}

// query parses the query string, NSQ's only source of parameters; a body never carries them.
func query(r *http.Request) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, apiErr(http.StatusBadRequest, codeInvalidRequest)
	}
	return q, nil
}

// topicParam returns the valid topic name of q, with NSQ's errors for /pub, /mpub and
// /topic/*. A present but empty topic is invalid, not missing, as in NSQ.
func topicParam(q url.Values) (string, error) {
	v, ok := q["topic"]
	if !ok {
		return "", apiErr(http.StatusBadRequest, codeMissingTopic)
	}
	if !protocol.IsValidTopicName(v[0]) {
		return "", apiErr(http.StatusBadRequest, codeInvalidTopic)
	}
	return v[0], nil
}

// validTopicParam returns the valid topic parameter of r's query.
func validTopicParam(r *http.Request) (string, error) {
	q, err := query(r)
	if err != nil {
		return "", err
	}
	return topicParam(q)
}

// topicChannelParams returns the valid topic and channel of q, with the codes NSQ's
// /channel/* endpoints use.
func topicChannelParams(r *http.Request) (topic, channel string, err error) {
	q, err := query(r)
	if err != nil {
		return "", "", err
	}
	t, ok := q["topic"]
	switch {
	case !ok:
		return "", "", apiErr(http.StatusBadRequest, codeMissingTopic)
	case !protocol.IsValidTopicName(t[0]):
		return "", "", apiErr(http.StatusBadRequest, codeInvalidArgTopic)
	}
	c, ok := q["channel"]
	switch {
	case !ok:
		return "", "", apiErr(http.StatusBadRequest, codeMissingChannel)
	case !protocol.IsValidChannelName(c[0]):
		return "", "", apiErr(http.StatusBadRequest, codeInvalidChannel)
	}
	return t[0], c[0], nil
}

// readBody reads a request body of at most limit bytes, answering 413 with tooBig beyond it.
// A declared Content-Length over the limit is refused before a byte is read; a chunked body is
// read through http.MaxBytesReader and cut off at the limit. A body with a Content-Length is
// read into a buffer of exactly that size (net/http never hands over more than declared).
func readBody(w http.ResponseWriter, r *http.Request, limit int64, tooBig string) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, refuseBody(w, tooBig)
	}
	var body []byte
	var err error
	if r.ContentLength >= 0 {
		body = make([]byte, r.ContentLength)
		_, err = io.ReadFull(r.Body, body)
	} else {
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	}
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, refuseBody(w, tooBig)
		}
		// The client went away or was too slow (the server's read timeout): nothing to log
		// above debug, and NSQ's answer.
		return nil, apiErr(http.StatusInternalServerError, httpapi.CodeInternalError)
	}
	return body, nil
}

// refuseBody answers 413 code without reading the rest of the body, and closes the connection
// after the answer, so that net/http does not drain what the client still sends.
func refuseBody(w http.ResponseWriter, code string) error {
	w.Header().Set("Connection", "close")
	return apiErr(http.StatusRequestEntityTooLarge, code)
}

// publishErr maps a failed publish: shutting down (or the topic being deleted under the
// request) is NSQ's 503 EXITING; anything else is a storage failure, a logged 500.
func publishErr(err error) error {
	if errors.Is(err, ErrExiting) || errors.Is(err, errTopicExiting) {
		return apiErr(http.StatusServiceUnavailable, codeExiting)
	}
	if q, ok := isQuotaError(err); ok {
		// Tern's quotas: a full topic is out of storage it may use, or out of messages.
		if q.Bytes {
			return apiErr(http.StatusInsufficientStorage, q.Error())
		}
		return apiErr(http.StatusTooManyRequests, q.Error())
	}
	return err
}

// pub is POST /pub?topic=T[&defer=ms]: the body is one message. The checks run in NSQ's order,
// so a request wrong in two ways gets NSQ's answer.
func (s *httpAPI) pub(w http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	opts := s.n.getOpts()
	body, err := readBody(w, r, opts.MaxMsgSize, codeMsgTooBig)
	if err != nil {
		return nil, err
	}
	if len(body) == 0 {
		return nil, apiErr(http.StatusBadRequest, codeMsgEmpty)
	}
	q, err := query(r)
	if err != nil {
		return nil, err
	}
	topic, err := topicParam(q)
	if err != nil {
		return nil, err
	}
	var deferral time.Duration
	if ds, ok := q["defer"]; ok {
		ms, err := strconv.ParseInt(ds[0], 10, 64)
		// The range is checked in milliseconds, before converting: a huge value must not
		// overflow into an accepted one.
		if err != nil || ms < 0 || ms > opts.MaxReqTimeout.Milliseconds() {
			return nil, apiErr(http.StatusBadRequest, codeInvalidDefer)
		}
		deferral = time.Duration(ms) * time.Millisecond
	}
	if err := s.n.Publish(topic, [][]byte{body}, deferral); err != nil {
		return nil, publishErr(err)
	}
	return "OK", nil
}

// boolParam reads a query value as NSQ does: true, 1, false and 0 are booleans; anything
// else is not (ok false), and the caller keeps its default.
func boolParam(v string) (value, ok bool) {
	switch v {
	case "true", "1":
		return true, true
	case "false", "0":
		return false, true
	}
	return false, false
}

// mpub is POST /mpub?topic=T[&binary=true]: newline-separated messages, or with binary the
// TCP MPUB's count and size-prefixed messages. The messages are published as one batch, all or
// none.
func (s *httpAPI) mpub(w http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	opts := s.n.getOpts()
	if r.ContentLength > opts.MaxBodySize {
		return nil, refuseBody(w, codeBodyTooBig)
	}
	q, err := query(r)
	if err != nil {
		return nil, err
	}
	topic, err := topicParam(q)
	if err != nil {
		return nil, err
	}
	binaryMode := false
	if v, ok := q["binary"]; ok {
		if binaryMode, ok = boolParam(v[0]); !ok {
			// NSQ before 1.0 switched on the parameter's presence alone; its clients may still
			// send binary=yes.
			binaryMode = true
			s.logger.Warn("deprecated value for /mpub binary parameter, treated as true", "value", v[0])
		}
	}
	body, err := readBody(w, r, opts.MaxBodySize, codeBodyTooBig)
	if err != nil {
		return nil, err
	}
	var bodies [][]byte
	if binaryMode {
		bodies, err = protocol.ParseMPUBBinary(body, opts.MaxMsgSize, opts.MaxBodySize)
		if err != nil {
			// NSQ answers the TCP protocol's code without its "E_": BAD_BODY, BAD_MESSAGE.
			code := httpapi.CodeInternalError
			if pe, ok := errors.AsType[*protocol.Error](err); ok {
				code = strings.TrimPrefix(pe.Code, "E_")
			}
			return nil, apiErr(http.StatusRequestEntityTooLarge, code)
		}
	} else {
		if bodies, err = splitLines(body, opts.MaxMsgSize); err != nil {
			return nil, err
		}
	}
	if len(bodies) == 0 {
		// NSQ accepts an empty text body: the topic is created and nothing is published.
		if _, err := s.n.CreateTopic(topic); err != nil {
			return nil, publishErr(err)
		}
		return "OK", nil
	}
	if err := s.n.Publish(topic, bodies, 0); err != nil {
		return nil, publishErr(err)
	}
	return "OK", nil
}

// splitLines cuts a text /mpub body into its messages: one per line, empty lines skipped
// (NSQ's behaviour since 0.2.22), each at most maxMsgSize. The messages alias body.
func splitLines(body []byte, maxMsgSize int64) ([][]byte, error) {
	bodies := make([][]byte, 0, bytes.Count(body, []byte{'\n'})+1)
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i:i], body[i+1:]
		} else {
			body = nil
		}
		if len(line) == 0 {
			continue
		}
		if int64(len(line)) > maxMsgSize {
			return nil, apiErr(http.StatusRequestEntityTooLarge, codeMsgTooBig)
		}
		bodies = append(bodies, line)
	}
	return bodies, nil
}

// stats is GET /stats: text by default, NSQ's JSON with format=json.
func (s *httpAPI) stats(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	q, err := query(r)
	if err != nil {
		return nil, err
	}
	f := StatsFilter{Topic: q.Get("topic"), Channel: q.Get("channel"), IncludeClients: true, IncludeMem: true}
	if v, ok := boolParam(q.Get("include_clients")); ok {
		f.IncludeClients = v
	}
	if v, ok := boolParam(q.Get("include_mem")); ok {
		f.IncludeMem = v
	}
	report := s.n.StatsReport(f)
	if f.Channel != "" {
		// NSQ leaves out the topics that do not have the channel asked for.
		kept := report.Topics[:0]
		for _, t := range report.Topics {
			if len(t.Channels) > 0 {
				kept = append(kept, t)
			}
		}
		report.Topics = kept
	}
	if q.Get("format") == "json" {
		return statsJSON(report), nil
	}
	var buf bytes.Buffer
	writeStatsText(&buf, report, time.Since(s.n.startTime))
	return buf.Bytes(), nil
}

// statsJSON fills in what NSQ's readers expect to find. Empty lists are [] rather than NSQ's
// null (reference §10 item 36): every JSON reader accepts [], while some typed ones (Kotlin's,
// for one) reject null for a list. A missing latency summary is {"count":0,"percentiles":[]},
// never null: nsqadmin merges the summaries of every node and would fail on a null one.
func statsJSON(r StatsReport) StatsReport {
	if r.Topics == nil {
		r.Topics = []TopicStats{}
	}
	if r.Producers == nil {
		r.Producers = []ClientStats{}
	}
	for i := range r.Topics {
		t := &r.Topics[i]
		if t.Channels == nil {
			t.Channels = []ChannelStats{}
		}
		t.E2eProcessingLatency = fixLatency(t.E2eProcessingLatency)
		for j := range t.Channels {
			c := &t.Channels[j]
			if c.Clients == nil {
				c.Clients = []ClientStats{}
			}
			c.E2eProcessingLatency = fixLatency(c.E2eProcessingLatency)
		}
	}
	return r
}

func fixLatency(q *quantile.Result) *quantile.Result {
	if q == nil {
		return &quantile.Result{Percentiles: []map[string]float64{}}
	}
	if q.Percentiles == nil {
		q.Percentiles = []map[string]float64{}
	}
	return q
}

// writeStatsText renders the human-readable /stats: the daemon, its memory, then a line per
// topic, channel and client (paused ones marked *P), then the producers.
func writeStatsText(b *bytes.Buffer, r StatsReport, uptime time.Duration) {
	fmt.Fprintf(b, "%s\n", version.String("nsqd"))
	fmt.Fprintf(b, "start_time %s\n", time.Unix(r.StartTime, 0).Format(time.RFC3339))
	fmt.Fprintf(b, "uptime %s\n", uptime.Truncate(time.Millisecond))
	fmt.Fprintf(b, "\nHealth: %s\n", r.Health)
	if m := r.Memory; m != nil {
		b.WriteString("\nMemory:\n")
		for _, row := range []struct {
			name  string
			value uint64
		}{
			{"heap_objects", m.HeapObjects},
			{"heap_idle_bytes", m.HeapIdleBytes},
			{"heap_in_use_bytes", m.HeapInUseBytes},
			{"heap_released_bytes", m.HeapReleasedBytes},
			{"gc_pause_usec_100", m.GCPauseUsec100},
			{"gc_pause_usec_99", m.GCPauseUsec99},
			{"gc_pause_usec_95", m.GCPauseUsec95},
			{"next_gc_bytes", m.NextGCBytes},
			{"gc_total_runs", uint64(m.GCTotalRuns)},
		} {
			fmt.Fprintf(b, "   %-25s %d\n", row.name, row.value)
		}
	}
	if len(r.Topics) == 0 {
		b.WriteString("\nTopics: None\n")
	} else {
		b.WriteString("\nTopics:\n")
	}
	now := time.Now()
	for _, t := range r.Topics {
		fmt.Fprintf(b, "%s[%-15s] depth: %-5d be-depth: %-5d msgs: %-8d e2e%%: %s\n",
			pausedMark(t.Paused, ""), t.Name, t.Depth, t.BackendDepth, t.MessageCount,
			latencyText(t.E2eProcessingLatency))
		for _, c := range t.Channels {
			fmt.Fprintf(b, "%s[%-25s] depth: %-5d be-depth: %-5d inflt: %-4d def: %-4d re-q: %-5d timeout: %-5d msgs: %-8d e2e%%: %s\n",
				pausedMark(c.Paused, "   "), c.Name, c.Depth, c.BackendDepth, c.InFlightCount,
				c.DeferredCount, c.RequeueCount, c.TimeoutCount, c.MessageCount,
				latencyText(c.E2eProcessingLatency))
			for _, cl := range c.Clients {
				fmt.Fprintf(b, "        [%s %-21s] state: %d inflt: %-4d rdy: %-4d fin: %-8d re-q: %-8d msgs: %-8d connected: %s\n",
					cl.Version, clientLabel(cl), cl.State, cl.InFlightCount, cl.ReadyCount,
					cl.FinishCount, cl.RequeueCount, cl.MessageCount, connected(now, cl))
			}
		}
	}
	if len(r.Producers) == 0 {
		b.WriteString("\nProducers: None\n")
		return
	}
	b.WriteString("\nProducers:\n")
	for _, p := range r.Producers {
		var total uint64
		topics := make([]string, 0, len(p.PubCounts))
		for _, pc := range p.PubCounts {
			total += pc.Count
			topics = append(topics, fmt.Sprintf("%s=%d", pc.Topic, pc.Count))
		}
		fmt.Fprintf(b, "   [%s %-21s] msgs: %-8d topics: %s connected: %s\n",
			p.Version, clientLabel(p), total, strings.Join(topics, ","), connected(now, p))
	}
}

// pausedMark is the "*P " that flags a paused topic or channel, or blanks to keep the columns.
func pausedMark(paused bool, indent string) string {
	if paused {
		return indent + "*P "
	}
	return indent + "   "
}

// clientLabel names a client as NSQ's text /stats does: its IDENTIFY hostname, the port it
// connects from (which tells apart the connections of one host) and its user agent.
func clientLabel(c ClientStats) string {
	_, port, _ := net.SplitHostPort(c.RemoteAddress)
	return c.Hostname + ":" + port + " " + c.UserAgent
}

func connected(now time.Time, c ClientStats) time.Duration {
	return now.Sub(time.Unix(c.ConnectTime, 0)).Truncate(time.Second)
}

// latencyText renders a latency summary as "p99=1.2ms, p50=300µs", or nothing when no
// percentile is configured.
func latencyText(q *quantile.Result) string {
	if q == nil {
		return ""
	}
	parts := make([]string, 0, len(q.Percentiles))
	for _, p := range q.Percentiles {
		d := time.Duration(p["value"])
		parts = append(parts, fmt.Sprintf("p%s=%s", strconv.FormatFloat(p["quantile"]*100, 'f', -1, 64), d.Round(time.Microsecond)))
	}
	return strings.Join(parts, ", ")
}

// engineErr maps the engine's administration errors to NSQ's answers; anything else is a
// logged 500.
func engineErr(err error) error {
	switch {
	case errors.Is(err, ErrTopicNotFound):
		return apiErr(http.StatusNotFound, codeTopicNotFound)
	case errors.Is(err, ErrChannelNotFound):
		return apiErr(http.StatusNotFound, codeChanNotFound)
	case errors.Is(err, ErrExiting), errors.Is(err, errTopicExiting):
		return apiErr(http.StatusServiceUnavailable, codeExiting)
	}
	return err
}

func (s *httpAPI) topicCreate(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	topic, err := validTopicParam(r)
	if err != nil {
		return nil, err
	}
	if _, err := s.n.CreateTopic(topic); err != nil {
		return nil, engineErr(err)
	}
	return nil, nil
}

// existingTopicParam returns the topic parameter of the endpoints that act on an existing
// topic. NSQ does not validate the name there: a name that cannot exist is simply not found.
func existingTopicParam(r *http.Request) (string, error) {
	q, err := query(r)
	if err != nil {
		return "", err
	}
	v, ok := q["topic"]
	if !ok {
		return "", apiErr(http.StatusBadRequest, codeMissingTopic)
	}
	return v[0], nil
}

func (s *httpAPI) topicDelete(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	topic, err := existingTopicParam(r)
	if err != nil {
		return nil, err
	}
	return nil, engineErr(s.n.DeleteTopic(topic))
}

func (s *httpAPI) topicEmpty(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	topic, err := validTopicParam(r)
	if err != nil {
		return nil, err
	}
	return nil, engineErr(s.n.EmptyTopic(topic))
}

// topicPause returns the handler of /topic/pause (paused true) or /topic/unpause. The engine
// persists the state before answering, so a restart keeps it.
func (s *httpAPI) topicPause(paused bool) httpapi.Handler {
	return func(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
		topic, err := existingTopicParam(r)
		if err != nil {
			return nil, err
		}
		return nil, engineErr(s.n.PauseTopic(topic, paused))
	}
}

// existingChannel validates the parameters of /channel/* and checks the topic exists, as NSQ
// does before anything else.
func (s *httpAPI) existingChannel(r *http.Request) (topic, channel string, err error) {
	topic, channel, err = topicChannelParams(r)
	if err != nil {
		return "", "", err
	}
	if s.n.Topic(topic) == nil {
		return "", "", apiErr(http.StatusNotFound, codeTopicNotFound)
	}
	return topic, channel, nil
}

func (s *httpAPI) channelCreate(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	topic, channel, err := s.existingChannel(r)
	if err != nil {
		return nil, err
	}
	target, at, err := seekParams(r.URL.Query())
	if err != nil {
		return nil, err
	}
	if at {
		_, err = s.n.CreateChannelAt(topic, channel, target)
		return nil, extErr(err)
	}
	if _, err := s.n.CreateChannel(topic, channel); err != nil {
		return nil, engineErr(err)
	}
	return nil, nil
}

func (s *httpAPI) channelDelete(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	topic, channel, err := s.existingChannel(r)
	if err != nil {
		return nil, err
	}
	return nil, engineErr(s.n.DeleteChannel(topic, channel))
}

func (s *httpAPI) channelEmpty(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	topic, channel, err := s.existingChannel(r)
	if err != nil {
		return nil, err
	}
	return nil, engineErr(s.n.EmptyChannel(topic, channel))
}

// channelPause returns the handler of /channel/pause (paused true) or /channel/unpause.
func (s *httpAPI) channelPause(paused bool) httpapi.Handler {
	return func(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
		topic, channel, err := s.existingChannel(r)
		if err != nil {
			return nil, err
		}
		return nil, engineErr(s.n.PauseChannel(topic, channel, paused))
	}
}

// getConfig is GET /config/:opt, any option by its TOML key.
func (s *httpAPI) getConfig(_ http.ResponseWriter, _ *http.Request, ps httprouter.Params) (any, error) {
	v, ok := cmdline.ValueByKey(s.n.getOpts(), ps.ByName("opt"))
	if !ok {
		return nil, apiErr(http.StatusBadRequest, codeInvalidOption)
	}
	return v, nil
}

// putConfig is PUT /config/:opt for the two options NSQ changes at run time:
// nsqlookupd_tcp_addresses (a JSON array of host:port) and log_level (the bare level name). It
// answers the new value as GET would.
func (s *httpAPI) putConfig(w http.ResponseWriter, r *http.Request, ps httprouter.Params) (any, error) {
	// NSQ bounds the value by --max-msg-size and refuses an empty one, both with 413.
	body, err := readBody(w, r, s.n.getOpts().MaxMsgSize, codeInvalidValue)
	if err != nil {
		return nil, err
	}
	if len(body) == 0 {
		return nil, apiErr(http.StatusRequestEntityTooLarge, codeInvalidValue)
	}
	opt := ps.ByName("opt")
	s.configMu.Lock()
	defer s.configMu.Unlock()
	switch opt {
	case "nsqlookupd_tcp_addresses":
		var addrs []string
		if err := json.Unmarshal(body, &addrs); err != nil {
			return nil, apiErr(http.StatusBadRequest, codeInvalidValue)
		}
		for _, a := range addrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return nil, apiErr(http.StatusBadRequest, codeInvalidValue)
			}
		}
		o := *s.n.getOpts()
		o.LookupdTCPAddresses = addrs
		s.n.opts.Store(&o)
		s.logger.Info("nsqlookupd_tcp_addresses changed", "addresses", addrs)
		// Connect to the new addresses and drop the removed ones now, not at some later tick.
		s.n.lookupdAddressesChanged()
	case "log_level":
		// Trimmed: `echo debug | curl -T -` sends a newline NSQ would refuse.
		if err := s.n.setLogLevel(strings.TrimSpace(string(body))); err != nil {
			return nil, apiErr(http.StatusBadRequest, codeInvalidValue)
		}
		s.logger.Info("log_level changed", "log_level", s.n.getOpts().LogLevel)
	default:
		return nil, apiErr(http.StatusBadRequest, codeInvalidOption)
	}
	v, _ := cmdline.ValueByKey(s.n.getOpts(), opt)
	return v, nil
}

// setBlockRate is PUT /debug/setblockrate?rate=N, runtime.SetBlockProfileRate for
// /debug/pprof/block.
func (s *httpAPI) setBlockRate(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	q, err := query(r)
	if err != nil {
		return nil, err
	}
	rate, err := strconv.Atoi(q.Get("rate"))
	if err != nil {
		return nil, apiErr(http.StatusBadRequest, codeInvalidRate)
	}
	runtime.SetBlockProfileRate(rate)
	s.logger.Info("block profile rate set", "rate", rate)
	return "OK", nil
}

// freeMemory is POST /debug/freememory: a forced GC that returns freed memory to the OS.
func (s *httpAPI) freeMemory(http.ResponseWriter, *http.Request, httprouter.Params) (any, error) {
	debug.FreeOSMemory()
	return nil, nil
}
