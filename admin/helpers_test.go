package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/lookupd"
	"github.com/ternmq/tern/lookupd/lookupdtest"
	"github.com/ternmq/tern/nsq"
	"github.com/ternmq/tern/nsqd"
	"github.com/ternmq/tern/nsqd/nsqdtest"
)

// TestMain runs the package's tests, then fails if any goroutine is left: every admin,
// daemon, client and browser a test starts must be gone when it ends.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// chromedp's allocator keeps a goroutine until the browser process is reaped.
		goleak.IgnoreTopFunction("os/exec.(*Cmd).awaitGoroutines"),
	)
}

// stopTimeout bounds waiting for an admin to stop.
const stopTimeout = 15 * time.Second

// startAdmin runs an Admin on 127.0.0.1:0 until the test ends. configure may change the
// options (the cluster's addresses must be set there).
func startAdmin(t testing.TB, configure func(*Options)) *Admin {
	t.Helper()
	a, stop := startAdminWithStop(t, configure)
	t.Cleanup(stop)
	return a
}

func startAdminWithStop(t testing.TB, configure func(*Options)) (*Admin, func()) {
	t.Helper()
	return runAdmin(t, newTestAdmin(t, configure))
}

// newTestAdmin makes an Admin on 127.0.0.1:0 without running it, so that a test may set its
// parts (a clock, a hook) before it serves.
func newTestAdmin(t testing.TB, configure func(*Options)) *Admin {
	t.Helper()
	o := NewOptions()
	o.HTTPAddress = "127.0.0.1:0"
	o.LogLevel = "debug"
	configure(o)
	a, err := New(o, testutil.Logger(t), nil)
	if err != nil {
		t.Fatalf("admin.New: %v", err)
	}
	return a
}

// runAdmin runs a until the returned stop is called.
func runAdmin(t testing.TB, a *Admin) (*Admin, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	return a, func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("admin.Run: %v", err)
				}
			case <-time.After(stopTimeout):
				t.Errorf("admin did not stop within %v", stopTimeout)
			}
		})
	}
}

// testCluster is an in-process cluster: one lookupd, nsqd nodes registered with it, and an
// admin over it.
type testCluster struct {
	lookupd *lookupd.Lookupd
	nodes   []*nsqd.NSQD
	admin   *Admin
}

// startCluster runs a lookupd, n nsqd nodes registered with it and an admin over the lookupd.
// configure, when not nil, may change the admin's options.
func startCluster(t *testing.T, n int, configure func(*Options)) *testCluster {
	t.Helper()
	c := &testCluster{lookupd: lookupdtest.Start(t, nil)}
	for i := range n {
		c.nodes = append(c.nodes, startNode(t, c.lookupd, int64(i+1)))
	}
	c.admin = startAdmin(t, func(o *Options) {
		o.NSQLookupdHTTPAddresses = []string{c.lookupd.HTTPAddr().String()}
		if configure != nil {
			configure(o)
		}
	})
	return c
}

func startNode(t *testing.T, l *lookupd.Lookupd, id int64) *nsqd.NSQD {
	t.Helper()
	return nsqdtest.Start(t, func(o *nsqd.Options) {
		o.NodeID = id
		o.LookupdTCPAddresses = []string{l.TCPAddr().String()}
	})
}

// url is the admin's address for path.
func (c *testCluster) url(path string) string { return adminURL(c.admin, path) }

func adminURL(a *Admin, path string) string {
	return "http://" + a.HTTPAddr().String() + a.basePath + path
}

// publish publishes bodies to topic on node i over HTTP and waits until the lookupd lists the
// topic for that node, so that the admin sees it.
func (c *testCluster) publish(t *testing.T, i int, topic string, bodies ...string) {
	t.Helper()
	for _, b := range bodies {
		resp, err := http.Post("http://"+c.nodes[i].HTTPAddr().String()+"/pub?topic="+topic, "text/plain", strings.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("publish to %s: %s", topic, resp.Status)
		}
	}
	c.waitRegistered(t, i, topic)
}

// waitRegistered waits until the lookupd lists topic for node i.
func (c *testCluster) waitRegistered(t *testing.T, i int, topic string) {
	t.Helper()
	node := c.nodes[i].HTTPAddr().String()
	testutil.Eventually(t, 10*time.Second, func() bool {
		var lookup struct {
			Producers []struct {
				BroadcastAddress string `json:"broadcast_address"`
				HTTPPort         int    `json:"http_port"`
			} `json:"producers"`
		}
		if code := getJSON(t, "http://"+c.lookupd.HTTPAddr().String()+"/lookup?topic="+topic, &lookup); code != 200 {
			return false
		}
		for _, p := range lookup.Producers {
			if strings.HasSuffix(node, ":"+strconv.Itoa(p.HTTPPort)) {
				return true
			}
		}
		return false
	}, "the lookupd lists topic %s for node %s", topic, node)
}

// consume subscribes a consumer with the given client ID to topic/channel on node i until the
// test ends; received messages are left unfinished when hold is set, so they stay in flight.
func (c *testCluster) consume(t *testing.T, i int, topic, channel, clientID string, hold bool) *nsq.Consumer {
	t.Helper()
	cfg := nsq.NewConfig()
	cfg.ClientID = clientID
	cfg.MaxInFlight = 10
	var mu sync.Mutex
	var held []*nsq.Message
	h := nsq.HandlerFunc(func(m *nsq.Message) error {
		if hold {
			m.DisableAutoResponse()
			mu.Lock()
			held = append(held, m)
			mu.Unlock()
		}
		return nil
	})
	con, err := nsq.NewConsumer(topic, channel, h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := con.ConnectToNSQD(ctx, c.nodes[i].TCPAddr().String()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Stop waits for messages in flight: finish the held ones first.
		mu.Lock()
		for _, m := range held {
			m.Finish()
		}
		mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = con.Stop(ctx)
	})
	return con
}

// getJSON GETs url and decodes a 200 answer into v; it returns the status.
func getJSON(t testing.TB, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == 200 && v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v in %s", url, err, body)
		}
	}
	return resp.StatusCode
}

// call sends a request with an optional JSON body and returns the status and the body.
func call(t testing.TB, method, url, body string, header ...string) (int, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(bytes.TrimSpace(b))
}

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// writeCertPEM writes the certificate of a TLS test server to a PEM file and returns its path.
func writeCertPEM(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeFile(t *testing.T, dir, name, data string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fakeDaemon serves fixed JSON answers by path, like an nsqd or a lookupd would, and returns
// its host:port.
func fakeDaemon(t testing.TB, answers map[string]string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := answers[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}
