package admin

import (
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"
)

// Dead letters and replay through Tern's nsqd. A channel with max attempts moves a message
// that keeps failing to its dead-letter topic; GET /channel/dead_letters lists a channel's
// dead letters on one node and POST /channel/redrive sends them back to the channel. IDs of
// dead letters are the node's own, so redriving chosen ones goes to their node; redriving all
// goes to every node. POST /channel/seek moves a channel to the oldest retained message, a
// time or a message ID, dropping what it held. Dead letters are the cluster's data: only
// admin users see them, as with a channel's messages (messages.go).

// deadLettersPerNode is how many dead letters the channel page shows of each node.
const deadLettersPerNode = 20

// DeadLetterMeta is what nsqd recorded of a dead letter: where it came from and why.
type DeadLetterMeta struct {
	Topic         string `json:"topic"`
	Channel       string `json:"channel"`
	ID            string `json:"id"`             // the message's ID on its channel
	Timestamp     int64  `json:"timestamp"`      // its publish time, Unix ns
	Attempts      uint16 `json:"attempts"`       // deliveries
	FirstDelivery int64  `json:"first_delivery"` // Unix ns; 0 when never delivered
	LastDelivery  int64  `json:"last_delivery"`  // Unix ns; 0 when never delivered
	Reason        string `json:"reason"`         // "timeout", "requeue" or "expired"
	DeadAt        int64  `json:"dead_at"`        // Unix ns
}

// DeadLetter is one dead letter as nsqd's /channel/dead_letters describes it.
type DeadLetter struct {
	ID   string         `json:"id"` // its ID in the dead-letter topic, on its node
	Meta DeadLetterMeta `json:"meta"`
	Body []byte         `json:"body"` // the original body
}

// NodeDeadLetters are one node's dead letters of a channel.
type NodeDeadLetters struct {
	Node            string       `json:"node"`
	DeadLetterTopic string       `json:"dead_letter_topic"`
	DeadLetters     []DeadLetter `json:"dead_letters"`
}

// deadLetters asks every node for up to n dead letters of the channel.
func (c *cluster) deadLetters(ctx context.Context, nodes []string, topic, channel string, n int) ([]NodeDeadLetters, []error) {
	q := url.Values{"topic": {topic}, "channel": {channel}, "n": {strconv.Itoa(n)}}
	answers, r := callEach[NodeDeadLetters](ctx, c, http.MethodGet, nodes, "/channel/dead_letters?"+q.Encode(), nil, "show dead letters")
	var out []NodeDeadLetters
	for _, na := range answers {
		if na.answer != nil {
			na.answer.Node = na.node
			if na.answer.DeadLetters == nil {
				na.answer.DeadLetters = []DeadLetter{}
			}
			out = append(out, *na.answer)
		}
	}
	return out, r.errs
}

// redriveAnswer is nsqd's answer to POST /channel/redrive.
type redriveAnswer struct {
	Redriven int `json:"redriven"`
}

// isMessageID reports whether id is a message ID as nsqd writes it: 16 hex digits.
func isMessageID(id string) bool {
	_, err := hex.DecodeString(id)
	return len(id) == 16 && err == nil
}

// seekQuery turns where a channel is to go into nsqd's query: to "oldest", "time" or "id",
// with at the time or the ID. A time is RFC 3339, a Unix time (seconds, milliseconds or
// nanoseconds, as nsqd tells them apart), or a duration with its unit ("2h", "1d") meaning
// that long ago.
func seekQuery(to, at string, now time.Time) (url.Values, error) {
	at = strings.TrimSpace(at)
	switch to {
	case "oldest":
		return url.Values{"to": {"oldest"}}, nil
	case "id":
		if !isMessageID(at) {
			return nil, errors.New("a message ID is 16 hexadecimal digits")
		}
		return url.Values{"id": {strings.ToLower(at)}}, nil
	case "time":
		if t, err := time.Parse(time.RFC3339Nano, at); err == nil {
			return url.Values{"time": {t.UTC().Format(time.RFC3339Nano)}}, nil
		}
		if n, err := strconv.ParseInt(at, 10, 64); err == nil && n >= 0 {
			return url.Values{"time": {at}}, nil
		}
		if at != "" && strings.ContainsAny(at, "smhd") {
			if ms, err := parseDurationMs("time", at); err == nil {
				t := now.Add(-time.Duration(ms) * time.Millisecond)
				return url.Values{"time": {t.UTC().Format(time.RFC3339Nano)}}, nil
			}
		}
		return nil, errors.New("a time is RFC 3339 (2006-01-02T15:04:05Z), Unix seconds, or how long ago (2h, 1d)")
	}
	return nil, errors.New(`where to move the channel: "oldest", "time" or "id"`)
}

