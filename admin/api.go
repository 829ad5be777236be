package admin

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/ternmq/tern/internal/httpapi"
	"github.com/ternmq/tern/internal/protocol"
)

// NSQ's API error codes for nsqadmin's endpoints (the "message" of an error answer).
const (
	codeForbidden      = "FORBIDDEN"
	codeInvalidAction  = "INVALID_ACTION"
	codeInvalidTopic   = "INVALID_TOPIC"
	codeInvalidChannel = "INVALID_CHANNEL"
	codeInvalidBody    = "INVALID_BODY"
	codeUpstreamError  = "UPSTREAM_ERROR"
	codeNodeNotFound   = "NODE_NOT_FOUND"
	codeTopicNotFound  = "TOPIC_NOT_FOUND"
	codeChanNotFound   = "CHANNEL_NOT_FOUND"
	codeExiting        = "EXITING"
)

// maxActionBody bounds an action's JSON body: a topic, a channel and an action name.
const maxActionBody = 64 << 10

func apiErr(status int, code string) error { return httpapi.NewError(status, code) }

// withMessage is the body of every /api/* answer: the data and NSQ's "message", which holds
// the warnings of a partial answer.
func withMessage(warnings []error) string {
	if len(warnings) == 0 {
		return ""
	}
	texts := make([]string, len(warnings))
	for i, w := range warnings {
		texts[i] = w.Error()
	}
	return "WARNING: " + strings.Join(texts, "; ")
}

// upstreamErr is NSQ's answer when the cluster could not be read or changed at all.
func upstreamErr(err error) error {
	return apiErr(http.StatusBadGateway, codeUpstreamError+": "+err.Error())
}

// snapshotErr maps a failure to get a snapshot to an API error.
func snapshotErr(err error) error {
	if errors.Is(err, errStopped) {
		return apiErr(http.StatusServiceUnavailable, codeExiting)
	}
	return err // the request's own context ended: nobody is waiting for the answer
}

// snapshotForAPI returns a recent snapshot, or NSQ's 502 when no daemon answered.
func (a *Admin) snapshotForAPI(ctx context.Context) (*snapshot, error) {
	s, err := a.cache.get(ctx, pageMaxAge)
	if err != nil {
		return nil, snapshotErr(err)
	}
	if s.noneAnswered() {
		kind := "nsqd"
		if s.lookupds > 0 && s.lookupdsFailed == s.lookupds {
			kind = "nsqlookupd"
		}
		return nil, upstreamErr(allFailed(kind, s.errs))
	}
	return s, nil
}

// GET /api/topics: the topic names, or with ?inactive=true the topics the lookupds know that
// no node has, with their channels.
func (a *Admin) apiTopics(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	s, err := a.snapshotForAPI(r.Context())
	if err != nil {
		return nil, err
	}
	if r.URL.Query().Get("inactive") == "true" {
		inactive, warnings := a.inactiveTopics(r.Context(), s)
		return struct {
			Topics  map[string][]string `json:"topics"`
			Message string              `json:"message"`
		}{inactive, withMessage(warnings)}, nil
	}
	return struct {
		Topics  []string `json:"topics"`
		Message string   `json:"message"`
	}{s.topicNames(), withMessage(s.errs)}, nil
}

// topicNames lists the cluster's topics: the lookupds' (which include topics created through
// them that no node has yet), or without lookupds the nodes'.
func (s *snapshot) topicNames() []string {
	if s.lookupds > 0 {
		return s.lookupdTopics
	}
	var names []string
	for _, t := range s.topics {
		names = append(names, t.TopicName)
	}
	return names
}

// maxInactiveTopicQueries bounds the inactive topics whose channels are asked for at once.
const maxInactiveTopicQueries = 16

