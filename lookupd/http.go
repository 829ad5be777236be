package lookupd

import (
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/url"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ternmq/tern/internal/httpapi"
	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/version"
)

// NSQ's API error codes for nsqlookupd's endpoints (the "message" of an error answer).
const (
	codeInvalidRequest = "INVALID_REQUEST"
	codeMissingTopic   = "MISSING_ARG_TOPIC"
	codeInvalidTopic   = "INVALID_ARG_TOPIC"
	codeMissingChannel = "MISSING_ARG_CHANNEL"
	codeInvalidChannel = "INVALID_ARG_CHANNEL"
	codeMissingNode    = "MISSING_ARG_NODE"
	codeTopicNotFound  = "TOPIC_NOT_FOUND"
	codeChanNotFound   = "CHANNEL_NOT_FOUND"
)

func apiErr(status int, code string) error { return httpapi.NewError(status, code) }

// newHTTPServer returns the server for handler h. Every limit is set: without them one
// connection that sends half a header, or never finishes its request, holds a goroutine
// forever.
func (l *Lookupd) newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.timeouts.httpReadHeader,
		ReadTimeout:       l.timeouts.httpRead,
		IdleTimeout:       l.timeouts.httpIdle,
		ErrorLog:          slog.NewLogLogger(l.logger.Handler(), slog.LevelDebug),
	}
}

// httpAPI is nsqlookupd's HTTP API: NSQ 1.3's endpoints with NSQ's parameters, answers and
// error codes (reference §3.3), plus GET /metrics. Parameters come from the query string only,
// as in NSQ.
type httpAPI struct {
	l *Lookupd
}

// newHTTPAPI builds the API's router.
func (l *Lookupd) newHTTPAPI() http.Handler {
	s := &httpAPI{l: l}
	logger := l.logger.With("component", "http")
	rt := httpapi.NewRouter(httpapi.Config{Logger: logger, WriteTimeout: httpWriteTimeout})

	rt.Handle("GET", "/ping", s.ping)
	rt.Handle("GET", "/info", s.info)
	rt.Handle("GET", "/debug", s.debug)
	rt.Handle("GET", "/lookup", s.lookup)
	rt.Handle("GET", "/topics", s.topics)
	rt.Handle("GET", "/channels", s.channels)
	rt.Handle("GET", "/nodes", s.nodes)

	rt.Handle("POST", "/topic/create", s.topicCreate)
	rt.Handle("POST", "/topic/delete", s.topicDelete)
	rt.Handle("POST", "/channel/create", s.channelCreate)
	rt.Handle("POST", "/channel/delete", s.channelDelete)
	rt.Handle("POST", "/topic/tombstone", s.topicTombstone)

	rt.Handler("GET", "/metrics", promhttp.HandlerFor(l.registry, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelError),
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
	return rt
}

// ping answers OK, or 500 once shutdown has begun (NSQ's lookupd always answers OK; a load
// balancer is better told to stop sending).
func (s *httpAPI) ping(http.ResponseWriter, *http.Request, httprouter.Params) (any, error) {
	if s.l.exiting.Load() {
		return httpapi.Status{Code: http.StatusInternalServerError, Body: "NOK - exiting"}, nil
	}
	return protocol.OK, nil
}

func (s *httpAPI) info(http.ResponseWriter, *http.Request, httprouter.Params) (any, error) {
	return struct {
		Version string `json:"version"`
	}{version.Binary}, nil
}

// query parses the query string. A malformed one is NSQ's 400 INVALID_REQUEST.
func query(r *http.Request) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, apiErr(http.StatusBadRequest, codeInvalidRequest)
	}
	return q, nil
}

// param returns the first value of key, or a 400 with missing when the key is absent. A
// present but empty value is returned as it is: NSQ tells "missing" from "invalid" by
// presence alone.
func param(q url.Values, key, missing string) (string, error) {
	v, ok := q[key]
	if !ok {
		return "", apiErr(http.StatusBadRequest, missing)
	}
	return v[0], nil
}

// topicParam returns the topic parameter, present but not validated.
func topicParam(r *http.Request) (string, url.Values, error) {
	q, err := query(r)
	if err != nil {
		return "", nil, err
	}
	topic, err := param(q, "topic", codeMissingTopic)
	return topic, q, err
}

// topicChannelParams returns valid topic and channel parameters, with NSQ's codes.
func topicChannelParams(r *http.Request) (topic, channel string, err error) {
	topic, q, err := topicParam(r)
	if err != nil {
		return "", "", err
	}
	if !protocol.IsValidTopicName(topic) {
		return "", "", apiErr(http.StatusBadRequest, codeInvalidTopic)
	}
	channel, err = param(q, "channel", codeMissingChannel)
	if err != nil {
		return "", "", err
	}
	if !protocol.IsValidChannelName(channel) {
		return "", "", apiErr(http.StatusBadRequest, codeInvalidChannel)
	}
	return topic, channel, nil
}

