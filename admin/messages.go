package admin

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"
)

// Looking at a channel's messages through Tern's nsqd (GET /channel/peek): the next ones,
// the deferred ones or those in flight, per node. NSQ's nsqd has no such endpoint; its
// nodes are named in a warning. Message bodies are the cluster's data, so only admin users
// (when --admin-user is set) see them, on the channel page and in the API.

// peekStates are the states the page and the API offer, in the order of the page's tabs.
var peekStates = []string{"next", "deferred", "in_flight"}

// peekPerNode is how many messages the channel page shows of each node.
const peekPerNode = 10

// maxBodyPreview bounds how much of a body the page shows.
const maxBodyPreview = 300

// PeekedMessage is one message as nsqd's /channel/peek describes it.
type PeekedMessage struct {
	ID        string `json:"id"`
	Timestamp int64  `json:"timestamp"`
	Attempts  uint16 `json:"attempts"`
	State     string `json:"state"`
	Due       int64  `json:"due,omitempty"`
	Owner     string `json:"owner,omitempty"`
	Body      []byte `json:"body"`
}

// NodeMessages are one node's messages of a channel.
type NodeMessages struct {
	Node     string          `json:"node"`
	Messages []PeekedMessage `json:"messages"`
}

// errNoPeek says a node cannot show its messages: an NSQ nsqd, or an older Tern.
var errNoPeek = errors.New("cannot show its messages (GET /channel/peek needs Tern's nsqd)")

// peek asks every node for up to n messages of state in the channel.
func (c *cluster) peek(ctx context.Context, nodes []string, topic, channel, state string, n int) ([]NodeMessages, []error) {
	out := make([]NodeMessages, len(nodes))
	errs := make([]error, len(nodes))
	q := url.Values{"topic": {topic}, "channel": {channel}, "state": {state}, "n": {strconv.Itoa(n)}}
	fanOut(nodes, func(i int, node string) {
		var resp struct {
			Messages []PeekedMessage `json:"messages"`
		}
		out[i].Node = node
		if err := c.client.getJSON(ctx, node, "/channel/peek?"+q.Encode(), &resp); err != nil {
			if isMissingEndpoint(err) {
				err = errNoPeek
			}
			errs[i] = nsqdError(node, err)
			return
		}
		out[i].Messages = resp.Messages
	})
	return out, compact(errs)
}

// messageRow is one message on the channel page.
type messageRow struct {
	PeekedMessage
	Node    string
	Preview string        // the body as text, cut at maxBodyPreview
	Binary  bool          // the body is not UTF-8 text: Preview is a note instead
	DueIn   time.Duration // until its deadline or due time, for deferred and in-flight ones
	Age     time.Duration // since it was published
}

func newMessageRow(node string, m PeekedMessage, now time.Time) messageRow {
	r := messageRow{PeekedMessage: m, Node: node, Age: now.Sub(time.Unix(0, m.Timestamp))}
	if m.Due != 0 {
		r.DueIn = time.Unix(0, m.Due).Sub(now)
	}
	r.Preview, r.Binary = bodyPreview(m.Body)
	return r
}

// bodyPreview is a body as the pages show it: text cut at maxBodyPreview, or a note of its
// size when it is not UTF-8 text (binary).
func bodyPreview(body []byte) (preview string, binary bool) {
	if !utf8.Valid(body) {
		return fmt.Sprintf("%d bytes of binary data", len(body)), true
	}
	if len(body) > maxBodyPreview {
		cut := maxBodyPreview
		for cut > 0 && !utf8.RuneStart(body[cut]) {
			cut--
		}
		return string(body[:cut]) + "…", false
	}
	return string(body), false
}