// inactiveTopics returns the topics the lookupds know that no node carries, with the
// channels the lookupds know for each.
func (a *Admin) inactiveTopics(ctx context.Context, s *snapshot) (map[string][]string, []error) {
	out := make(map[string][]string)
	if s.lookupds == 0 {
		return out, nil
	}
	var names []string
	for _, t := range s.lookupdTopics {
		if !slices.ContainsFunc(s.producers, func(p *Producer) bool { return p.Carries(t) }) {
			names = append(names, t)
		}
	}
	chans := make([][]string, len(names))
	errs := make([][]error, len(names))
	// A topic is one request to every lookupd; thousands of inactive topics must not open
	// thousands of connections at once.
	fanOutLimit(names, maxInactiveTopicQueries, func(i int, t string) { chans[i], errs[i] = a.cluster.lookupdChannels(ctx, t) })
	var warnings []error
	for i, t := range names {
		out[t] = chans[i]
		if out[t] == nil {
			out[t] = []string{}
		}
		for _, e := range errs[i] {
			if !containsDaemon(warnings, e) {
				warnings = append(warnings, e)
			}
		}
	}
	return out, warnings
}

// GET /api/topics/:topic: the topic summed over the nodes, with each node's entry and its
// channels, fetched from the nodes that have the topic as NSQ's admin does.
func (a *Admin) apiTopic(_ http.ResponseWriter, r *http.Request, ps httprouter.Params) (any, error) {
	sum, warnings, err := a.topicFromNodes(r.Context(), ps.ByName("topic"), statsQuery{topic: ps.ByName("topic")})
	if err != nil {
		return nil, err
	}
	return struct {
		*TopicStats
		Message string `json:"message"`
	}{sum, withMessage(warnings)}, nil
}

// topicFromNodes fetches one topic, as q selects it, from the nodes the snapshot has it on,
// and sums it. The snapshot's failures come first among the warnings.
func (a *Admin) topicFromNodes(ctx context.Context, topic string, q statsQuery) (*TopicStats, []error, error) {
	s, err := a.snapshotForAPI(ctx)
	if err != nil {
		return nil, nil, err
	}
	t := s.topic(topic)
	if t == nil {
		return nil, nil, apiErr(http.StatusNotFound, codeTopicNotFound)
	}
	var nodes []*Producer
	for _, nt := range t.NodeStats {
		if p := s.producer(nt.Node); p != nil {
			nodes = append(nodes, p)
		}
	}
	stats, errs := a.cluster.nodeStats(ctx, nodes, q)
	if len(nodes) > 0 && len(errs) == len(nodes) {
		return nil, nil, upstreamErr(allFailed("nsqd", errs))
	}
	var answered []*nodeStats
	for _, ns := range stats {
		if ns != nil {
			answered = append(answered, ns)
		}
	}
	sums := aggregateTopics(answered)
	if len(sums) == 0 {
		if q.channel != "" {
			// A node asked for a channel it does not have answers without the topic.
			return nil, nil, apiErr(http.StatusNotFound, codeChanNotFound)
		}
		return nil, nil, apiErr(http.StatusNotFound, codeTopicNotFound)
	}
	return sums[0], append(slices.Clone(s.errs), errs...), nil
}

// GET /api/topics/:topic/:channel: the channel summed over the nodes, with every client.
func (a *Admin) apiChannel(_ http.ResponseWriter, r *http.Request, ps httprouter.Params) (any, error) {
	c, warnings, err := a.channelWithClients(r.Context(), ps.ByName("topic"), ps.ByName("channel"))
	if err != nil {
		return nil, err
	}
	return struct {
		*ChannelStats
		Message string `json:"message"`
	}{c, withMessage(warnings)}, nil
}

// GET /api/topics/:topic/:channel/messages?state=next|deferred|in_flight&n=: each node's
// messages of the channel (Tern's nsqd only), for admin users.
func (a *Admin) apiMessages(_ http.ResponseWriter, r *http.Request, ps httprouter.Params) (any, error) {
	if !a.isAdmin(r) {
		return nil, apiErr(http.StatusForbidden, codeForbidden)
	}
	q := r.URL.Query()
	state := cmp.Or(q.Get("state"), "next")
	if !slices.Contains(peekStates, state) {
		return nil, apiErr(http.StatusBadRequest, "INVALID_STATE")
	}
	n, err := perNodeParam(q, peekPerNode)
	if err != nil {
		return nil, err
	}
	c, warnings, err := a.channelWithClients(r.Context(), ps.ByName("topic"), ps.ByName("channel"))
	if err != nil {
		return nil, err
	}
	found, errs := a.cluster.peek(r.Context(), channelNodes(c), ps.ByName("topic"), ps.ByName("channel"), state, n)
	return struct {
		Nodes   []NodeMessages `json:"nodes"`
		Message string         `json:"message"`
	}{found, withMessage(append(warnings, errs...))}, nil
}

