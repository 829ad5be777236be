package nsq

import (
	"strconv"
	"time"

	"github.com/ternmq/tern/internal/protocol"
)

// Handler handles the messages a [Consumer] receives. HandleMessage returning nil
// finishes the message (FIN); returning an error requeues it (REQ) with a delay that grows
// with its attempts and counts as a failure for the Consumer's backoff. A handler that
// responds itself, or calls [Message.DisableAutoResponse], is not second-guessed.
//
// With Config.HandlerConcurrency above 1, HandleMessage runs on that many goroutines at
// once.
type Handler interface {
	HandleMessage(m *Message) error
}

// HandlerFunc adapts a function to a [Handler].
type HandlerFunc func(m *Message) error

// HandleMessage calls f(m).
func (f HandlerFunc) HandleMessage(m *Message) error { return f(m) }

// GiveUpHandler is implemented by a [Handler] that wants to know of the messages its
// Consumer gives up on: a message delivered more than Config.MaxAttempts times is passed
// to GiveUp instead of HandleMessage and then finished, since NSQ has no dead-letter queue
// of its own. GiveUp is where to log it or publish it to a topic of failures.
type GiveUpHandler interface {
	GiveUp(m *Message)
}

// Finish tells nsqd the message was handled (FIN). Only a message's first response counts;
// later ones, and responses to a message whose connection has been lost (nsqd delivers
// it again), do nothing.
func (m *Message) Finish() {
	if m.cc != nil && m.responded.CompareAndSwap(false, true) {
		m.cc.finish(m, true)
	}
}

// Requeue asks nsqd to deliver the message again after delay (REQ) and counts as a
// failure for the Consumer's backoff. A negative delay means the Consumer's own:
// Config.DefaultRequeueDelay times the message's attempts, capped at
// Config.MaxRequeueDelay. nsqd caps delays at its --max-req-timeout.
func (m *Message) Requeue(delay time.Duration) {
	if m.cc != nil && m.responded.CompareAndSwap(false, true) {
		m.cc.requeue(m, delay, true, true)
	}
}

// RequeueWithoutBackoff is Requeue without the backoff: for a message that cannot be
// handled yet for reasons that say nothing about the health of the handler.
func (m *Message) RequeueWithoutBackoff(delay time.Duration) {
	if m.cc != nil && m.responded.CompareAndSwap(false, true) {
		m.cc.requeue(m, delay, false, true)
	}
}

// Touch resets the message's timeout on nsqd (TOUCH), for a handler that needs longer
// than the message timeout. Config.AutoTouch does this by itself.
func (m *Message) Touch() {
	if m.cc != nil && !m.responded.Load() {
		m.cc.touch(m)
	}
}

// DisableAutoResponse stops the Consumer from finishing or requeueing the message when
// the handler returns: the application will call Finish or Requeue itself, from any
// goroutine, and the Consumer counts the message in flight until it does.
func (m *Message) DisableAutoResponse() { m.autoResponseDisabled.Store(true) }

// HasResponded reports whether Finish or Requeue has been called.
func (m *Message) HasResponded() bool { return m.responded.Load() }

// requeueDelay is the delay for a requeue whose delay the Consumer decides.
func requeueDelay(cfg *Config, attempts uint16) time.Duration {
	if cfg.DefaultRequeueDelay < 0 {
		return 0
	}
	d := cfg.DefaultRequeueDelay * time.Duration(attempts)
	if d > cfg.MaxRequeueDelay || d < 0 {
		d = cfg.MaxRequeueDelay
	}
	return d
}

// millisArg is a REQ's delay argument.
func millisArg(d time.Duration) []byte {
	return strconv.AppendInt(make([]byte, 0, 12), max(d.Milliseconds(), 0), 10)
}

// touchInterval is how often AutoTouch touches: half the message timeout in force.
func touchInterval(ident *protocol.IdentifyResponse, cfg *Config) time.Duration {
	timeout := time.Duration(ident.MsgTimeout) * time.Millisecond
	if timeout <= 0 {
		timeout = cfg.MsgTimeout
	}
	if timeout <= 0 {
		timeout = time.Minute // NSQ's default --msg-timeout
	}
	return timeout / 2
}
