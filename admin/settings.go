package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/ternmq/tern/internal/protocol"
)

// Tern's per-topic and per-channel settings (nsqd's GET|POST /topic/settings and
// /channel/settings): message TTL, quotas and retention on a topic; max attempts, a
// dead-letter topic and TTL on a channel. Every node keeps its own, so the admin shows them
// per node and changes them on every node that has the topic, as it pauses a topic. NSQ's
// nsqd has none; its nodes are named in a warning when a change is asked of them.

// TopicSettings are a topic's settings on one node, as nsqd's /topic/settings and /stats
// describe them. Durations are in milliseconds; a zero value is off.
type TopicSettings struct {
	MessageTTLMs      int64  `json:"message_ttl_ms,omitempty"`
	DeadLetterExpired bool   `json:"dead_letter_expired,omitempty"`
	MaxMessages       int64  `json:"max_messages,omitempty"`
	MaxBytes          int64  `json:"max_bytes,omitempty"`
	QuotaPolicy       string `json:"quota_policy,omitempty"` // "reject" ("" means it) or "drop_oldest"
	RetainMs          int64  `json:"retain_ms,omitempty"`
	RetainBytes       int64  `json:"retain_bytes,omitempty"`
}

// ChannelSettings are a channel's settings on one node.
type ChannelSettings struct {
	MaxAttempts       int    `json:"max_attempts,omitempty"`
	DeadLetterTopic   string `json:"dead_letter_topic,omitempty"` // "" means "<topic>.dead"
	MessageTTLMs      int64  `json:"message_ttl_ms,omitempty"`
	DeadLetterExpired bool   `json:"dead_letter_expired,omitempty"`
}

// topicSettingsPatch is the body of a change: the fields present are set, the others stay.
// The admin reads it with unknown fields refused, as nsqd does, so that a misspelt setting is
// an error before any node is asked.
type topicSettingsPatch struct {
	MessageTTLMs      *int64  `json:"message_ttl_ms,omitempty"`
	DeadLetterExpired *bool   `json:"dead_letter_expired,omitempty"`
	MaxMessages       *int64  `json:"max_messages,omitempty"`
	MaxBytes          *int64  `json:"max_bytes,omitempty"`
	QuotaPolicy       *string `json:"quota_policy,omitempty"`
	RetainMs          *int64  `json:"retain_ms,omitempty"`
	RetainBytes       *int64  `json:"retain_bytes,omitempty"`
}

type channelSettingsPatch struct {
	MaxAttempts       *int    `json:"max_attempts,omitempty"`
	DeadLetterTopic   *string `json:"dead_letter_topic,omitempty"`
	MessageTTLMs      *int64  `json:"message_ttl_ms,omitempty"`
	DeadLetterExpired *bool   `json:"dead_letter_expired,omitempty"`
}

// codeInvalidSettings is nsqd's code for a refused setting, and the admin's.
const codeInvalidSettings = "INVALID_SETTINGS"

// Quota policies, as nsqd names them.
const (
	quotaReject     = "reject"
	quotaDropOldest = "drop_oldest"
)