// channelWithClients fetches a channel with its clients from every node that has its topic.
func (a *Admin) channelWithClients(ctx context.Context, topic, channel string) (*ChannelStats, []error, error) {
	t, warnings, err := a.topicFromNodes(ctx, topic, statsQuery{topic: topic, channel: channel, clients: true})
	if err != nil {
		return nil, nil, err
	}
	c := t.Channel(channel)
	if c == nil {
		return nil, nil, apiErr(http.StatusNotFound, codeChanNotFound)
	}
	now := time.Now().Truncate(time.Second)
	for _, cl := range c.Clients {
		cl.ConnectedDuration = now.Sub(time.Unix(cl.ConnectTs, 0))
	}
	slices.SortStableFunc(c.Clients, func(x, y *ClientStats) int { return strings.Compare(x.Hostname, y.Hostname) })
	return c, warnings, nil
}

// GET /api/nodes: every nsqd node.
func (a *Admin) apiNodes(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	s, err := a.snapshotForAPI(r.Context())
	if err != nil {
		return nil, err
	}
	return struct {
		Nodes   []*Producer `json:"nodes"`
		Message string      `json:"message"`
	}{s.producers, withMessage(s.errs)}, nil
}

// nodeDetail is one node's topics, channels and clients.
type nodeDetail struct {
	Node          string        `json:"node"`
	Topics        []*TopicStats `json:"topics"`
	TotalMessages int64         `json:"total_messages"`
	TotalClients  int           `json:"total_clients"`
}

// nodeWithClients fetches one node's stats with its clients; node is its HTTP address.
func (a *Admin) nodeWithClients(ctx context.Context, node string) (*Producer, *nodeDetail, error) {
	s, err := a.snapshotForAPI(ctx)
	if err != nil {
		return nil, nil, err
	}
	p := s.producer(node)
	if p == nil {
		return nil, nil, apiErr(http.StatusNotFound, codeNodeNotFound)
	}
	stats, errs := a.cluster.nodeStats(ctx, []*Producer{p}, statsQuery{clients: true})
	if len(errs) > 0 {
		return nil, nil, upstreamErr(allFailed("nsqd", errs))
	}
	d := &nodeDetail{Node: node, Topics: stats[0].Topics}
	slices.SortFunc(d.Topics, func(x, y *TopicStats) int { return strings.Compare(x.TopicName, y.TopicName) })
	now := time.Now().Truncate(time.Second)
	for _, t := range d.Topics {
		d.TotalMessages += t.MessageCount
		for _, c := range t.Channels {
			d.TotalClients += len(c.Clients)
			for _, cl := range c.Clients {
				cl.ConnectedDuration = now.Sub(time.Unix(cl.ConnectTs, 0))
			}
		}
	}
	return p, d, nil
}

// GET /api/nodes/:node: one node's topics, channels and clients.
func (a *Admin) apiNode(_ http.ResponseWriter, r *http.Request, ps httprouter.Params) (any, error) {
	_, d, err := a.nodeWithClients(r.Context(), ps.ByName("node"))
	if err != nil {
		return nil, err
	}
	return struct {
		*nodeDetail
		Message string `json:"message"`
	}{d, ""}, nil
}

// counterStat is one channel on one node in /api/counter.
type counterStat struct {
	Node         string `json:"node"`
	TopicName    string `json:"topic_name"`
	ChannelName  string `json:"channel_name"`
	MessageCount int64  `json:"message_count"`
}

