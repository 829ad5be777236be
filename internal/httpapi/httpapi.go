// Package httpapi is the HTTP plumbing Tern's daemons share, following the conventions of NSQ's
// HTTP APIs so that NSQ's clients and tools read every answer.
//
// An endpoint is a [Handler]: it returns the value to answer with, or an error. A [Router]
// (julienschmidt/httprouter underneath) renders both in one place:
//
//   - a string or []byte is sent as text, nil as an empty 200, a [Status] with its own status
//     code, and anything else as JSON with Content-Type "application/json; charset=utf-8";
//   - an [*Error] is sent as {"message":"TEXT"} with its status code, which is how NSQ reports
//     every API error (TOPIC_NOT_FOUND, MSG_TOO_BIG, ...);
//   - any other error becomes 500 {"message":"INTERNAL_ERROR"} and is logged, so a failure
//     that was not meant for the client never leaks its text;
//   - a panic in any handler becomes 500 {"message":"INTERNAL_ERROR"} and is logged with its
//     stack, and the server goes on serving;
//   - an unknown path is 404 {"message":"NOT_FOUND"} and a known path with the wrong method is
//     405 {"message":"METHOD_NOT_ALLOWED"}.
//
// Every response, whatever produced it, carries "X-NSQ-Content-Type: nsq; version=1.0": go-nsq
// and NSQ's other clients use that header to tell NSQ 1.x's bare JSON from the enveloped
// {"status_code","status_txt","data"} answers of older releases.
//
// The package knows nothing of any one daemon: nsqd, nsqlookupd and nsqadmin each register
// their endpoints on their own Router.
package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/julienschmidt/httprouter"
)

// Header names and values every daemon sends.
const (
	// HeaderNSQContentType is the header NSQ's clients read to recognise a 1.x answer.
	HeaderNSQContentType = "X-NSQ-Content-Type"
	// NSQContentTypeV1 is the value of HeaderNSQContentType: bare JSON, errors as
	// {"message":...}.
	NSQContentTypeV1 = "nsq; version=1.0"
	// ContentTypeJSON is the Content-Type of JSON answers, NSQ's exactly.
	ContentTypeJSON = "application/json; charset=utf-8"
	// ContentTypeText is the Content-Type of text answers.
	ContentTypeText = "text/plain; charset=utf-8"
)

// Error codes the Router itself answers with. Daemons define their own for their endpoints.
const (
	// CodeNotFound answers a path no route matches.
	CodeNotFound = "NOT_FOUND"
	// CodeMethodNotAllowed answers a known path asked with a method it does not serve.
	CodeMethodNotAllowed = "METHOD_NOT_ALLOWED"
	// CodeInternalError answers an untyped error or a panic.
	CodeInternalError = "INTERNAL_ERROR"
)

// Handler is one endpoint. ps holds the path's named parameters. The returned value and error
// are rendered as the package documentation describes; a Handler never writes the answer
// itself, except that it may set response headers on w first.
type Handler func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) (any, error)

// Error is an error meant for the client: an HTTP status code and NSQ's error code, answered
// as {"message":"Text"} with status Code.
type Error struct {
	// Code is the HTTP status, such as 404.
	Code int
	// Text is NSQ's error code, such as "TOPIC_NOT_FOUND".
	Text string
}

// NewError returns an *Error with the given status and text.
func NewError(code int, text string) *Error { return &Error{Code: code, Text: text} }

// Error returns the status and the text, for logs.
func (e *Error) Error() string { return strconv.Itoa(e.Code) + " " + e.Text }

// Status is a result answered with status Code instead of 200; Body is rendered like any
// other result. nsqd's /ping answers its 500 this way, as text, where NSQ does.
type Status struct {
	// Code is the HTTP status.
	Code int
	// Body is rendered as a Handler's result is.
	Body any
}

// Config configures a Router.
type Config struct {
	// Logger receives handler errors and panics (error level) and one record per request
	// (debug level). Nil discards them.
	Logger *slog.Logger
	// WriteTimeout bounds writing one rendered answer, so that a client which stops reading
	// cannot hold a handler's goroutine and its buffered answer forever. It is applied per
	// answer, not per connection: an http.Server-wide WriteTimeout would also cut long
	// profiles short. Zero means no bound.
	WriteTimeout time.Duration
	// NotFound, when set, answers paths no route matches instead of 404 {"message":"NOT_FOUND"}:
	// nsqadmin answers a browser with a page.
	NotFound http.Handler
}

// Router dispatches requests to Handlers and renders their results. It is an http.Handler.
type Router struct {
	router       *httprouter.Router
	logger       *slog.Logger
	writeTimeout time.Duration
}

// NewRouter returns a Router with no routes: every path answers 404 NOT_FOUND until
// registered.
func NewRouter(cfg Config) *Router {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	rt := &Router{router: httprouter.New(), logger: logger, writeTimeout: cfg.WriteTimeout}
	rt.router.HandleMethodNotAllowed = true
	rt.router.NotFound = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt.respond(w, r, http.StatusNotFound, errorBody(CodeNotFound))
	})
	if cfg.NotFound != nil {
		rt.router.NotFound = cfg.NotFound
	}
	rt.router.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt.respond(w, r, http.StatusMethodNotAllowed, errorBody(CodeMethodNotAllowed))
	})
	rt.router.PanicHandler = rt.recovered
	return rt
}