// decodeSettingsPatch reads a JSON object of settings to change into the patch for a topic
// (channel == "") or a channel, and returns it encoded again for the nodes.
func decodeSettingsPatch(body []byte, channel bool) ([]byte, error) {
	var patch any = &topicSettingsPatch{}
	if channel {
		patch = &channelSettingsPatch{}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(patch); err != nil {
		return nil, fmt.Errorf("%s: %v", codeInvalidSettings, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: one JSON object expected", codeInvalidSettings)
	}
	if p, ok := patch.(*topicSettingsPatch); ok && p.QuotaPolicy != nil && *p.QuotaPolicy != "" &&
		*p.QuotaPolicy != quotaReject && *p.QuotaPolicy != quotaDropOldest {
		return nil, fmt.Errorf("%s: quota_policy must be %q or %q", codeInvalidSettings, quotaReject, quotaDropOldest)
	}
	return json.Marshal(patch)
}

// noExtensionError says a node lacks one of Tern's endpoints: an NSQ nsqd, or an older Tern.
type noExtensionError struct {
	what     string // what the node cannot do: "change settings"
	endpoint string // "POST /topic/settings"
}

func (e *noExtensionError) Error() string {
	return "cannot " + e.what + " (" + e.endpoint + " needs Tern's nsqd)"
}

// isMissingEndpoint reports an answer of 404 NOT_FOUND, which an nsqd gives for a path it
// does not serve, as opposed to Tern's TOPIC_NOT_FOUND, CHANNEL_NOT_FOUND and the like.
func isMissingEndpoint(err error) bool {
	var se *statusError
	return errors.As(err, &se) && se.code == http.StatusNotFound && se.message() == "NOT_FOUND"
}

// refusal returns the API message of an answer of status code, or "".
func refusal(err error, code int) string {
	var se *statusError
	if errors.As(err, &se) && se.code == code {
		return se.message()
	}
	return ""
}

// nodeAnswer is one node's answer to a request of the extensions.
type nodeAnswer[T any] struct {
	node   string
	answer *T // nil when the node failed
}

// callEach sends method path (with body) to every node at once and decodes each answer into
// a T, unless T is struct{}. A node without the endpoint fails with a noExtensionError naming what.
func callEach[T any](ctx context.Context, c *cluster, method string, nodes []string, path string, body []byte, what string) ([]nodeAnswer[T], postResult) {
	out := make([]nodeAnswer[T], len(nodes))
	var mu sync.Mutex
	var r postResult
	endpoint, _, _ := strings.Cut(path, "?")
	fanOut(nodes, func(i int, node string) {
		v := new(T)
		var into any = v
		if _, discard := into.(*struct{}); discard {
			into = nil // some answers are empty: a struct{} is no answer to decode
		}
		err := c.client.do(ctx, method, node, path, body, into)
		if err != nil && isMissingEndpoint(err) {
			err = &noExtensionError{what: what, endpoint: method + " " + endpoint}
		}
		mu.Lock()
		defer mu.Unlock()
		out[i].node = node
		if err != nil {
			r.errs = append(r.errs, nsqdError(node, err))
			return
		}
		out[i].answer = v
		r.ok = true
	})
	return out, r
}

// settingsPath is nsqd's settings endpoint for the topic, or the channel when given.
func settingsPath(topic, channel string) string {
	if channel == "" {
		return "/topic/settings?" + url.Values{"topic": {topic}}.Encode()
	}
	return "/channel/settings?" + url.Values{"topic": {topic}, "channel": {channel}}.Encode()
}

// nodeSettings is one node's settings in GET /api/settings.
type nodeSettings struct {
	Node     string `json:"node"`
	Settings any    `json:"settings"`
}

// GET /api/settings/:topic and /api/settings/:topic/:channel: each node's settings of the
// topic or channel, fetched from the nodes that have the topic.
func (a *Admin) apiGetSettings(_ http.ResponseWriter, r *http.Request, ps httprouter.Params) (any, error) {
	topic, channel := ps.ByName("topic"), ps.ByName("channel")
	if !protocol.IsValidTopicName(topic) {
		return nil, apiErr(http.StatusBadRequest, codeInvalidTopic)
	}
	if channel != "" && !protocol.IsValidChannelName(channel) {
		return nil, apiErr(http.StatusBadRequest, codeInvalidChannel)
	}
	producers, warnings := a.cluster.topicProducers(r.Context(), topic)
	if len(producers) == 0 && len(warnings) == 0 {
		return nil, apiErr(http.StatusNotFound, codeTopicNotFound)
	}
	path := settingsPath(topic, channel)
	out := []nodeSettings{}
	var res postResult
	if channel == "" {
		var answers []nodeAnswer[TopicSettings]
		answers, res = callEach[TopicSettings](r.Context(), a.cluster, http.MethodGet, httpAddresses(producers), path, nil, "show settings")
		for _, na := range answers {
			if na.answer != nil {
				out = append(out, nodeSettings{na.node, na.answer})
			}
		}
	} else {
		var answers []nodeAnswer[ChannelSettings]
		answers, res = callEach[ChannelSettings](r.Context(), a.cluster, http.MethodGet, httpAddresses(producers), path, nil, "show settings")
		for _, na := range answers {
			if na.answer != nil {
				out = append(out, nodeSettings{na.node, na.answer})
			}
		}
	}
	if !res.ok && len(res.errs) > 0 {
		if channel != "" && allRefused(res.errs, http.StatusNotFound, codeChanNotFound) {
			return nil, apiErr(http.StatusNotFound, codeChanNotFound)
		}
		return nil, upstreamErr(allFailed("nsqd", append(warnings, res.errs...)))
	}
	return struct {
		Nodes   []nodeSettings `json:"nodes"`
		Message string         `json:"message"`
	}{out, withMessage(append(warnings, res.errs...))}, nil
}

// allRefused reports whether every error is an answer of status code with message.
func allRefused(errs []error, code int, message string) bool {
	for _, e := range errs {
		if refusal(e, code) != message {
			return false
		}
	}
	return len(errs) > 0
}

// POST /api/settings/:topic and /api/settings/:topic/:channel with a JSON object of the
// settings to change: every node that has the topic changes them.
func (a *Admin) apiPostSettings(w http.ResponseWriter, r *http.Request, ps httprouter.Params) (any, error) {
	if !a.isAdmin(r) {
		return nil, apiErr(http.StatusForbidden, codeForbidden)
	}
	var raw json.RawMessage
	if err := readJSONBody(w, r, &raw, codeInvalidBody); err != nil {
		return nil, err
	}
	patch, err := decodeSettingsPatch(raw, ps.ByName("channel") != "")
	if err != nil {
		return nil, apiErr(http.StatusBadRequest, err.Error())
	}
	done, err := a.act(r, action{kind: actSettings, topic: ps.ByName("topic"), channel: ps.ByName("channel"), settings: patch})
	if err != nil {
		return nil, err
	}
	return actionAnswer(done.warnings), nil
}

// Settings in the pages' forms are in units a person types: durations as "90s", "2h", "7d"
// or a number of seconds, sizes as "512MiB", "10GB" or a number of bytes. An empty field is
// zero: the setting is off.

// parseDurationMs reads a duration field into milliseconds.
func parseDurationMs(field, v string) (int64, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, nil
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs < 0 || secs > 1e12 {
			return 0, fmt.Errorf("%s must be a positive duration", field)
		}
		return int64(secs * 1000), nil
	}
	var d time.Duration
	if days, rest, ok := strings.Cut(v, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 100000 {
			return 0, fmt.Errorf("%s: %q is not a duration such as 90s, 2h or 7d", field, v)
		}
		d = time.Duration(n) * 24 * time.Hour
		v = rest
	}
	if v != "" {
		rest, err := time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("%s: %q is not a duration such as 90s, 2h or 7d", field, v)
		}
		d += rest
	}
	if d < 0 {
		return 0, fmt.Errorf("%s must be a positive duration", field)
	}
	return d.Milliseconds(), nil
}