// GET /api/counter: the message count of every channel on every node.
func (a *Admin) apiCounter(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	s, err := a.snapshotForAPI(r.Context())
	if err != nil {
		return nil, err
	}
	stats := make(map[string]counterStat)
	for _, t := range s.topics {
		for _, c := range t.Channels {
			for _, nc := range c.perNode {
				stats[t.TopicName+":"+c.ChannelName+":"+nc.node] = counterStat{nc.node, t.TopicName, c.ChannelName, nc.messages}
			}
		}
	}
	return struct {
		Stats   map[string]counterStat `json:"stats"`
		Message string                 `json:"message"`
	}{stats, withMessage(s.errs)}, nil
}

// seriesPoint is one sample in GET /api/series.
type seriesPoint struct {
	Time          int64    `json:"time"` // unix milliseconds
	Depth         int64    `json:"depth"`
	InRate        *float64 `json:"in_rate"`        // messages/s in; null for the first sample
	ProcessedRate *float64 `json:"processed_rate"` // messages/s finished; null likewise
}

// GET /api/series?topic=&channel=: the samples behind a chart (the cluster's without a topic).
// Not in NSQ's admin, which has no history of its own.
func (a *Admin) apiSeries(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	q := r.URL.Query()
	k := seriesKey{topic: q.Get("topic"), channel: q.Get("channel")}
	if k.channel != "" && k.topic == "" {
		return nil, apiErr(http.StatusBadRequest, codeInvalidTopic)
	}
	pts := a.sampler.points(k)
	out := make([]seriesPoint, len(pts))
	for i, p := range pts {
		out[i] = seriesPoint{Time: p.at, Depth: p.depth}
		if p.rates {
			in, fin := p.pub, p.fin
			out[i].InRate, out[i].ProcessedRate = &in, &fin
		}
	}
	return struct {
		Topic           string        `json:"topic"`
		Channel         string        `json:"channel"`
		IntervalSeconds float64       `json:"interval_seconds"`
		Points          []seriesPoint `json:"points"`
	}{k.topic, k.channel, a.sampler.interval.Seconds(), out}, nil
}

// isAdmin reports whether the request may change the cluster: anyone when no admin users are
// configured, otherwise only the users named, as the logged-in user or the --acl-http-header
// header tells (a.user).
func (a *Admin) isAdmin(r *http.Request) bool {
	o := a.getOpts()
	if len(o.AdminUsers) == 0 {
		return true
	}
	u := a.user(r)
	return u != "" && slices.Contains(o.AdminUsers, u)
}

// act checks the request may act, carries out act, invalidates the cached snapshot and
// queues the notification. It returns the warnings of a partial success.
func (a *Admin) act(r *http.Request, act action) (actionDone, error) {
	if !a.isAdmin(r) {
		return actionDone{}, apiErr(http.StatusForbidden, codeForbidden)
	}
	if !protocol.IsValidTopicName(act.topic) {
		return actionDone{}, apiErr(http.StatusBadRequest, codeInvalidTopic)
	}
	if act.channel != "" && !protocol.IsValidChannelName(act.channel) {
		return actionDone{}, apiErr(http.StatusBadRequest, codeInvalidChannel)
	}
	if act.node != "" {
		// The admin posts only to nodes of its cluster, never to an address a request names.
		s, err := a.snapshotForAPI(r.Context())
		if err != nil {
			return actionDone{}, err
		}
		if s.producer(act.node) == nil {
			return actionDone{}, apiErr(http.StatusNotFound, codeNodeNotFound)
		}
	}
	// The fan-out does not end with the request: a client that gives up half-way must not
	// leave the action done on some nodes only. Each request to a daemon is bounded anyway.
	done, err := a.cluster.perform(context.WithoutCancel(r.Context()), act)
	a.cache.invalidate()
	var refused *refusedError
	switch {
	case errors.Is(err, errNotFound):
		if act.channel != "" && act.kind != actCreate {
			return actionDone{}, apiErr(http.StatusNotFound, codeChanNotFound)
		}
		return actionDone{}, apiErr(http.StatusNotFound, codeTopicNotFound)
	case errors.Is(err, errMessageNotFound):
		return actionDone{}, apiErr(http.StatusNotFound, codeMessageNotFound)
	case errors.As(err, &refused):
		return actionDone{}, apiErr(http.StatusBadRequest, refused.message)
	case errors.Is(err, errAllFailed):
		return actionDone{}, upstreamErr(err)
	case err != nil:
		return actionDone{}, err
	}
	a.logger.Info("action", "action", act.notification(), "topic", act.topic, "channel", act.channel,
		"node", act.node, "user", a.user(r), "warnings", len(done.warnings))
	if act.kind == actCreate {
		// NSQ's admin notifies the topic's creation, and then the channel's.
		a.notifier.notify(action{kind: actCreate, topic: act.topic}, r)
		if act.channel != "" {
			a.notifier.notify(act, r)
		}
	} else {
		a.notifier.notify(act, r)
	}
	return done, nil
}