// seekText says where a seek goes, for the confirmation.
func seekText(q url.Values) string {
	switch {
	case q.Get("to") == "oldest":
		return "the oldest message its topic retains"
	case q.Get("id") != "":
		return "message " + q.Get("id")
	}
	return "the first message published at or after " + q.Get("time")
}

// codeMessageNotFound answers a seek to an ID no node holds.
const codeMessageNotFound = "MESSAGE_NOT_FOUND"

// errMessageNotFound is perform's error for a seek to an ID no node holds.
var errMessageNotFound = errors.New("no node has the message")

// GET /api/topics/:topic/:channel/dead_letters?n=: each node's dead letters of the channel
// (Tern's nsqd only), for admin users.
func (a *Admin) apiDeadLetters(_ http.ResponseWriter, r *http.Request, ps httprouter.Params) (any, error) {
	if !a.isAdmin(r) {
		return nil, apiErr(http.StatusForbidden, codeForbidden)
	}
	n, err := perNodeParam(r.URL.Query(), 100)
	if err != nil {
		return nil, err
	}
	c, warnings, err := a.channelWithClients(r.Context(), ps.ByName("topic"), ps.ByName("channel"))
	if err != nil {
		return nil, err
	}
	found, errs := a.cluster.deadLetters(r.Context(), channelNodes(c), ps.ByName("topic"), ps.ByName("channel"), n)
	if found == nil {
		found = []NodeDeadLetters{}
	}
	return struct {
		Nodes   []NodeDeadLetters `json:"nodes"`
		Message string            `json:"message"`
	}{found, withMessage(append(warnings, errs...))}, nil
}

// perNodeParam reads the n= of the message APIs, how many each node shows: def when absent,
// 1 to 1000 (nsqd's bound) when given.
func perNodeParam(q url.Values, def int) (int, error) {
	v := q.Get("n")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		return 0, apiErr(http.StatusBadRequest, "INVALID_N")
	}
	return n, nil
}

// channelNodes lists the nodes that have the channel.
func channelNodes(c *ChannelStats) []string {
	nodes := make([]string, 0, len(c.NodeStats))
	for _, nc := range c.NodeStats {
		nodes = append(nodes, nc.Node)
	}
	return nodes
}

// POST /api/topics/:topic/:channel/redrive {"node","ids"}: send the dead letters with the
// given IDs on node back to the channel; without ids (or with an empty body), every dead
// letter on every node. The answer counts them: {"redriven":N,"message":""}.
func (a *Admin) apiRedrive(w http.ResponseWriter, r *http.Request, ps httprouter.Params) (any, error) {
	if !a.isAdmin(r) {
		return nil, apiErr(http.StatusForbidden, codeForbidden)
	}
	var body struct {
		Node string   `json:"node"`
		IDs  []string `json:"ids"`
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxActionBody))
	if err != nil {
		return nil, apiErr(http.StatusBadRequest, codeInvalidBody)
	}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &body); err != nil {
			return nil, apiErr(http.StatusBadRequest, codeInvalidBody)
		}
	}
	if len(body.IDs) > 0 && body.Node == "" {
		return nil, apiErr(http.StatusBadRequest, "INVALID_NODE")
	}
	for _, id := range body.IDs {
		if !isMessageID(id) {
			return nil, apiErr(http.StatusBadRequest, "INVALID_ID")
		}
	}
	done, err := a.act(r, action{kind: actRedrive, topic: ps.ByName("topic"), channel: ps.ByName("channel"), node: body.Node, ids: body.IDs})
	if err != nil {
		return nil, err
	}
	return struct {
		Redriven int    `json:"redriven"`
		Message  string `json:"message"`
	}{done.redriven, withMessage(done.warnings)}, nil
}