// formatDurationMs writes milliseconds as parseDurationMs reads them: "1d12h", "90s",
// "1.5s"; "" for zero.
func formatDurationMs(ms int64) string {
	if ms <= 0 {
		return ""
	}
	if ms%1000 != 0 {
		return (time.Duration(ms) * time.Millisecond).String()
	}
	s := ms / 1000
	var b strings.Builder
	for _, u := range []struct {
		secs int64
		unit string
	}{{86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}} {
		if n := s / u.secs; n > 0 {
			b.WriteString(strconv.FormatInt(n, 10) + u.unit)
			s -= n * u.secs
		}
	}
	return b.String()
}

// sizeUnits are the suffixes parseBytes reads, longest first so that "MiB" is not read as "B".
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40},
	{"b", 1},
}

// parseBytes reads a size field.
func parseBytes(field, v string) (int64, error) {
	v = strings.ToLower(strings.TrimSpace(v))
	if v == "" {
		return 0, nil
	}
	mult := int64(1)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(v, u.suffix); ok {
			v, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil || n < 0 || n*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("%s: not a size such as 512MiB, 10GB or a number of bytes", field)
	}
	return int64(n * float64(mult)), nil
}

// formatBytes writes a size as parseBytes reads it, exactly, in the largest unit that divides
// it: "512MiB", "10GB", "1536"; "" for zero.
func formatBytes(n int64) string {
	if n <= 0 {
		return ""
	}
	for _, u := range []struct {
		unit string
		mult int64
	}{{"TiB", 1 << 40}, {"TB", 1e12}, {"GiB", 1 << 30}, {"GB", 1e9}, {"MiB", 1 << 20}, {"MB", 1e6}, {"KiB", 1 << 10}, {"KB", 1e3}} {
		if n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.unit
		}
	}
	return strconv.FormatInt(n, 10)
}

// parseCount reads a count field: empty is zero.
func parseCount(field, v string, limit int64) (int64, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > limit {
		return 0, fmt.Errorf("%s must be a whole number from 0 to %d", field, limit)
	}
	return n, nil
}