// readJSONBody decodes the request's JSON body into v; a bad body is a 400 with the decoder's
// own words (NSQ's), or with code when given.
func readJSONBody(w http.ResponseWriter, r *http.Request, v any, code string) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxActionBody))
	if err == nil {
		err = json.Unmarshal(body, v)
		if err != nil && len(body) == 0 {
			err = io.EOF
		}
	}
	if err != nil {
		if code == "" {
			code = err.Error()
		}
		return apiErr(http.StatusBadRequest, code)
	}
	return nil
}

// actionAnswer is NSQ's answer to an action: {"message":""}, or the warnings.
func actionAnswer(warnings []error) any {
	return struct {
		Message string `json:"message"`
	}{withMessage(warnings)}
}

// POST /api/topics {"topic","channel"}: create a topic, and a channel in it if given.
func (a *Admin) apiCreate(w http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	if !a.isAdmin(r) {
		return nil, apiErr(http.StatusForbidden, codeForbidden)
	}
	var body struct {
		Topic   string `json:"topic"`
		Channel string `json:"channel"`
	}
	if err := readJSONBody(w, r, &body, ""); err != nil {
		return nil, err
	}
	done, err := a.act(r, action{kind: actCreate, topic: body.Topic, channel: body.Channel})
	if err != nil {
		return nil, err
	}
	return actionAnswer(done.warnings), nil
}

// POST /api/topics/:topic and /api/topics/:topic/:channel {"action":"pause"|"unpause"|"empty"}.
func (a *Admin) apiAction(w http.ResponseWriter, r *http.Request, ps httprouter.Params) (any, error) {
	if !a.isAdmin(r) {
		return nil, apiErr(http.StatusForbidden, codeForbidden)
	}
	var body struct {
		Action string `json:"action"`
	}
	if err := readJSONBody(w, r, &body, ""); err != nil {
		return nil, err
	}
	switch body.Action {
	case actPause, actUnpause, actEmpty:
	default:
		return nil, apiErr(http.StatusBadRequest, codeInvalidAction)
	}
	done, err := a.act(r, action{kind: body.Action, topic: ps.ByName("topic"), channel: ps.ByName("channel")})
	if err != nil {
		return nil, err
	}
	return actionAnswer(done.warnings), nil
}

// DELETE /api/topics/:topic and /api/topics/:topic/:channel.
func (a *Admin) apiDelete(_ http.ResponseWriter, r *http.Request, ps httprouter.Params) (any, error) {
	done, err := a.act(r, action{kind: actDelete, topic: ps.ByName("topic"), channel: ps.ByName("channel")})
	if err != nil {
		return nil, err
	}
	return actionAnswer(done.warnings), nil
}

// DELETE /api/nodes/:node {"topic"}: tombstone the topic for the node in every lookupd and
// delete it from the node.
func (a *Admin) apiTombstone(w http.ResponseWriter, r *http.Request, ps httprouter.Params) (any, error) {
	if !a.isAdmin(r) {
		return nil, apiErr(http.StatusForbidden, codeForbidden)
	}
	var body struct {
		Topic string `json:"topic"`
	}
	if err := readJSONBody(w, r, &body, codeInvalidBody); err != nil {
		return nil, err
	}
	done, err := a.act(r, action{kind: actTombstone, topic: body.Topic, node: ps.ByName("node")})
	if err != nil {
		return nil, err
	}
	return actionAnswer(done.warnings), nil
}
