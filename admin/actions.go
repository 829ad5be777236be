package admin

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"sync"
)

// An action changes the cluster. Each is carried out as NSQ's admin does it, with one
// improvement where NSQ's does nothing or reports success for a failure (listed in the
// README's compatibility notes):
//
//   - create: the lookupds register the topic (and channel), and every node that has the
//     topic creates the channel. Without lookupds every configured nsqd creates the topic
//     (and channel); NSQ's admin creates nothing there.
//   - delete: the nodes that have the topic are found first, then the lookupds and those
//     nodes delete it (or the channel).
//   - pause, unpause, empty: every node that has the topic does it to the topic or channel.
//   - tombstone: the lookupds tombstone the topic for one node, and that node deletes it.
//
// Tern's extensions, which NSQ's admin does not have (settings.go, deadletters.go):
//
//   - settings: every node that has the topic changes the topic's (or channel's) settings.
//   - redrive: one node sends chosen dead letters back to the channel, or every node that has
//     the topic sends all of them.
//   - seek: every node that has the topic moves the channel; to a message ID, only the node
//     that holds the message does, and the others' MESSAGE_NOT_FOUND is no failure.
//
// A node without the extension (NSQ's nsqd) fails with a noExtensionError, a warning.
//
// Every daemon is asked at once. A daemon that fails is a warning beside the others'
// success; an action no daemon carried out is an error, as is one with nothing to act on.

// Action kinds, as the API's "action" field and the page forms name them.
const (
	actCreate    = "create"
	actDelete    = "delete"
	actPause     = "pause"
	actUnpause   = "unpause"
	actEmpty     = "empty"
	actTombstone = "tombstone"
	actSettings  = "settings"
	actRedrive   = "redrive"
	actSeek      = "seek"
)

type action struct {
	kind           string
	topic, channel string
	node           string // the node to tombstone the topic on, or to redrive ids on

	settings []byte     // settings: the JSON object of the settings to change
	ids      []string   // redrive: the dead letters' IDs on node; none for all of them
	seek     url.Values // seek: nsqd's to=oldest, time= or id=
}

// actionDone is what an action did: the failures of single daemons, and for a redrive how
// many dead letters went back.
type actionDone struct {
	warnings []error
	redriven int
}

// notification is the name NSQ's admin gives the action in its notifications:
// "pause_channel", "tombstone_topic_producer", ...
func (a action) notification() string {
	if a.kind == actTombstone {
		return "tombstone_topic_producer"
	}
	if a.channel != "" {
		return a.kind + "_channel"
	}
	return a.kind + "_topic"
}

// errNotFound is returned for an action on a topic no node has.
var errNotFound = errors.New("no node has the topic")

// perform carries out act. It returns the failures of single daemons as warnings when at
// least one daemon did what was asked, and otherwise an error.
func (c *cluster) perform(ctx context.Context, act action) (actionDone, error) {
	q := url.Values{"topic": {act.topic}}
	object := "topic"
	if act.channel != "" {
		q.Set("channel", act.channel)
		object = "channel"
	}
	query := q.Encode()
	lookupds := c.options().NSQLookupdHTTPAddresses
	var out outcome

	switch act.kind {
	case actCreate:
		if len(lookupds) == 0 {
			nodes, errs := c.producers(ctx)
			out.warn(errs)
			addrs := httpAddresses(nodes)
			out.add(c.postAll(ctx, addrs, "/topic/create?"+url.Values{"topic": {act.topic}}.Encode(), nsqdError))
			if act.channel != "" {
				out.add(c.postAll(ctx, addrs, "/channel/create?"+query, nsqdError))
			}
			return out.result()
		}
		out.add(c.postAll(ctx, lookupds, "/topic/create?"+url.Values{"topic": {act.topic}}.Encode(), lookupdError))
		if act.channel != "" {
			out.add(c.postAll(ctx, lookupds, "/channel/create?"+query, lookupdError))
			// Nodes that have the topic create the channel now; the others will when they
			// create the topic, since the lookupds then list the channel for it.
			nodes, errs := c.topicProducers(ctx, act.topic)
			out.warn(errs)
			out.add(c.postAll(ctx, httpAddresses(nodes), "/channel/create?"+query, nsqdError))
		}
		return out.result()

	case actDelete, actPause, actUnpause, actEmpty:
		nodes, errs := c.topicProducers(ctx, act.topic)
		out.warn(errs)
		if act.kind == actDelete && len(lookupds) > 0 {
			out.add(c.postAll(ctx, lookupds, "/"+object+"/delete?"+query, lookupdError))
		}
		out.add(c.postAll(ctx, httpAddresses(nodes), "/"+object+"/"+act.kind+"?"+query, nsqdError))
		return out.result()

	case actTombstone:
		tq := url.Values{"topic": {act.topic}, "node": {act.node}}.Encode()
		out.add(c.postAll(ctx, lookupds, "/topic/tombstone?"+tq, lookupdError))
		out.add(c.postAll(ctx, []string{act.node}, "/topic/delete?"+url.Values{"topic": {act.topic}}.Encode(), nsqdError))
		return out.result()

	case actSettings, actRedrive, actSeek:
		return c.performExtension(ctx, act, query)
	}
	return actionDone{}, errors.New("unknown action " + act.kind)
}

