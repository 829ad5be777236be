package admin

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxAnswerBytes bounds what the admin reads from one nsqd or lookupd answer. The biggest is
// /stats with clients from a large node: 100,000 clients are about 60 MB of JSON.
const maxAnswerBytes = 256 << 20

// maxErrorBodyBytes bounds the part of an error answer quoted in a warning.
const maxErrorBodyBytes = 512

// httpClient talks to nsqd and lookupd HTTP APIs the way NSQ's admin does: each request
// bounded by the connect and request timeouts, and an answer of 403 over plain HTTP retried
// over HTTPS on the port the 403 names (an nsqd started with --tls-required answers that way),
// with the configured client certificate and roots.
type httpClient struct {
	c *http.Client
	// timeout bounds waiting for an answer's header, and separately reading its body once a
	// decoding slot is free: a node is not charged for the time its answer waits for a slot.
	timeout time.Duration
	// decoding bounds how many answers are read and decoded at once. Every request of a
	// fan-out is sent at once, so a slow node delays nobody; but 100 nodes' /stats decoded
	// together would hold 100 answers in memory at the peak, where a few at a time cost as
	// much time and a fraction of the memory.
	decoding chan struct{}
	buffers  sync.Pool // *bytes.Buffer, reused between answers
}

// maxConcurrentDecodes is the size of httpClient.decoding.
const maxConcurrentDecodes = 8

// maxPooledBuffer is the largest answer buffer kept for reuse; a node with a huge answer
// (tens of thousands of clients) does not pin its buffer.
const maxPooledBuffer = 8 << 20

func newHTTPClient(o *Options) (*httpClient, error) {
	tlsConfig, err := clientTLSConfig(o)
	if err != nil {
		return nil, err
	}
	transport := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: o.HTTPClientConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
		ResponseHeaderTimeout: o.HTTPClientRequestTimeout,
		TLSHandshakeTimeout:   o.HTTPClientRequestTimeout,
		TLSClientConfig:       tlsConfig,
		// The admin keeps one connection to every node between fan-outs.
		MaxIdleConns:        1000,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
	return &httpClient{
		c: &http.Client{
			Transport: transport,
			// A daemon's API never redirects; following one would let whatever a lookupd
			// lists send the admin's requests anywhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		timeout:  o.HTTPClientRequestTimeout,
		decoding: make(chan struct{}, maxConcurrentDecodes),
	}, nil
}

// clientTLSConfig builds the TLS configuration from the --http-client-tls-* options, or
// returns nil for Go's defaults when none is set.
func clientTLSConfig(o *Options) (*tls.Config, error) {
	if !o.HTTPClientTLSInsecureSkipVerify && o.HTTPClientTLSRootCAFile == "" && o.HTTPClientTLSCert == "" {
		return nil, nil
	}
	cfg := &tls.Config{InsecureSkipVerify: o.HTTPClientTLSInsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if o.HTTPClientTLSRootCAFile != "" {
		pem, err := os.ReadFile(o.HTTPClientTLSRootCAFile)
		if err != nil {
			return nil, fmt.Errorf("--http-client-tls-root-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--http-client-tls-root-ca-file %s: no PEM certificate in it", o.HTTPClientTLSRootCAFile)
		}
		cfg.RootCAs = pool
	}
	if o.HTTPClientTLSCert != "" {
		cert, err := tls.LoadX509KeyPair(o.HTTPClientTLSCert, o.HTTPClientTLSKey)
		if err != nil {
			return nil, fmt.Errorf("--http-client-tls-cert and --http-client-tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// close drops the idle connections.
func (h *httpClient) close() { h.c.CloseIdleConnections() }

// getJSON GETs http://addr + path and decodes the JSON answer into v.
func (h *httpClient) getJSON(ctx context.Context, addr, path string, v any) error {
	return h.do(ctx, http.MethodGet, addr, path, nil, v)
}

// post POSTs to http://addr + path and discards the answer.
func (h *httpClient) post(ctx context.Context, addr, path string) error {
	return h.do(ctx, http.MethodPost, addr, path, nil, nil)
}

// do sends one request, following one 403-to-HTTPS redirection. A status other than 200 is
// an error quoting the answer, as NSQ's admin reports it: got response 404 Not Found "...".
// addr must be host:port (checkDaemonAddr): it may come from what a lookupd lists.
func (h *httpClient) do(ctx context.Context, method, addr, path string, body []byte, v any) error {
	scheme := "http://"
	if rest, ok := strings.CutPrefix(addr, "https://"); ok {
		scheme, addr = "https://", rest // a lookupd that serves TLS
	}
	if err := checkDaemonAddr(addr); err != nil {
		return err
	}
	endpoint := scheme + addr + path
	for attempt := 0; ; attempt++ {
		retry, err := h.try(ctx, method, &endpoint, body, v, attempt)
		if !retry {
			return err
		}
	}
}

// try is one attempt of do; retry says to try again at the HTTPS endpoint it stored.
func (h *httpClient) try(ctx context.Context, method string, endpoint *string, body []byte, v any, attempt int) (retry bool, err error) {
	reqCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	expired := time.AfterFunc(h.timeout, cancel)
	defer expired.Stop()
	defer func() {
		// The timer cancelled the request, not the caller: say what an operator needs.
		if err != nil && reqCtx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("no answer within %v", h.timeout)
		}
	}()
	req, err := http.NewRequestWithContext(reqCtx, method, *endpoint, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "application/vnd.nsq; version=1.0")
	resp, err := h.c.Do(req)
	if err != nil {
		return false, h.simplifyError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return false, h.decodeAnswer(ctx, resp, v, expired)
	}
	text, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes))
	if resp.StatusCode == http.StatusForbidden && attempt == 0 && strings.HasPrefix(*endpoint, "http:") {
		if next, ok := httpsEndpoint(*endpoint, text); ok {
			*endpoint = next
			return true, nil
		}
	}
	return false, &statusError{status: resp.Status, code: resp.StatusCode, body: bytes.TrimSpace(text)}
}

// statusError is an answer other than 200, quoted as NSQ's admin quotes it: got response 404
// Not Found "...". The code and the API's message are kept for callers that tell answers
// apart (an nsqd without an endpoint, a refused value).
type statusError struct {
	status string
	code   int
	body   []byte
}

func (e *statusError) Error() string { return fmt.Sprintf("got response %s %q", e.status, e.body) }

// message is the "message" of a JSON error answer, or the whole body when it is not JSON.
func (e *statusError) message() string {
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(e.body, &m) == nil && m.Message != "" {
		return m.Message
	}
	return string(e.body)
}

// checkDaemonAddr accepts host:port with a host name or IP address and nothing else: no
// user, path, query or fragment that would turn "http://" + addr + path into a request for
// some other URL.
func checkDaemonAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err == nil {
		if n, perr := strconv.Atoi(port); perr != nil || n <= 0 || n > 65535 {
			err = errors.New("bad port")
		}
	}
	if err == nil && (host == "" || strings.ContainsFunc(host, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '-' || r == '_' || r == ':')
	})) {
		err = errors.New("not a host name or IP address")
	}
	if err != nil {
		return fmt.Errorf("invalid daemon address %q: %v", addr, err)
	}
	return nil
}

