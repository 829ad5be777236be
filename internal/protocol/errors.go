package protocol

import (
	"bytes"
	"errors"
	"fmt"
)

// Error codes, the first word of an error frame. The strings are NSQ's; clients match on them.
const (
	// ErrInvalid reports a malformed or out-of-place command. Fatal.
	ErrInvalid = "E_INVALID"
	// ErrBadBody reports a command body of the wrong size or that does not decode. Fatal.
	ErrBadBody = "E_BAD_BODY"
	// ErrBadTopic reports an invalid topic name. Fatal.
	ErrBadTopic = "E_BAD_TOPIC"
	// ErrBadChannel reports an invalid channel name. Fatal.
	ErrBadChannel = "E_BAD_CHANNEL"
	// ErrBadMessage reports a published message of the wrong size. Fatal.
	ErrBadMessage = "E_BAD_MESSAGE"
	// ErrPubFailed reports that a valid PUB could not be stored. Fatal.
	ErrPubFailed = "E_PUB_FAILED"
	// ErrMPubFailed reports that a valid MPUB could not be stored. Fatal.
	ErrMPubFailed = "E_MPUB_FAILED"
	// ErrDPubFailed reports that a valid DPUB could not be stored. Fatal.
	ErrDPubFailed = "E_DPUB_FAILED"
	// ErrSubFailed reports that SUB could not attach to the channel. Fatal.
	ErrSubFailed = "E_SUB_FAILED"
	// ErrIdentifyFailed reports a failed feature negotiation or upgrade. Fatal.
	ErrIdentifyFailed = "E_IDENTIFY_FAILED"
	// ErrAuthFirst reports a command sent before AUTH when auth is enabled. Fatal.
	ErrAuthFirst = "E_AUTH_FIRST"
	// ErrAuthFailed reports that the auth server could not be asked or refused. Fatal.
	ErrAuthFailed = "E_AUTH_FAILED"
	// ErrAuthDisabled reports AUTH sent to a server without auth. Fatal.
	ErrAuthDisabled = "E_AUTH_DISABLED"
	// ErrUnauthorized reports a command the client's authorizations do not allow. Fatal.
	ErrUnauthorized = "E_UNAUTHORIZED"
	// ErrAuthError reports an internal failure answering AUTH. Fatal.
	ErrAuthError = "E_AUTH_ERROR"
	// ErrBadProtocol reports an unknown protocol magic. Fatal.
	ErrBadProtocol = "E_BAD_PROTOCOL"
	// ErrFinFailed reports a FIN for a message not in flight to this client. Not fatal.
	ErrFinFailed = "E_FIN_FAILED"
	// ErrReqFailed reports a REQ for a message not in flight to this client. Not fatal.
	ErrReqFailed = "E_REQ_FAILED"
	// ErrTouchFailed reports a TOUCH for a message not in flight to this client. Not fatal.
	ErrTouchFailed = "E_TOUCH_FAILED"
)

// Error is an error the server reports to a client on the wire. Fatal errors end the
// connection after the error frame is sent; the others leave it open.
type Error struct {
	// Code is one of the Err* codes, such as "E_INVALID".
	Code string
	// Desc is the human-readable rest of the error frame; it may be empty.
	Desc string
	// Fatal says the server closes the connection after sending the error.
	Fatal bool
	// Err is the underlying cause, if any. It is never sent to the client (an auth
	// server's failure, for one, must not leak) but lets the server log it and lets
	// callers test for io.EOF with errors.Is.
	Err error
}

// NewFatalError returns a fatal wire error. The description is format, expanded with args
// when there are any, so a description containing '%' can be passed with no args.
func NewFatalError(code, format string, args ...any) *Error {
	return &Error{Code: code, Desc: describe(format, args), Fatal: true}
}

// NewClientError returns a non-fatal wire error: the server reports it and reads on.
func NewClientError(code, format string, args ...any) *Error {
	return &Error{Code: code, Desc: describe(format, args)}
}

func describe(format string, args []any) string {
	if len(args) == 0 {
		return format
	}
	return fmt.Sprintf(format, args...)
}

// wrapFatal returns a fatal wire error that keeps cause for logging and errors.Is.
func wrapFatal(cause error, code, desc string) *Error {
	return &Error{Code: code, Desc: desc, Fatal: true, Err: cause}
}

// Error returns the error frame's text: "CODE desc", or just "CODE" when there is no
// description.
func (e *Error) Error() string {
	if e.Desc == "" {
		return e.Code
	}
	return e.Code + " " + e.Desc
}

// Unwrap returns the underlying cause, or nil.
func (e *Error) Unwrap() error { return e.Err }

// AppendTo appends the error frame's text to dst without allocating when dst has room.
func (e *Error) AppendTo(dst []byte) []byte {
	dst = append(dst, e.Code...)
	if e.Desc != "" {
		dst = append(dst, ' ')
		dst = append(dst, e.Desc...)
	}
	return dst
}

// IsFatalCode reports whether NSQ closes the connection after an error with this code.
// Only the three failures to act on an in-flight message are not fatal; a client uses this
// to decide whether an error frame means the connection is going away.
func IsFatalCode(code string) bool {
	switch code {
	case ErrFinFailed, ErrReqFailed, ErrTouchFailed:
		return false
	}
	return true
}

// IsFatal reports whether err must end the connection: true for every error except a
// non-fatal [*Error], and false for nil.
func IsFatal(err error) bool {
	if err == nil {
		return false
	}
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Fatal
	}
	return true
}

// ParseError turns the data of an error frame back into an [*Error], as a client receives
// it. The code is the text before the first space; Fatal follows [IsFatalCode].
func ParseError(data []byte) *Error {
	code, desc, _ := bytes.Cut(data, []byte{' '})
	c := string(code)
	return &Error{Code: c, Desc: string(desc), Fatal: IsFatalCode(c)}
}
