package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Tern's per-topic and per-channel settings (TTL, quotas, retention, max attempts), applied
// over the daemon's HTTP API before the load, so that a run measures the daemon with a
// feature on: --topic-settings '{"message_ttl_ms":60000}'.

// hasSettings reports whether the run configures settings, which needs the daemon's HTTP API.
func (c config) hasSettings() bool { return c.TopicSettings != "" || c.ChannelSettings != "" }

// validateSettings checks that the settings are JSON objects and that an HTTP API is known.
func (c config) validateSettings() []error {
	var errs []error
	for _, s := range []struct{ flag, v string }{{"topic-settings", c.TopicSettings}, {"channel-settings", c.ChannelSettings}} {
		var obj map[string]any
		if s.v != "" && json.Unmarshal([]byte(s.v), &obj) != nil {
			errs = append(errs, fmt.Errorf("--%s %q is not a JSON object", s.flag, s.v))
		}
	}
	if c.hasSettings() && c.NSQDTCPAddress != "" && c.NSQDHTTPAddress == "" {
		errs = append(errs, fmt.Errorf("--topic-settings and --channel-settings need --nsqd-http-address with --nsqd-tcp-address"))
	}
	return errs
}

// applySettings creates every topic of the run, and its channel when it has settings, and
// sets them through the HTTP API at httpAddr.
func applySettings(ctx context.Context, cfg config, httpAddr string) error {
	client := &http.Client{Timeout: 10 * time.Second}
	post := func(path string, q url.Values, body string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+httpAddr+path+"?"+q.Encode(), strings.NewReader(body))
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("POST %s: %s %s", path, resp.Status, b)
		}
		return nil
	}
	for i := range max(cfg.Topics, 1) {
		q := url.Values{"topic": {cfg.topicName(i)}}
		if err := post("/topic/create", q, ""); err != nil {
			return err
		}
		if cfg.TopicSettings != "" {
			if err := post("/topic/settings", q, cfg.TopicSettings); err != nil {
				return err
			}
		}
		if cfg.ChannelSettings != "" {
			q.Set("channel", cfg.Channel)
			if err := post("/channel/create", q, ""); err != nil {
				return err
			}
			if err := post("/channel/settings", q, cfg.ChannelSettings); err != nil {
				return err
			}
		}
	}
	return nil
}
