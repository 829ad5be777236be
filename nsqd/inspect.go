package nsqd

import (
	"cmp"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/nsqd/logstore"
)

// Looking inside a channel without disturbing it (a Tern extension; NSQ has no way to see
// queued messages, nsqio/nsq#375): the next messages it will deliver, its deferred messages
// with their due times, its messages in flight with their owner and deadline, and one message
// by ID. Nothing here changes the channel: the in-memory state is read under mu, and the
// records the channel has not read yet are read with a reader of their own.

// maxPeek bounds how many messages one look returns.
const maxPeek = 1000

// maxFindScan bounds how many unread records a look for one ID reads.
const maxFindScan = 100_000

// InspectedMessage is one message as the inspection endpoints show it.
type InspectedMessage struct {
	ID        string `json:"id"`
	Timestamp int64  `json:"timestamp"` // publish time, Unix ns
	Attempts  uint16 `json:"attempts"`
	// State is "ready" (read, waiting for a consumer with room), "assigned" (given to a
	// consumer, about to be sent), "in_flight", "deferred", "dead_lettering" (on its way to
	// the dead-letter topic) or "unread" (in the topic's log, not yet read by the channel).
	State string `json:"state"`
	Due   int64  `json:"due,omitempty"`   // in flight: the deadline; deferred: when due (Unix ns)
	Owner string `json:"owner,omitempty"` // in flight or assigned: the client's address
	Body  []byte `json:"body"`            // base64 in JSON
}

// Peek kinds.
const (
	PeekNext     = "next"
	PeekDeferred = "deferred"
	PeekInFlight = "in_flight"
)

func stateName(s pendingState) string {
	switch s {
	case stateReady:
		return "ready"
	case stateAssigned:
		return "assigned"
	case stateInFlight:
		return "in_flight"
	case stateDeferred:
		return "deferred"
	case stateDying:
		return "dead_lettering"
	}
	return "done"
}

func (ch *Channel) inspected(p *pending) InspectedMessage {
	m := InspectedMessage{
		ID: msgIDString(p.id), Timestamp: p.timestamp, Attempts: p.attempts,
		State: stateName(p.state), Body: append([]byte(nil), p.body...),
	}
	if p.state == stateInFlight || p.state == stateDeferred {
		m.Due = p.due
	}
	if (p.state == stateInFlight || p.state == stateAssigned) && p.owner != nil {
		m.Owner = p.owner.sub.stats().RemoteAddress
	}
	return m
}

// Peek returns up to n messages of the kind asked: PeekNext, the messages the channel will
// hand out next, in order (those assigned to a consumer, then the ready queue, then the
// records it has not read yet); PeekDeferred, by due time (those the channel has read, and
// the first n of those in the log beyond); PeekInFlight, by deadline.
func (ch *Channel) Peek(kind string, n int) []InspectedMessage {
	n = min(max(n, 0), maxPeek)
	var out []InspectedMessage
	ch.mu.Lock()
	switch kind {
	case PeekNext:
		for _, s := range ch.subs {
			for _, p := range s.outbox {
				if len(out) < n {
					out = append(out, ch.inspected(p))
				}
			}
		}
		for _, p := range ch.ready[ch.readyAt:] {
			if len(out) < n && p.state == stateReady {
				out = append(out, ch.inspected(p))
			}
		}
	case PeekDeferred, PeekInFlight:
		want := stateDeferred
		if kind == PeekInFlight {
			want = stateInFlight
		}
		var ps []*pending
		for _, p := range ch.timers {
			if p.state == want {
				ps = append(ps, p)
			}
		}
		slices.SortFunc(ps, func(a, b *pending) int { return cmp.Compare(a.due, b.due) })
		for _, p := range ps[:min(n, len(ps))] {
			out = append(out, ch.inspected(p))
		}
	}
	cursor := ch.cursor
	ch.mu.Unlock()
	now := time.Now().UnixNano()
	switch {
	case kind == PeekNext && len(out) < n:
		ch.readUnread(cursor, maxFindScan, func(e *logstore.Entry) bool {
			if e.DeliverAt <= now { // a record due later will be deferred, not delivered next
				out = append(out, unreadMessage(e))
			}
			return len(out) < n
		})
	case kind == PeekDeferred:
		// Deferred records the channel has not read yet: the first n the log holds.
		unread := 0
		ch.readUnread(cursor, maxFindScan, func(e *logstore.Entry) bool {
			if e.DeliverAt > now {
				m := unreadMessage(e)
				m.State, m.Due = "deferred", e.DeliverAt
				out = append(out, m)
				unread++
			}
			return unread < n
		})
		slices.SortStableFunc(out, func(a, b InspectedMessage) int { return cmp.Compare(a.Due, b.Due) })
		out = out[:min(n, len(out))]
	}
	return out
}

