package nsqd

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/ternmq/tern/internal/tlsfiles"
)

// maxAuthAnswerBytes bounds what nsqd reads of an auth server's answer.
const maxAuthAnswerBytes = 1 << 20

// authServers asks the --auth-http-address servers about a client's secret, NSQ's auth
// protocol: GET (or, with --auth-http-request-method=post, POST as a form)
// /auth?remote_ip=&tls=&secret=&common_name= on each server in turn, from a random one,
// until one answers 200 with {"ttl", "identity", "identity_url", "authorizations"}.
// Every request is bounded by the HTTP client timeouts, so an auth server that is down or
// slow costs the client that asked a bounded wait and nobody else anything: each connection
// asks from its own read loop.
type authServers struct {
	addrs  []string
	post   bool
	client *http.Client
}

func newAuthServers(o *Options) (*authServers, error) {
	if len(o.AuthHTTPAddresses) == 0 {
		return nil, nil
	}
	roots, err := tlsfiles.RootCAs(o.TLSRootCAFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-root-ca-file: %w", err)
	}
	return &authServers{
		addrs: o.AuthHTTPAddresses,
		post:  o.AuthHTTPRequestMethod == "post",
		client: &http.Client{
			Timeout: o.HTTPClientConnectTimeout + o.HTTPClientRequestTimeout,
			Transport: &http.Transport{
				DialContext:           (&net.Dialer{Timeout: o.HTTPClientConnectTimeout}).DialContext,
				ResponseHeaderTimeout: o.HTTPClientRequestTimeout,
				TLSHandshakeTimeout:   o.HTTPClientRequestTimeout,
				TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tlsfiles.Version(o.TLSMinVersion)},
				MaxIdleConnsPerHost:   4,
				IdleConnTimeout:       90 * time.Second,
			},
			// An auth server answers; it does not send the secret elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

func (a *authServers) close() {
	if a != nil {
		a.client.CloseIdleConnections()
	}
}

// authState is what an auth server granted a client, until expires.
type authState struct {
	identity, identityURL string
	grants                []grant
	expires               time.Time
}

// grant is one authorization: a topic pattern, channel patterns and permissions. Tern anchors
// the patterns (a pattern must match the whole name); NSQ matches them anywhere in it, so
// that "orders" also grants "orders_archive".
type grant struct {
	topic              *regexp.Regexp
	channels           []*regexp.Regexp
	publish, subscribe bool
	all                bool // topic ".*" and a channel ".*": every topic and channel
	anyChannel         bool // a channel ".*": every channel of the topics it matches
}

// allows reports whether s grants publishing to topic (channel "") or subscribing to
// channel of topic.
func (s *authState) allows(topic, channel string) bool {
	for _, g := range s.grants {
		if channel == "" && !g.publish || channel != "" && !g.subscribe {
			continue
		}
		if !g.topic.MatchString(topic) {
			continue
		}
		// As in NSQ, a publish (channel "") needs a channel pattern that matches "" too.
		for _, c := range g.channels {
			if c.MatchString(channel) {
				return true
			}
		}
	}
	return false
}

// allowsEverything reports whether s grants publish and subscribe on every topic and
// channel: what the HTTP API asks of a request that changes the whole daemon.
func (s *authState) allowsEverything() bool {
	for _, g := range s.grants {
		if g.all && g.publish && g.subscribe {
			return true
		}
	}
	return false
}

// allowsTopicAdmin reports whether s grants publish and subscribe on every channel of topic:
// what the HTTP API asks of a request that deletes or empties a topic.
func (s *authState) allowsTopicAdmin(topic string) bool {
	for _, g := range s.grants {
		if g.publish && g.subscribe && g.anyChannel && g.topic.MatchString(topic) {
			return true
		}
	}
	return false
}

// authRequest is what nsqd tells the auth server about a client.
type authRequest struct {
	remoteIP, commonName, secret string
	tls                          bool
}

// query asks the auth servers, starting from a random one, and returns the first answer.
func (a *authServers) query(ctx context.Context, r authRequest, start int) (*authState, error) {
	var errs []string
	for i := range a.addrs {
		addr := a.addrs[(start+i)%len(a.addrs)]
		s, err := a.queryOne(ctx, addr, r)
		if err == nil {
			return s, nil
		}
		errs = append(errs, fmt.Sprintf("failed to auth against %s - %v", addr, err))
	}
	return nil, errors.New(strings.Join(errs, "; "))
}

func (a *authServers) queryOne(ctx context.Context, addr string, r authRequest) (*authState, error) {
	v := url.Values{}
	v.Set("remote_ip", r.remoteIP)
	v.Set("tls", fmt.Sprint(r.tls))
	v.Set("secret", r.secret)
	v.Set("common_name", r.commonName)
	endpoint := addr
	if !strings.Contains(addr, "://") {
		endpoint = "http://" + addr + "/auth"
	}
	var req *http.Request
	var err error
	if a.post {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(v.Encode()))
		if req != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"?"+v.Encode(), nil)
	}
	if err != nil {
		// The error quotes the URL, and the URL holds the secret.
		return nil, fmt.Errorf("invalid auth server address %q", addr)
	}
	req.Header.Set("Accept", "application/vnd.nsq; version=1.0")
	resp, err := a.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL holds the secret: never log it
		}
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAuthAnswerBytes))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("got response %s", resp.Status)
	}
	var answer struct {
		TTL            int    `json:"ttl"`
		Identity       string `json:"identity"`
		IdentityURL    string `json:"identity_url"`
		Authorizations []struct {
			Topic       string   `json:"topic"`
			Channels    []string `json:"channels"`
			Permissions []string `json:"permissions"`
		} `json:"authorizations"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return nil, fmt.Errorf("bad JSON: %w", err)
	}
	if answer.TTL <= 0 {
		return nil, fmt.Errorf("invalid TTL %d (must be >0)", answer.TTL)
	}
	s := &authState{identity: answer.Identity, identityURL: answer.IdentityURL,
		expires: time.Now().Add(time.Duration(answer.TTL) * time.Second)}
	for _, au := range answer.Authorizations {
		var g grant
		for _, p := range au.Permissions {
			switch p {
			case "publish":
				g.publish = true
			case "subscribe":
				g.subscribe = true
			default:
				return nil, fmt.Errorf("unknown permission %s", p)
			}
		}
		if g.topic, err = anchored(au.Topic); err != nil {
			return nil, fmt.Errorf("unable to compile topic %q %v", au.Topic, err)
		}
		for _, c := range au.Channels {
			re, err := anchored(c)
			if err != nil {
				return nil, fmt.Errorf("unable to compile channel %q %v", c, err)
			}
			g.channels = append(g.channels, re)
			g.all = g.all || au.Topic == ".*" && c == ".*"
			g.anyChannel = g.anyChannel || c == ".*"
		}
		s.grants = append(s.grants, g)
	}
	return s, nil
}

// anchored compiles a pattern that must match a whole name.
func anchored(pattern string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + pattern + `)$`)
}
