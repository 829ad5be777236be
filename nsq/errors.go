package nsq

import (
	"errors"

	"github.com/ternmq/tern/internal/protocol"
)

// Error is an error reported by nsqd on the wire: NSQ's code (one of the ErrCode*
// constants), its description, and whether the server closes the connection after it.
// Match it with errors.As:
//
//	var e *nsq.Error
//	if errors.As(err, &e) && e.Code == nsq.ErrCodeBadTopic { ... }
//
// The client also returns an Error, with the code the server would have sent, when it
// refuses a command locally (an invalid topic name, an empty message) rather than let the
// server close a connection other publishers share.
type Error = protocol.Error

// Wire error codes, the Code of an [*Error]. They are NSQ's.
const (
	// ErrCodeInvalid reports a malformed or out-of-place command.
	ErrCodeInvalid = protocol.ErrInvalid
	// ErrCodeBadBody reports a command body of the wrong size or that does not decode.
	ErrCodeBadBody = protocol.ErrBadBody
	// ErrCodeBadTopic reports an invalid topic name.
	ErrCodeBadTopic = protocol.ErrBadTopic
	// ErrCodeBadChannel reports an invalid channel name.
	ErrCodeBadChannel = protocol.ErrBadChannel
	// ErrCodeBadMessage reports an empty or too large message.
	ErrCodeBadMessage = protocol.ErrBadMessage
	// ErrCodePubFailed reports that the server could not store a PUB.
	ErrCodePubFailed = protocol.ErrPubFailed
	// ErrCodeMPubFailed reports that the server could not store an MPUB.
	ErrCodeMPubFailed = protocol.ErrMPubFailed
	// ErrCodeDPubFailed reports that the server could not store a DPUB.
	ErrCodeDPubFailed = protocol.ErrDPubFailed
	// ErrCodeIdentifyFailed reports a failed feature negotiation.
	ErrCodeIdentifyFailed = protocol.ErrIdentifyFailed
	// ErrCodeAuthFailed reports that authentication was refused or could not be checked.
	ErrCodeAuthFailed = protocol.ErrAuthFailed
	// ErrCodeUnauthorized reports a command the client's authorizations do not allow.
	ErrCodeUnauthorized = protocol.ErrUnauthorized
)

// ErrNotConnected is returned (wrapped, together with the context's error and the last
// connection error) by a call whose context ended while the client had no connection.
var ErrNotConnected = errors.New("nsq: not connected")

// ErrNotSent is returned (wrapped, together with the context's error) by a publish whose
// context ended while it waited, on a live connection, behind commands nsqd had not answered
// yet (a slow or stalled nsqd). Like one failing with [ErrNotConnected], it was not sent, so
// it is not published and may be retried without a duplicate.
var ErrNotSent = errors.New("nsq: not sent")

// ErrStopped is returned by calls made after, or cut short by, Stop.
var ErrStopped = errors.New("nsq: stopped")

// ErrConnectionLost is returned (wrapped, with the I/O error) for a command whose answer
// was lost with its connection. The server may or may not have acted on it: a publish that
// fails this way may be retried if a duplicate message is acceptable, which NSQ's
// at-least-once delivery already requires of consumers.
var ErrConnectionLost = errors.New("nsq: connection lost before the answer")
