package protocol_test

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/ternmq/tern/internal/protocol"
)

func TestCodes(t *testing.T) {
	tests := []struct {
		got, want string
		fatal     bool
	}{
		{protocol.ErrInvalid, "E_INVALID", true},
		{protocol.ErrBadBody, "E_BAD_BODY", true},
		{protocol.ErrBadTopic, "E_BAD_TOPIC", true},
		{protocol.ErrBadChannel, "E_BAD_CHANNEL", true},
		{protocol.ErrBadMessage, "E_BAD_MESSAGE", true},
		{protocol.ErrPubFailed, "E_PUB_FAILED", true},
		{protocol.ErrMPubFailed, "E_MPUB_FAILED", true},
		{protocol.ErrDPubFailed, "E_DPUB_FAILED", true},
		{protocol.ErrSubFailed, "E_SUB_FAILED", true},
		{protocol.ErrIdentifyFailed, "E_IDENTIFY_FAILED", true},
		{protocol.ErrAuthFirst, "E_AUTH_FIRST", true},
		{protocol.ErrAuthFailed, "E_AUTH_FAILED", true},
		{protocol.ErrAuthDisabled, "E_AUTH_DISABLED", true},
		{protocol.ErrUnauthorized, "E_UNAUTHORIZED", true},
		{protocol.ErrAuthError, "E_AUTH_ERROR", true},
		{protocol.ErrBadProtocol, "E_BAD_PROTOCOL", true},
		{protocol.ErrFinFailed, "E_FIN_FAILED", false},
		{protocol.ErrReqFailed, "E_REQ_FAILED", false},
		{protocol.ErrTouchFailed, "E_TOUCH_FAILED", false},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("code = %q, want %q", tt.got, tt.want)
		}
		if got := protocol.IsFatalCode(tt.want); got != tt.fatal {
			t.Errorf("IsFatalCode(%q) = %v, want %v", tt.want, got, tt.fatal)
		}
	}
}

func TestError(t *testing.T) {
	tests := []struct {
		name  string
		err   *protocol.Error
		text  string
		fatal bool
	}{
		{"fatal with args", protocol.NewFatalError(protocol.ErrInvalid, "RDY count %d out of range 0-%d", 51, 50),
			"E_INVALID RDY count 51 out of range 0-50", true},
		{"client error", protocol.NewClientError(protocol.ErrFinFailed, "FIN %s failed %s", "0123456789abcdef", "ID not in flight"),
			"E_FIN_FAILED FIN 0123456789abcdef failed ID not in flight", false},
		{"no args keeps percent", protocol.NewFatalError(protocol.ErrInvalid, "100% wrong"), "E_INVALID 100% wrong", true},
		{"empty desc is just the code", protocol.NewFatalError(protocol.ErrBadProtocol, ""), "E_BAD_PROTOCOL", true},
		{"non-fatal empty desc", protocol.NewClientError(protocol.ErrReqFailed, ""), "E_REQ_FAILED", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, tt.err, tt.text, tt.fatal)
			if got := string(tt.err.AppendTo([]byte("x:"))); got != "x:"+tt.text {
				t.Errorf("AppendTo = %q, want %q", got, "x:"+tt.text)
			}
			back := protocol.ParseError([]byte(tt.text))
			if back.Code != tt.err.Code || back.Desc != tt.err.Desc || back.Fatal != tt.fatal {
				t.Errorf("ParseError(%q) = %+v, want code %q desc %q fatal %v",
					tt.text, back, tt.err.Code, tt.err.Desc, tt.fatal)
			}
		})
	}
}

func TestErrorAppendToDoesNotAllocate(t *testing.T) {
	e := protocol.NewFatalError(protocol.ErrInvalid, "invalid command ASDF")
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { buf = e.AppendTo(buf[:0]) }); n != 0 {
		t.Errorf("AppendTo allocates %v times", n)
	}
}

func TestIsFatal(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"io error", io.EOF, true},
		{"fatal", protocol.NewFatalError(protocol.ErrInvalid, "x"), true},
		{"non-fatal", protocol.NewClientError(protocol.ErrFinFailed, "x"), false},
		{"wrapped non-fatal", fmt.Errorf("handle FIN: %w", protocol.NewClientError(protocol.ErrFinFailed, "x")), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := protocol.IsFatal(tt.err); got != tt.want {
				t.Errorf("IsFatal(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestErrorUnwrap(t *testing.T) {
	_, err := protocol.ReadBody(errReader{io.EOF}, nil, 10, protocol.ErrBadMessage, "PUB")
	if !errors.Is(err, io.EOF) {
		t.Errorf("errors.Is(%v, io.EOF) = false, want the read error kept as the cause", err)
	}
	wantError(t, err, "E_BAD_MESSAGE PUB failed to read message body size", true)
	if (&protocol.Error{Code: "E_X"}).Unwrap() != nil {
		t.Error("Unwrap of an error without a cause is not nil")
	}
}

func TestParseErrorCodeOnly(t *testing.T) {
	e := protocol.ParseError([]byte("E_INVALID"))
	if e.Code != "E_INVALID" || e.Desc != "" || !e.Fatal {
		t.Errorf("ParseError(E_INVALID) = %+v", e)
	}
}
