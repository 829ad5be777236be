package nsqd

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/ternmq/tern/internal/protocol"
)

// Tern's HTTP extensions for settings, replay and dead letters (NSQ has none of them):
//
//	GET|POST /topic/settings?topic=T             the topic's settings; POST a JSON object of
//	                                             the fields to change
//	GET|POST /channel/settings?topic=T&channel=C the channel's, likewise
//	POST /channel/seek?topic=T&channel=C&to=oldest | &time=T | &id=ID
//	POST /channel/create?...&to=...              a new channel starting there
//	GET  /channel/dead_letters?topic=T&channel=C&n=N
//	POST /channel/redrive?topic=T&channel=C[&id=ID...]   the chosen dead letters, or all

// Error codes of the extensions.
const (
	codeInvalidSettings = "INVALID_SETTINGS"
	codeInvalidSeek     = "INVALID_SEEK"
	codeChannelExists   = "CHANNEL_EXISTS"
)

// maxSettingsBody bounds a settings request's body.
const maxSettingsBody = 64 << 10

// extErr maps the extensions' errors to HTTP answers.
func extErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errSettings):
		return apiErr(http.StatusBadRequest, codeInvalidSettings+": "+err.Error())
	case errors.Is(err, errSeekNotFound):
		return apiErr(http.StatusNotFound, codeMessageNotFound)
	case errors.Is(err, ErrChannelExists):
		return apiErr(http.StatusConflict, codeChannelExists)
	}
	return engineErr(err)
}

// decodeSettings reads a JSON object of settings into v, refusing unknown fields: a
// misspelt setting must not be silently ignored.
func decodeSettings(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxSettingsBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return apiErr(http.StatusBadRequest, codeInvalidSettings+": "+err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return apiErr(http.StatusBadRequest, codeInvalidSettings+": one JSON object expected")
	}
	return nil
}

func (s *httpAPI) topicSettings(w http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	name, err := existingTopicParam(r)
	if err != nil {
		return nil, err
	}
	t := s.n.Topic(name)
	if t == nil {
		return nil, apiErr(http.StatusNotFound, codeTopicNotFound)
	}
	if r.Method == http.MethodGet {
		return t.Settings(), nil
	}
	var p TopicSettingsPatch
	if err := decodeSettings(w, r, &p); err != nil {
		return nil, err
	}
	ts, err := t.UpdateSettings(p)
	if err != nil {
		return nil, extErr(err)
	}
	t.logger.Info("topic settings changed", "settings", ts)
	return ts, nil
}

func (s *httpAPI) channelSettings(w http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	ch, err := s.inspectChannel(r)
	if err != nil {
		return nil, err
	}
	if r.Method == http.MethodGet {
		return ch.topic.channelSettings(ch.name), nil
	}
	var p ChannelSettingsPatch
	if err := decodeSettings(w, r, &p); err != nil {
		return nil, err
	}
	cs, err := ch.topic.UpdateChannelSettings(ch, p)
	if err != nil {
		return nil, extErr(err)
	}
	ch.logger.Info("channel settings changed", "settings", cs)
	return cs, nil
}

// seekParams reads where a seek or a channel creation goes: to=oldest, time= (RFC 3339, or
// Unix seconds, milliseconds or nanoseconds told apart by size) or id= (16 hex digits).
// ok is false when none is given.
func seekParams(q url.Values) (target SeekTarget, ok bool, err error) {
	bad := apiErr(http.StatusBadRequest, codeInvalidSeek)
	n := 0
	if v := q.Get("to"); v != "" {
		if v != "oldest" {
			return target, false, bad
		}
		target.Oldest = true
		n++
	}
	if v := q.Get("time"); v != "" {
		ts, ok := parseTime(v)
		if !ok {
			return target, false, bad
		}
		target.Time = ts
		n++
	}
	if v := q.Get("id"); v != "" {
		id, ok := protocol.ParseMessageID([]byte(v))
		if !ok {
			return target, false, bad
		}
		target.ID, target.ByID = id, true
		n++
	}
	if n > 1 {
		return target, false, bad
	}
	return target, n == 1, nil
}

// parseTime reads RFC 3339, or a Unix time in seconds, milliseconds, microseconds or
// nanoseconds, told apart by size (each unit up to 2262, where nanoseconds end).
func parseTime(v string) (int64, bool) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UnixNano(), t.Year() >= 1970 && t.Year() < 2262
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	for _, u := range []struct{ below, unit int64 }{
		{1e10, int64(time.Second)}, {1e13, int64(time.Millisecond)}, {1e16, int64(time.Microsecond)},
	} {
		if n < u.below {
			return n * u.unit, n <= math.MaxInt64/u.unit
		}
	}
	return n, true
}

func (s *httpAPI) channelSeek(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	ch, err := s.inspectChannel(r)
	if err != nil {
		return nil, err
	}
	target, ok, err := seekParams(r.URL.Query())
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, apiErr(http.StatusBadRequest, codeInvalidSeek)
	}
	return nil, extErr(s.n.SeekChannel(ch.topic.name, ch.name, target))
}

func (s *httpAPI) channelDeadLetters(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	ch, err := s.inspectChannel(r)
	if err != nil {
		return nil, err
	}
	n := 100
	if v := r.URL.Query().Get("n"); v != "" {
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > maxPeek {
			return nil, apiErr(http.StatusBadRequest, codeInvalidN)
		}
	}
	return struct {
		Topic       string       `json:"dead_letter_topic"`
		DeadLetters []DeadLetter `json:"dead_letters"`
	}{ch.deadLetterTopic(), s.n.DeadLetters(ch, n)}, nil
}

func (s *httpAPI) channelRedrive(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	ch, err := s.inspectChannel(r)
	if err != nil {
		return nil, err
	}
	var ids []uint64
	for _, v := range r.URL.Query()["id"] {
		id, ok := protocol.ParseMessageID([]byte(v))
		if !ok {
			return nil, apiErr(http.StatusBadRequest, codeInvalidID)
		}
		ids = append(ids, id)
	}
	n, err := s.n.Redrive(ch, ids)
	if err != nil {
		return nil, extErr(err)
	}
	return struct {
		Redriven int `json:"redriven"`
	}{n}, nil
}
