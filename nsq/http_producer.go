package nsq

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// HTTPProducer publishes through an nsqd's HTTP API (POST /pub and /mpub). It holds no
// connection of its own beyond its http.Client's pool and is safe for concurrent use. It
// suits publishers that already speak HTTP or publish rarely; for throughput, use
// [Producer].
type HTTPProducer struct {
	base   *url.URL
	client *http.Client
}

// HTTPError is an error answer from nsqd's HTTP API: the status code and NSQ's message,
// such as "TOPIC_MISSING" or "MSG_TOO_BIG". Match it with errors.As.
type HTTPError struct {
	// StatusCode is the HTTP status, such as 400.
	StatusCode int
	// Message is the "message" of nsqd's JSON answer, or the body's text if it was not
	// JSON.
	Message string
}

// Error returns "nsq: HTTP <status>: <message>".
func (e *HTTPError) Error() string {
	return "nsq: HTTP " + strconv.Itoa(e.StatusCode) + ": " + e.Message
}

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 64 * 1024

// NewHTTPProducer returns an HTTPProducer for the nsqd HTTP API at baseURL, such as
// "http://127.0.0.1:4151" (a path prefix is kept). A nil client means one with a 10s
// timeout, so that a call without a context deadline cannot hang for ever.
func NewHTTPProducer(baseURL string, client *http.Client) (*HTTPProducer, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("nsq: parse nsqd URL %q: %w", baseURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("nsq: nsqd URL %q: scheme must be http or https", baseURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("nsq: nsqd URL %q has no host", baseURL)
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &HTTPProducer{base: u, client: client}, nil
}

// Publish publishes body to topic.
func (h *HTTPProducer) Publish(ctx context.Context, topic string, body []byte) error {
	if err := checkPublish("PUB", topic, body); err != nil {
		return err
	}
	return h.post(ctx, "pub", url.Values{"topic": {topic}}, body)
}

// DeferredPublish publishes body to topic, to be delivered no sooner than delay from now
// (rounded down to milliseconds).
func (h *HTTPProducer) DeferredPublish(ctx context.Context, topic string, delay time.Duration, body []byte) error {
	if err := checkPublish("DPUB", topic, body); err != nil {
		return err
	}
	q := url.Values{"topic": {topic}, "defer": {strconv.FormatInt(max(delay.Milliseconds(), 0), 10)}}
	return h.post(ctx, "pub", q, body)
}

// MultiPublish publishes bodies to topic as one batch. It uses /mpub's binary mode, so
// bodies may contain newlines.
func (h *HTTPProducer) MultiPublish(ctx context.Context, topic string, bodies [][]byte) error {
	cmd, err := multiPublish(topic, bodies)
	if err != nil {
		return err
	}
	return h.post(ctx, "mpub", url.Values{"topic": {topic}, "binary": {"true"}}, cmd.Body)
}

func (h *HTTPProducer) post(ctx context.Context, endpoint string, q url.Values, body []byte) error {
	u := *h.base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + endpoint
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("nsq: build %s request: %w", endpoint, err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("nsq: %s to %s: %w", endpoint, h.base.Host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		// Drain so the connection goes back to the pool; the answer is "OK".
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil
	}
	return decodeHTTPError(resp)
}

// decodeHTTPError turns an error answer into an [*HTTPError]. nsqd sends
// {"message":"TEXT"}; NSQ before 1.0 wrapped answers as {"status_code":..,"status_txt":..}
// unless asked otherwise, and a proxy may send anything, so both are understood and other
// text is kept as it is.
func decodeHTTPError(resp *http.Response) error {
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil && !errors.Is(err, io.EOF) {
		return &HTTPError{StatusCode: resp.StatusCode, Message: resp.Status}
	}
	var body struct {
		Message   string `json:"message"`
		StatusTxt string `json:"status_txt"`
	}
	msg := strings.TrimSpace(string(raw))
	if json.Unmarshal(raw, &body) == nil {
		switch {
		case body.Message != "":
			msg = body.Message
		case body.StatusTxt != "":
			msg = body.StatusTxt
		}
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &HTTPError{StatusCode: resp.StatusCode, Message: msg}
}