// Handle registers h for method and path (httprouter syntax: "/config/:opt").
func (rt *Router) Handle(method, path string, h Handler) {
	rt.router.Handle(method, path, func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		var start time.Time
		debugOn := rt.logger.Enabled(r.Context(), slog.LevelDebug)
		if debugOn {
			start = time.Now()
		}
		status := rt.serve(w, r, ps, h)
		if debugOn {
			rt.logger.LogAttrs(r.Context(), slog.LevelDebug, "http request",
				slog.Int("status", status), slog.String("method", r.Method),
				slog.String("uri", r.RequestURI), slog.String("remote_addr", r.RemoteAddr),
				slog.Duration("duration", time.Since(start)))
		}
	})
}

// Handler registers a plain http.Handler (pprof's, Prometheus's) for method and path. It still
// gets the NSQ header and panic recovery, but renders its own answers.
func (rt *Router) Handler(method, path string, h http.Handler) {
	rt.router.Handler(method, path, h)
}

// ServeHTTP sets the NSQ header and routes the request.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(HeaderNSQContentType, NSQContentTypeV1)
	rt.router.ServeHTTP(w, r)
}

// serve runs h and renders its result, returning the status sent.
func (rt *Router) serve(w http.ResponseWriter, r *http.Request, ps httprouter.Params, h Handler) int {
	v, err := h(w, r, ps)
	if err != nil {
		var apiErr *Error
		if !errors.As(err, &apiErr) {
			rt.logger.LogAttrs(r.Context(), slog.LevelError, "http handler failed",
				slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("error", err))
			apiErr = &Error{Code: http.StatusInternalServerError, Text: CodeInternalError}
		}
		return rt.respond(w, r, apiErr.Code, errorBody(apiErr.Text))
	}
	status := http.StatusOK
	if s, ok := v.(Status); ok {
		status, v = s.Code, s.Body
	}
	return rt.respond(w, r, status, v)
}

// recovered is the router's panic handler. http.ErrAbortHandler is net/http's own way to
// abort a response silently, so it is passed on rather than answered.
func (rt *Router) recovered(w http.ResponseWriter, r *http.Request, rcv any) {
	if rcv == http.ErrAbortHandler {
		panic(rcv)
	}
	rt.logger.LogAttrs(r.Context(), slog.LevelError, "http handler panicked",
		slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.String("panic", fmt.Sprint(rcv)), slog.String("stack", string(debug.Stack())))
	rt.respond(w, r, http.StatusInternalServerError, errorBody(CodeInternalError))
}

// respond renders v with status and returns the status actually sent.
func (rt *Router) respond(w http.ResponseWriter, r *http.Request, status int, v any) int {
	if rt.writeTimeout > 0 {
		// The server clears the write deadline once the request is finished, so this one
		// cannot leak into the connection's next request.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(rt.writeTimeout))
	}
	status, err := Respond(w, status, v)
	if err != nil {
		rt.logger.LogAttrs(r.Context(), slog.LevelError, "http response not encodable",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("error", err))
	}
	return status
}

// errorBody is the JSON shape of every NSQ API error.
type errorBody string

// MarshalJSON encodes {"message":"TEXT"} without reflection: error answers are frequent on
// a busy /pub, and their text needs escaping only in principle.
func (e errorBody) MarshalJSON() ([]byte, error) {
	msg, err := json.Marshal(string(e))
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(msg)+12)
	out = append(out, `{"message":`...)
	out = append(out, msg...)
	return append(out, '}'), nil
}

// Respond writes v with status, rendered as a Handler's result is (a Status inside v is not
// unwrapped), plus the NSQ header. It is for answers given outside a Router, such as a
// daemon's answer to every request while it requires TLS. A value that does not encode as JSON
// answers 500 INTERNAL_ERROR instead, and the returned status and error say so.
func Respond(w http.ResponseWriter, status int, v any) (int, error) {
	h := w.Header()
	h.Set(HeaderNSQContentType, NSQContentTypeV1)
	var (
		text      string // a text answer, written without copying it into a []byte
		body      []byte
		encodeErr error
	)
	switch v := v.(type) {
	case nil:
	case string:
		h.Set("Content-Type", ContentTypeText)
		text = v
	case []byte:
		h.Set("Content-Type", ContentTypeText)
		body = v
	default:
		b, err := json.Marshal(v)
		if err != nil {
			encodeErr = fmt.Errorf("encode %T: %w", v, err)
			status = http.StatusInternalServerError
			b, _ = errorBody(CodeInternalError).MarshalJSON()
		}
		h.Set("Content-Type", ContentTypeJSON)
		body = b
	}
	h.Set("Content-Length", strconv.Itoa(len(text)+len(body)))
	w.WriteHeader(status)
	// A write error means the client went away; there is nobody left to tell.
	switch {
	case text != "":
		_, _ = io.WriteString(w, text)
	case len(body) > 0:
		_, _ = w.Write(body)
	}
	return status, encodeErr
}

// RespondError writes err as NSQ's {"message":"TEXT"} with its status.
func RespondError(w http.ResponseWriter, err *Error) {
	_, _ = Respond(w, err.Code, errorBody(err.Text))
}