// performExtension carries out the actions of Tern's extensions.
func (c *cluster) performExtension(ctx context.Context, act action, query string) (actionDone, error) {
	var out outcome
	nodes := []string{act.node}
	if act.node == "" {
		producers, errs := c.topicProducers(ctx, act.topic)
		out.warn(errs)
		nodes = httpAddresses(producers)
	}
	// A channel (or topic) no node has is a 404, as the API's other actions on it are.
	var r postResult
	switch act.kind {
	case actSettings:
		_, r = callEach[struct{}](ctx, c, http.MethodPost, nodes, settingsPath(act.topic, act.channel), act.settings, "change settings")
		if msg := refusalOfAll(r); msg != "" {
			return actionDone{}, &refusedError{msg}
		}
		out.add(r)
	case actRedrive:
		q := query
		for _, id := range act.ids {
			q += "&" + url.Values{"id": {id}}.Encode()
		}
		var answers []nodeAnswer[redriveAnswer]
		answers, r = callEach[redriveAnswer](ctx, c, http.MethodPost, nodes, "/channel/redrive?"+q, nil, "redrive dead letters")
		out.add(r)
		for _, a := range answers {
			if a.answer != nil {
				out.redriven += a.answer.Redriven
			}
		}
	case actSeek:
		path := "/channel/seek?" + query + "&" + act.seek.Encode()
		_, r = callEach[struct{}](ctx, c, http.MethodPost, nodes, path, nil, "move a channel")
		if act.seek.Get("id") != "" {
			// Only the node that published the message has it.
			var others []error
			for _, e := range r.errs {
				if refusal(e, http.StatusNotFound) != codeMessageNotFound {
					others = append(others, e)
				}
			}
			if !r.ok && len(others) == 0 && len(r.errs) > 0 {
				return actionDone{}, errMessageNotFound
			}
			r.errs = others
		}
		if msg := refusalOfAll(r); msg != "" {
			return actionDone{}, &refusedError{msg}
		}
		out.add(r)
	}
	if !r.ok && len(r.errs) > 0 && !slices.ContainsFunc(r.errs, func(e error) bool {
		m := refusal(e, http.StatusNotFound)
		return m != codeTopicNotFound && m != codeChanNotFound
	}) {
		return actionDone{}, errNotFound
	}
	return out.result()
}

// refusedError is an extension's request every node refused alike (400 INVALID_SETTINGS:
// ..., say): the request is wrong, not the nodes, and the API answers 400 with nsqd's message.
type refusedError struct{ message string }

func (e *refusedError) Error() string { return e.message }

// refusalOfAll returns nsqd's message when no node did what r asked and every one answered
// 400 with that same message, or "".
func refusalOfAll(r postResult) string {
	if r.ok || len(r.errs) == 0 {
		return ""
	}
	msg := refusal(r.errs[0], http.StatusBadRequest)
	if msg == "" || !allRefused(r.errs, http.StatusBadRequest, msg) {
		return ""
	}
	return msg
}

// postResult is the outcome of one fan-out: whether any daemon did what was asked, and the
// ones that failed.
type postResult struct {
	ok   bool
	errs []error
}

// outcome sums an action's fan-outs.
type outcome struct {
	ok       bool
	errs     []error
	redriven int
}

func (o *outcome) add(r postResult) {
	o.ok = o.ok || r.ok
	o.errs = append(o.errs, r.errs...)
}

// warn records failures met on the way, such as a lookupd that could not say which nodes
// have the topic.
func (o *outcome) warn(errs []error) { o.errs = append(o.errs, errs...) }

// result is perform's answer: every failure is a warning if some daemon did what was asked;
// otherwise they are the error, or there was nothing to act on.
func (o *outcome) result() (actionDone, error) {
	switch {
	case o.ok:
		return actionDone{warnings: o.errs, redriven: o.redriven}, nil
	case len(o.errs) == 0:
		return actionDone{}, errNotFound
	}
	kind := "nsqd"
	var de *daemonError
	if errors.As(o.errs[0], &de) {
		kind = de.kind
	}
	return actionDone{}, allFailed(kind, o.errs)
}

func httpAddresses(nodes []*Producer) []string {
	addrs := make([]string, len(nodes))
	for i, p := range nodes {
		addrs[i] = p.HTTPAddress()
	}
	return addrs
}

// postAll POSTs path to every address at once.
func (c *cluster) postAll(ctx context.Context, addrs []string, path string, wrap func(string, error) error) postResult {
	var mu sync.Mutex
	var r postResult
	fanOut(addrs, func(_ int, addr string) {
		err := c.client.post(ctx, addr, path)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			r.errs = append(r.errs, wrap(addr, err))
		} else {
			r.ok = true
		}
	})
	return r
}