// POST /api/topics/:topic/:channel/seek {"to":"oldest"} | {"time":T} | {"id":ID}: move the
// channel on every node (for an ID, on the node that holds the message). What the channel
// held is dropped.
func (a *Admin) apiSeek(w http.ResponseWriter, r *http.Request, ps httprouter.Params) (any, error) {
	if !a.isAdmin(r) {
		return nil, apiErr(http.StatusForbidden, codeForbidden)
	}
	var body struct {
		To   string `json:"to"`
		Time string `json:"time"`
		ID   string `json:"id"`
	}
	if err := readJSONBody(w, r, &body, codeInvalidBody); err != nil {
		return nil, err
	}
	to, at := body.To, ""
	switch {
	case body.To == "oldest" && body.Time == "" && body.ID == "":
	case body.To == "" && body.Time != "" && body.ID == "":
		to, at = "time", body.Time
	case body.To == "" && body.Time == "" && body.ID != "":
		to, at = "id", body.ID
	default:
		return nil, apiErr(http.StatusBadRequest, "INVALID_SEEK")
	}
	q, err := seekQuery(to, at, time.Now())
	if err != nil {
		return nil, apiErr(http.StatusBadRequest, "INVALID_SEEK")
	}
	done, err := a.act(r, action{kind: actSeek, topic: ps.ByName("topic"), channel: ps.ByName("channel"), seek: q})
	if err != nil {
		return nil, err
	}
	return actionAnswer(done.warnings), nil
}

// deadLetterRow is one dead letter on the channel page.
type deadLetterRow struct {
	DeadLetter
	Node          string
	Preview       string
	Binary        bool
	Age           time.Duration // since it was published
	DeadFor       time.Duration // since it was dead-lettered
	FirstDelivery string        // "" when never delivered
	LastDelivery  string
}

func newDeadLetterRow(node string, dl DeadLetter, now time.Time) deadLetterRow {
	r := deadLetterRow{DeadLetter: dl, Node: node,
		Age: now.Sub(time.Unix(0, dl.Meta.Timestamp)), DeadFor: now.Sub(time.Unix(0, dl.Meta.DeadAt))}
	r.Preview, r.Binary = bodyPreview(dl.Body)
	if dl.Meta.FirstDelivery != 0 {
		r.FirstDelivery = time.Unix(0, dl.Meta.FirstDelivery).UTC().Format("2006-01-02 15:04:05 UTC")
	}
	if dl.Meta.LastDelivery != 0 {
		r.LastDelivery = time.Unix(0, dl.Meta.LastDelivery).UTC().Format("2006-01-02 15:04:05 UTC")
	}
	return r
}

// deadLetterRows are the rows of every node's dead letters, most recently dead first.
func deadLetterRows(found []NodeDeadLetters, now time.Time) []deadLetterRow {
	var rows []deadLetterRow
	for _, nd := range found {
		for _, dl := range nd.DeadLetters {
			rows = append(rows, newDeadLetterRow(nd.Node, dl, now))
		}
	}
	slices.SortStableFunc(rows, func(x, y deadLetterRow) int { return cmp.Compare(y.Meta.DeadAt, x.Meta.DeadAt) })
	return rows
}

// extensionNodes splits errs into the nodes that lack an extension (NSQ's nsqd, said on the
// page rather than as a warning, since nothing is wrong with them) and the other failures.
func extensionNodes(errs []error) (missing []string, others []error) {
	for _, e := range errs {
		var ne *noExtensionError
		var de *daemonError
		if errors.As(e, &ne) && errors.As(e, &de) {
			missing = append(missing, de.addr)
			continue
		}
		others = append(others, e)
	}
	return missing, others
}