// Find returns the message with ID id, wherever the channel has it, or false.
func (ch *Channel) Find(id uint64) (InspectedMessage, bool) {
	ch.mu.Lock()
	if p := ch.byID[id]; p != nil && p.state != stateDone {
		m := ch.inspected(p)
		ch.mu.Unlock()
		return m, true
	}
	cursor := ch.cursor
	ch.mu.Unlock()
	var found *InspectedMessage
	ch.readUnread(cursor, maxFindScan, func(e *logstore.Entry) bool {
		if e.ID == id {
			m := unreadMessage(e)
			found = &m
			return false
		}
		return true
	})
	if found == nil {
		return InspectedMessage{}, false
	}
	return *found, true
}

func msgIDString(id uint64) string {
	m := protocol.NewMessageID(id)
	return string(m[:])
}

func unreadMessage(e *logstore.Entry) InspectedMessage {
	return InspectedMessage{
		ID: msgIDString(e.ID), Timestamp: e.Timestamp,
		State: "unread", Body: append([]byte(nil), e.Body...),
	}
}

// readUnread reads up to limit records of the topic's log from cursor with a reader of its
// own, stopping at the topic's pause point and at the first range the topic dropped, and
// hands each to f until f returns false.
func (ch *Channel) readUnread(cursor logstore.Pos, limit int, f func(*logstore.Entry) bool) {
	if f := ch.topic.floor.Load(); f != nil && f.Seq > cursor.Seq {
		cursor = *f // dropped by the topic's quota
	}
	end := ch.topic.readableSeq()
	if h, ok := ch.topic.nextHole(cursor.Seq); ok && h.from < end {
		end = h.from
	}
	_, _, _ = scanLog(ch.topic.log, cursor, end, limit, f) // a look shows what it could read
}

// HTTP error codes of the inspection endpoints.
const (
	codeInvalidN        = "INVALID_N"
	codeInvalidKind     = "INVALID_STATE"
	codeInvalidID       = "INVALID_ID"
	codeMessageNotFound = "MESSAGE_NOT_FOUND"
)

// inspectChannel finds the channel a request names.
func (s *httpAPI) inspectChannel(r *http.Request) (*Channel, error) {
	topic, channel, err := topicChannelParams(r)
	if err != nil {
		return nil, err
	}
	t := s.n.Topic(topic)
	if t == nil {
		return nil, apiErr(http.StatusNotFound, codeTopicNotFound)
	}
	ch := t.Channel(channel)
	if ch == nil {
		return nil, apiErr(http.StatusNotFound, codeChanNotFound)
	}
	return ch, nil
}

// channelPeek is GET /channel/peek?topic=&channel=&state=next|deferred|in_flight&n=10.
func (s *httpAPI) channelPeek(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	ch, err := s.inspectChannel(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	n := 10
	if v := q.Get("n"); v != "" {
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > maxPeek {
			return nil, apiErr(http.StatusBadRequest, codeInvalidN)
		}
	}
	kind := cmp.Or(q.Get("state"), PeekNext)
	switch kind {
	case PeekNext, PeekDeferred, PeekInFlight:
	default:
		return nil, apiErr(http.StatusBadRequest, codeInvalidKind)
	}
	msgs := ch.Peek(kind, n)
	if msgs == nil {
		msgs = []InspectedMessage{}
	}
	return struct {
		Messages []InspectedMessage `json:"messages"`
	}{msgs}, nil
}

// channelMessage is GET /channel/message?topic=&channel=&id=<16 hex digits>.
func (s *httpAPI) channelMessage(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
	ch, err := s.inspectChannel(r)
	if err != nil {
		return nil, err
	}
	id, ok := protocol.ParseMessageID([]byte(r.URL.Query().Get("id")))
	if !ok {
		return nil, apiErr(http.StatusBadRequest, codeInvalidID)
	}
	m, ok := ch.Find(id)
	if !ok {
		return nil, apiErr(http.StatusNotFound, codeMessageNotFound)
	}
	return m, nil
}