// lookupResponse is GET /lookup.
type lookupResponse struct {
	Channels  []string   `json:"channels"`
	Producers []peerInfo `json:"producers"`
}

// lookup is GET /lookup?topic=T: the topic's channels and its producers that are active and
// not tombstoned. A topic with no registration at all is 404 TOPIC_NOT_FOUND; one with a
// registration and no producers is 200 with an empty list.
func (s *httpAPI) lookup(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	topic, _, err := topicParam(r)
	if err != nil {
		return nil, err
	}
	channels, producers, ok := s.l.db.lookup(topic, time.Now(), s.l.opts.InactiveProducerTimeout, s.l.opts.TombstoneLifetime)
	if !ok {
		return nil, apiErr(http.StatusNotFound, codeTopicNotFound)
	}
	return lookupResponse{Channels: channels, Producers: producers}, nil
}

func (s *httpAPI) topics(http.ResponseWriter, *http.Request, httprouter.Params) (any, error) {
	return struct {
		Topics []string `json:"topics"`
	}{s.l.db.topicNames()}, nil
}

// channels is GET /channels?topic=T. The topic is not validated and an unknown one has no
// channels, as in NSQ.
func (s *httpAPI) channels(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	topic, _, err := topicParam(r)
	if err != nil {
		return nil, err
	}
	return struct {
		Channels []string `json:"channels"`
	}{s.l.db.channelNames(topic)}, nil
}

// nodes is GET /nodes: every active nsqd with its topics and a tombstone flag per topic.
func (s *httpAPI) nodes(http.ResponseWriter, *http.Request, httprouter.Params) (any, error) {
	return struct {
		Producers []nodeInfo `json:"producers"`
	}{s.l.db.nodes(time.Now(), s.l.opts.InactiveProducerTimeout, s.l.opts.TombstoneLifetime)}, nil
}

func (s *httpAPI) debug(http.ResponseWriter, *http.Request, httprouter.Params) (any, error) {
	return s.l.db.debug(), nil
}

// topicCreate is POST /topic/create?topic=T: a registration with no producer, so that
// consumers find the topic before any nsqd has it.
func (s *httpAPI) topicCreate(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	topic, _, err := topicParam(r)
	if err != nil {
		return nil, err
	}
	if !protocol.IsValidTopicName(topic) {
		return nil, apiErr(http.StatusBadRequest, codeInvalidTopic)
	}
	s.l.logger.Info("topic created", "topic", topic)
	s.l.db.addTopic(topic)
	return nil, nil
}

// topicDelete is POST /topic/delete?topic=T: the topic's registration and its channels' go,
// producers and all. The name is not validated and an unknown topic is no error, as in NSQ.
// Only the registry changes; the nsqd nodes keep the topic (nsqadmin deletes it there).
func (s *httpAPI) topicDelete(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	topic, _, err := topicParam(r)
	if err != nil {
		return nil, err
	}
	s.l.logger.Info("topic deleted", "topic", topic)
	s.l.db.deleteTopic(topic)
	return nil, nil
}

// channelCreate is POST /channel/create?topic=T&channel=C: registrations for the channel and
// its topic, with no producer.
func (s *httpAPI) channelCreate(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	topic, channel, err := topicChannelParams(r)
	if err != nil {
		return nil, err
	}
	s.l.logger.Info("channel created", "topic", topic, "channel", channel)
	s.l.db.addChannel(topic, channel)
	return nil, nil
}

// channelDelete is POST /channel/delete?topic=T&channel=C; 404 CHANNEL_NOT_FOUND when the
// channel has no registration.
func (s *httpAPI) channelDelete(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	topic, channel, err := topicChannelParams(r)
	if err != nil {
		return nil, err
	}
	if !s.l.db.deleteChannel(topic, channel) {
		return nil, apiErr(http.StatusNotFound, codeChanNotFound)
	}
	s.l.logger.Info("channel deleted", "topic", topic, "channel", channel)
	return nil, nil
}

// topicTombstone is POST /topic/tombstone?topic=T&node=ADDR:HTTP_PORT: the producer with that
// broadcast address and HTTP port is hidden from /lookup for T for --tombstone-lifetime. No
// match is no error, as in NSQ.
func (s *httpAPI) topicTombstone(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	topic, q, err := topicParam(r)
	if err != nil {
		return nil, err
	}
	node, err := param(q, "node", codeMissingNode)
	if err != nil {
		return nil, err
	}
	n := s.l.db.tombstone(topic, node, time.Now())
	s.l.logger.Info("producer tombstoned", "topic", topic, "node", node, "matched", n)
	return nil, nil
}
