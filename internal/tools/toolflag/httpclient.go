package toolflag

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/ternmq/tern/internal/version"
)

// HTTPClient returns the client of a tool's --http-client-connect-timeout and
// --http-client-request-timeout: connections are dialled within connect, and a request,
// body included, takes at most request.
func HTTPClient(connect, request time.Duration) *http.Client {
	return &http.Client{
		Timeout: request,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}).DialContext,
			ResponseHeaderTimeout: request,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   64,
		},
	}
}

// maxAnswerBytes bounds what a tool reads of one lookupd or nsqd answer: /stats of a node
// with tens of thousands of clients is tens of MB.
const maxAnswerBytes = 64 << 20

// GetJSON GETs u with client, as NSQ's tools do (NSQ's Accept header, the tool's user agent),
// and decodes a 200 answer into v; any other status is an error quoting the answer.
func GetJSON(ctx context.Context, client *http.Client, tool, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/vnd.nsq; version=1.0")
	req.Header.Set("User-Agent", fmt.Sprintf("%s/%s", tool, version.Binary))
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}
