package nsq

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ConnectToNSQLookupd adds an nsqlookupd to ask where the topic is. addr is "host:port"
// of its HTTP interface or a URL ("http://host:port", or with a path other than /lookup).
// The first lookupd added starts the polling: at once, and then every
// Config.LookupdPollInterval, less a random jitter, the Consumer asks every lookupd it
// knows, connects to the nsqds that any of them lists and drains and drops the ones none
// lists any more. A lookupd that fails to answer keeps its previous answer, so that a
// lookupd outage does not disconnect anything.
func (c *Consumer) ConnectToNSQLookupd(addr string) error {
	u, err := lookupURL(addr, c.topic)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		return ErrStopped
	}
	if slices.Contains(c.lookupds, u) {
		return nil
	}
	c.lookupds = append(c.lookupds, u)
	if len(c.lookupds) == 1 {
		c.loops.Add(1)
		go c.lookupLoop()
	} else {
		c.pollSoon()
	}
	return nil
}

// lookupURL turns a lookupd address into its /lookup query for topic.
func lookupURL(addr, topic string) (string, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("nsq: lookupd address %q is not host:port or a URL", addr)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/lookup"
	}
	q := u.Query()
	q.Set("topic", topic)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// lookupdTransport is the HTTP transport of the lookupd queries: Config.TLS, when set,
// verifies https:// lookupds (and presents its client certificate) as it does nsqds, each
// lookupd checked against its own host name.
func lookupdTransport(cfg *tls.Config) *http.Transport {
	t := &http.Transport{Proxy: http.ProxyFromEnvironment, IdleConnTimeout: 90 * time.Second}
	if cfg != nil {
		t.TLSClientConfig = cfg.Clone()
		t.TLSClientConfig.ServerName = ""
	}
	return t
}

// pollSoon asks the lookupd loop to poll now rather than at its next interval.
func (c *Consumer) pollSoon() {
	select {
	case c.pollNow <- struct{}{}:
	default:
	}
}

// lookupLoop polls the lookupds. It is started by the first ConnectToNSQLookupd and
// returns when Stop begins.
func (c *Consumer) lookupLoop() {
	defer c.loops.Done()
	client := &http.Client{Timeout: c.cfg.LookupdPollTimeout, Transport: lookupdTransport(c.cfg.TLS)}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := context.AfterFunc(c.hardCtx, cancel)
	defer stop()
	go func() {
		select {
		case <-c.stopCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		c.pollLookupds(ctx, client)
		wait := c.cfg.LookupdPollInterval
		if j := c.cfg.LookupdPollJitter; j > 0 {
			wait -= time.Duration(rand.Float64() * j * float64(wait))
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-c.pollNow:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// lookupResponse is the part of a lookupd's /lookup answer a Consumer uses.
type lookupResponse struct {
	Producers []struct {
		BroadcastAddress string `json:"broadcast_address"`
		TCPPort          int    `json:"tcp_port"`
	} `json:"producers"`
}

// pollLookupds asks every lookupd at once and reconciles the nsqds with their answers.
func (c *Consumer) pollLookupds(ctx context.Context, client *http.Client) {
	c.mu.Lock()
	urls := slices.Clone(c.lookupds)
	c.mu.Unlock()
	type result struct {
		url   string
		addrs []string
		err   error
	}
	results := make([]result, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Go(func() {
			addrs, err := queryLookupd(ctx, client, u)
			results[i] = result{u, addrs, err}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		return
	}
	for _, r := range results {
		if r.err != nil {
			c.logger.Warn("lookupd query failed", "url", r.url, "error", r.err)
			continue
		}
		c.lookupResults[r.url] = r.addrs
	}
	wanted := make(map[string]bool)
	for _, addrs := range c.lookupResults {
		for _, a := range addrs {
			wanted[a] = true
		}
	}
	for addr, n := range c.nodes {
		if n.discovered && !wanted[addr] {
			c.logger.Info("nsqd no longer listed by lookupd: draining", "nsqd", addr)
			delete(c.nodes, addr)
			n.cancel()
		}
	}
	for addr := range wanted {
		if _, ok := c.nodes[addr]; ok {
			continue
		}
		c.logger.Info("nsqd discovered", "nsqd", addr)
		n := c.newNode(addr, true)
		c.nodes[addr] = n
		c.nodesWG.Add(1)
		go c.runNode(n, nil)
	}
}

// queryLookupd returns the nsqd addresses one lookupd lists for the topic. A topic the
// lookupd does not know (404) has none.
func queryLookupd(ctx context.Context, client *http.Client, u string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("lookupd request: %w", err)
	}
	req.Header.Set("Accept", "application/vnd.nsq; version=1.0")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("lookupd query: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("lookupd query: %w", err)
	}
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("lookupd query: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var lr lookupResponse
	if err := json.Unmarshal(body, &lr); err != nil {
		return nil, fmt.Errorf("lookupd query: decode: %w", err)
	}
	var addrs []string
	for _, p := range lr.Producers {
		if p.BroadcastAddress == "" || p.TCPPort <= 0 {
			return nil, errors.New("lookupd query: producer without broadcast_address or tcp_port")
		}
		addrs = append(addrs, net.JoinHostPort(p.BroadcastAddress, strconv.Itoa(p.TCPPort)))
	}
	return addrs, nil
}