// maxAttemptsLimit is nsqd's: a message's attempts are 16 bits on the wire.
const maxAttemptsLimit = 65535

// settingsFromForm reads a settings form (topic.html, channel.html) into the JSON body for
// the nodes. The form sends every setting, so every one is set: an empty field turns it off.
func settingsFromForm(form url.Values, channel bool) ([]byte, error) {
	var errs []error
	ttl, err := parseDurationMs("message TTL", form.Get("message_ttl"))
	errs = append(errs, err)
	dle := form.Get("dead_letter_expired") == "1"
	if channel {
		attempts, err := parseCount("max attempts", form.Get("max_attempts"), maxAttemptsLimit)
		errs = append(errs, err)
		dlt := strings.TrimSpace(form.Get("dead_letter_topic"))
		if dlt != "" && !protocol.IsValidTopicName(dlt) {
			errs = append(errs, errors.New("the dead-letter topic is not a valid topic name"))
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		n := int(attempts)
		return json.Marshal(channelSettingsPatch{MaxAttempts: &n, DeadLetterTopic: &dlt, MessageTTLMs: &ttl, DeadLetterExpired: &dle})
	}
	maxMsgs, err := parseCount("max messages", form.Get("max_messages"), 1<<62)
	errs = append(errs, err)
	maxBytes, err := parseBytes("max bytes", form.Get("max_bytes"))
	errs = append(errs, err)
	policy := form.Get("quota_policy")
	if policy != quotaReject && policy != quotaDropOldest {
		errs = append(errs, errors.New("the quota policy is reject or drop_oldest"))
	}
	retain, err := parseDurationMs("retention time", form.Get("retain"))
	errs = append(errs, err)
	retainBytes, err := parseBytes("retention size", form.Get("retain_bytes"))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return json.Marshal(topicSettingsPatch{MessageTTLMs: &ttl, DeadLetterExpired: &dle, MaxMessages: &maxMsgs,
		MaxBytes: &maxBytes, QuotaPolicy: &policy, RetainMs: &retain, RetainBytes: &retainBytes})
}

// topicSettingsForm is the topic page's settings form, filled with a node's settings.
type topicSettingsForm struct {
	MessageTTL, MaxMessages, MaxBytes, QuotaPolicy, Retain, RetainBytes string
	DeadLetterExpired                                                   bool
	// Differ says the nodes' settings are not all the same: the form shows the first
	// node's, and saving it sets them on every node.
	Differ bool
}

func newTopicSettingsForm(nodes []*TopicStats) topicSettingsForm {
	var first TopicSettings
	f := topicSettingsForm{QuotaPolicy: quotaReject}
	for i, nt := range nodes {
		var s TopicSettings
		if nt.Settings != nil {
			s = *nt.Settings
		}
		if i == 0 {
			first = s
		} else if s != first {
			f.Differ = true
		}
	}
	f.MessageTTL, f.DeadLetterExpired = formatDurationMs(first.MessageTTLMs), first.DeadLetterExpired
	if first.MaxMessages > 0 {
		f.MaxMessages = strconv.FormatInt(first.MaxMessages, 10)
	}
	f.MaxBytes = formatBytes(first.MaxBytes)
	if first.QuotaPolicy != "" {
		f.QuotaPolicy = first.QuotaPolicy
	}
	f.Retain, f.RetainBytes = formatDurationMs(first.RetainMs), formatBytes(first.RetainBytes)
	return f
}

// channelSettingsForm is the channel page's settings form.
type channelSettingsForm struct {
	MaxAttempts, DeadLetterTopic, MessageTTL string
	DeadLetterExpired, Differ                bool
}

func newChannelSettingsForm(nodes []*ChannelStats) channelSettingsForm {
	var first ChannelSettings
	var f channelSettingsForm
	for i, nc := range nodes {
		var s ChannelSettings
		if nc.Settings != nil {
			s = *nc.Settings
		}
		if i == 0 {
			first = s
		} else if s != first {
			f.Differ = true
		}
	}
	if first.MaxAttempts > 0 {
		f.MaxAttempts = strconv.Itoa(first.MaxAttempts)
	}
	f.DeadLetterTopic, f.MessageTTL, f.DeadLetterExpired = first.DeadLetterTopic, formatDurationMs(first.MessageTTLMs), first.DeadLetterExpired
	return f
}