// decodeAnswer reads a 200 answer into v, waiting for a decoding slot first. The request's
// timer is stopped while it waits and restarted for the read.
func (h *httpClient) decodeAnswer(ctx context.Context, resp *http.Response, v any, expiry *time.Timer) error {
	if v == nil {
		_, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswerBytes))
		return err
	}
	if !expiry.Stop() {
		return context.DeadlineExceeded // it fired: the request is cancelled already
	}
	select {
	case h.decoding <- struct{}{}:
		defer func() { <-h.decoding }()
	case <-ctx.Done():
		return ctx.Err()
	}
	expiry.Reset(h.timeout)
	buf, _ := h.buffers.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	defer func() {
		if buf.Cap() <= maxPooledBuffer {
			buf.Reset()
			h.buffers.Put(buf)
		}
	}()
	// Content-Length is the daemon's word: grow by at most a few MiB on it, and let the read
	// grow the rest as bytes really arrive.
	if resp.ContentLength > 0 {
		buf.Grow(int(min(resp.ContentLength, maxPooledBuffer)))
	}
	n, err := buf.ReadFrom(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return h.simplifyError(err)
	}
	if n > maxAnswerBytes {
		return fmt.Errorf("answer larger than %d MiB", maxAnswerBytes>>20)
	}
	if err := json.Unmarshal(buf.Bytes(), v); err != nil {
		return fmt.Errorf("bad JSON in the answer: %w", err)
	}
	return nil
}

// httpsEndpoint reads an nsqd's 403 answer, {"https_port":N} from a node that requires TLS,
// and returns endpoint over HTTPS on that port.
func httpsEndpoint(endpoint string, body []byte) (string, bool) {
	var forbidden struct {
		HTTPSPort int `json:"https_port"`
	}
	if json.Unmarshal(body, &forbidden) != nil || forbidden.HTTPSPort <= 0 {
		return "", false
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", false
	}
	u.Scheme = "https"
	u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(forbidden.HTTPSPort))
	return u.String(), true
}

// simplifyError drops the "Get \"http://...\":" wrapping of url.Error, since warnings name the
// node anyway, and says "no answer within" for a timeout, which is what an operator needs.
func (h *httpClient) simplifyError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return fmt.Errorf("no answer within %v", h.timeout)
		}
		return ue.Err
	}
	return err
}
