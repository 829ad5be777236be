package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"
)

// notificationQueue bounds the notifications waiting to be sent; beyond it they are dropped
// and logged, so that a dead endpoint cannot grow the admin's memory.
const notificationQueue = 1000

// notificationDrainTimeout bounds sending the queued notifications at shutdown.
const notificationDrainTimeout = 5 * time.Second

// adminAction is the notification posted for every action, NSQ's format key for key, so that
// whatever consumes NSQ's admin notifications reads Tern's.
type adminAction struct {
	Action    string `json:"action"`
	Topic     string `json:"topic"`
	Channel   string `json:"channel,omitempty"`
	Node      string `json:"node,omitempty"`
	Timestamp int64  `json:"timestamp"`
	// User is the logged-in user with --user; otherwise, as in NSQ, the user name of HTTP
	// basic authentication (the admin check uses --acl-http-header instead).
	User      string `json:"user,omitempty"`
	RemoteIP  string `json:"remote_ip"`
	UserAgent string `json:"user_agent"`
	// URL is the request that caused the action.
	URL string `json:"url"`
	// Via is the host name of the admin that acted.
	Via string `json:"via"`
}

// notifier posts notifications to --notification-http-endpoint from one goroutine, in the
// order the actions happened. Posting never delays the action: notify only queues.
type notifier struct {
	endpoint string
	client   *http.Client
	via      string
	logger   *slog.Logger
	queue    chan *adminAction
}

func newNotifier(endpoint string, client *http.Client, via string, logger *slog.Logger) *notifier {
	return &notifier{endpoint: endpoint, client: client, via: via, logger: logger,
		queue: make(chan *adminAction, notificationQueue)}
}

// notify queues the notification of act, caused by r. It does nothing without an endpoint.
func (n *notifier) notify(act action, r *http.Request) {
	if n.endpoint == "" {
		return
	}
	u := url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path, RawQuery: r.URL.RawQuery}
	if r.TLS != nil || r.Header.Get("X-Scheme") == "https" {
		u.Scheme = "https"
	}
	a := &adminAction{
		Action:    act.notification(),
		Topic:     act.topic,
		Channel:   act.channel,
		Node:      act.node,
		Timestamp: time.Now().Unix(),
		User:      basicAuthUser(r),
		RemoteIP:  r.RemoteAddr,
		UserAgent: r.UserAgent(),
		URL:       u.String(),
		Via:       n.via,
	}
	select {
	case n.queue <- a:
	default:
		n.logger.Warn("notification dropped: too many waiting", "action", a.Action, "topic", a.Topic, "channel", a.Channel)
	}
}

// newNotificationClient is the notifier's own HTTP client: the endpoint is not a daemon of
// the cluster, so it gets Go's default TLS verification (not the --http-client-tls-* options,
// which may skip verification or present the cluster's client certificate) and no redirects.
func newNotificationClient(o *Options) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: o.HTTPClientConnectTimeout}).DialContext,
			TLSHandshakeTimeout: o.HTTPClientRequestTimeout,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     90 * time.Second,
		},
		Timeout:       o.HTTPClientConnectTimeout + o.HTTPClientRequestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// run sends notifications until ctx ends, then sends what is still queued, for a few seconds
// at most. It is the notifier's only sender; Admin.Run owns its goroutine.
func (n *notifier) run(ctx context.Context) {
	defer n.client.CloseIdleConnections()
	for {
		select {
		case a := <-n.queue:
			n.send(ctx, a)
		case <-ctx.Done():
			drain, cancel := context.WithTimeout(context.Background(), notificationDrainTimeout)
			defer cancel()
			for {
				select {
				case a := <-n.queue:
					n.send(drain, a)
				default:
					return
				}
			}
		}
	}
}

func (n *notifier) send(ctx context.Context, a *adminAction) {
	body, err := json.Marshal(a)
	if err != nil {
		n.logger.Error("notification not encodable", "error", err)
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.endpoint, bytes.NewReader(body))
	if err != nil {
		n.logger.Error("notification request", "error", err)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.client.Do(req)
	if err != nil {
		n.logger.Warn("notification not sent", "action", a.Action, "endpoint", n.endpoint, "error", err)
		return
	}
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		n.logger.Warn("notification refused", "action", a.Action, "endpoint", n.endpoint, "status", resp.Status)
	}
}

// basicAuthUser returns the logged-in user (--user), or the user name of the request's HTTP
// basic authentication, or "".
func basicAuthUser(r *http.Request) string {
	if u, ok := r.Context().Value(userKey{}).(string); ok {
		return u
	}
	user, _, _ := r.BasicAuth()
	return user
}
