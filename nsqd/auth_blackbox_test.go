package nsqd_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	nsq "github.com/nsqio/go-nsq"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/internal/wiretest"
	"github.com/ternmq/tern/nsqd"
	"github.com/ternmq/tern/nsqd/nsqdtest"
)

// authServer is an auth server speaking NSQ's protocol: it answers the secrets it knows
// with their grants and refuses the others with 403, and records what it was asked.
type authServer struct {
	*httptest.Server
	mu      sync.Mutex
	secrets map[string]string // secret -> JSON answer
	asked   []url.Values
	block   chan struct{} // secret "slow" waits on it
}

func newAuthServer(t *testing.T) *authServer {
	a := &authServer{secrets: map[string]string{}, block: make(chan struct{})}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		a.mu.Lock()
		a.asked = append(a.asked, r.Form)
		answer, ok := a.secrets[r.Form.Get("secret")]
		a.mu.Unlock()
		if r.URL.Path != "/auth" {
			http.NotFound(w, r)
			return
		}
		if r.Form.Get("secret") == "slow" {
			<-a.block
		}
		if !ok {
			http.Error(w, `{"message":"unknown secret"}`, http.StatusForbidden)
			return
		}
		_, _ = w.Write([]byte(answer))
	}))
	t.Cleanup(func() { close(a.block); a.Close() })
	return a
}

func (a *authServer) grant(secret string, ttl int, identity string, grants ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.secrets[secret] = fmt.Sprintf(`{"ttl":%d,"identity":%q,"identity_url":"https://example.com/%s","authorizations":[%s]}`,
		ttl, identity, identity, strings.Join(grants, ","))
}

func (a *authServer) revoke(secret string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.secrets, secret)
}

func (a *authServer) questions() []url.Values {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]url.Values(nil), a.asked...)
}

// authNSQD runs an nsqd asking a; timeouts are short so that failures show quickly.
func authNSQD(t *testing.T, a *authServer, mutate func(*nsqd.Options)) *nsqd.NSQD {
	return nsqdtest.Start(t, func(o *nsqd.Options) {
		o.AuthHTTPAddresses = []string{strings.TrimPrefix(a.URL, "http://")}
		o.HTTPClientConnectTimeout = 500 * time.Millisecond
		o.HTTPClientRequestTimeout = 500 * time.Millisecond
		if mutate != nil {
			mutate(o)
		}
	})
}

// authed dials and AUTHs with secret, expecting the answer want (JSON) or an error prefix.
func authed(t *testing.T, addr, secret string) (*wiretest.Conn, string) {
	t.Helper()
	c := dialRaw(t, addr)
	resp, err := c.Identify(`"feature_negotiation":true`)
	must(t, err)
	if resp["auth_required"] != true {
		t.Fatalf("IDENTIFY: auth_required %v", resp["auth_required"])
	}
	must(t, c.Send(protocol.Auth(secret)))
	ft, body, err := c.Next()
	must(t, err)
	return c, fmt.Sprintf("%d %s", ft, body)
}

func TestAuth(t *testing.T) {
	t.Parallel()
	a := newAuthServer(t)
	a.grant("writer", 3600, "writer", `{"topic":"orders","channels":[".*"],"permissions":["publish"]}`)
	a.grant("reader", 3600, "reader", `{"topic":"orders","channels":["billing","audit.*"],"permissions":["subscribe"]}`)
	a.grant("nobody", 3600, "nobody")
	d := authNSQD(t, a, nil)
	addr := d.TCPAddr().String()

	c := dialRaw(t, addr)
	must(t, c.Send(protocol.Publish("orders", []byte("x"))))
	must(t, c.ExpectError("E_AUTH_FIRST AUTH required before PUB"))

	c, got := authed(t, addr, "writer")
	if got != `0 {"identity":"writer","identity_url":"https://example.com/writer","permission_count":1}` {
		t.Fatalf("AUTH answer: %s", got)
	}
	must(t, c.Publish("orders", "paid"))
	must(t, c.Send(protocol.Publish("orders_archive", []byte("x"))))
	must(t, c.ExpectError(`E_UNAUTHORIZED AUTH failed for PUB on "orders_archive" ""`))

	c, _ = authed(t, addr, "writer")
	must(t, c.Send(protocol.Subscribe("orders", "billing")))
	must(t, c.ExpectError(`E_UNAUTHORIZED AUTH failed for SUB on "orders" "billing"`))

	c, _ = authed(t, addr, "reader")
	must(t, c.Send(protocol.Subscribe("orders", "audit_2026")))
	must(t, c.ExpectResponse("OK"))

	_, got = authed(t, addr, "wrong")
	if got != "1 E_AUTH_FAILED AUTH failed" {
		t.Errorf("a wrong secret: %s", got)
	}
	_, got = authed(t, addr, "nobody")
	if got != "1 E_UNAUTHORIZED AUTH no authorizations found" {
		t.Errorf("a secret with no grants: %s", got)
	}

	// What the auth server was told.
	q := a.questions()[0]
	if q.Get("remote_ip") != "127.0.0.1" || q.Get("tls") != "false" || q.Get("secret") != "writer" || !q.Has("common_name") {
		t.Errorf("the auth server was asked %v", q)
	}

	// /stats shows who is who.
	cs, _ := d.ChannelStats("orders", "audit_2026")
	if len(cs.Clients) != 1 || !cs.Clients[0].Authed || cs.Clients[0].AuthIdentity != "reader" ||
		cs.Clients[0].AuthIdentityURL != "https://example.com/reader" {
		t.Errorf("stats: %+v", cs.Clients)
	}

	// Without auth servers, AUTH is disabled.
	plain := nsqdtest.Start(t, nil)
	p := dialRaw(t, plain.TCPAddr().String())
	must(t, p.Send(protocol.Auth("x")))
	must(t, p.ExpectError("E_AUTH_DISABLED AUTH disabled"))
}

// TestAuthGoNSQ: go-nsq with an auth secret publishes and consumes; without one it is refused.
func TestAuthGoNSQ(t *testing.T) {
	t.Parallel()
	a := newAuthServer(t)
	a.grant("s3cret", 3600, "app", `{"topic":"events","channels":[".*"],"permissions":["publish","subscribe"]}`)
	d := authNSQD(t, a, nil)
	addr := d.TCPAddr().String()
	cfg := nsq.NewConfig()
	cfg.AuthSecret = "s3cret"
	p := newProducer(t, addr, cfg)
	must(t, p.Publish("events", []byte("hello")))
	col := &collector{}
	newConsumer(t, addr, "events", "ch", cfg, col, 1)
	col.waitFor(t, 1, 10*time.Second)

	// go-nsq without a secret reads auth_required in the IDENTIFY answer and gives up.
	anon := newProducer(t, addr, nil)
	if err := anon.Publish("events", []byte("x")); err == nil || !strings.Contains(err.Error(), "Auth Required") {
		t.Errorf("go-nsq without a secret: %v", err)
	}
}

// TestAuthExpiry: grants are asked for again once their TTL has passed; a revoked secret
// then fails.
func TestAuthExpiry(t *testing.T) {
	t.Parallel()
	a := newAuthServer(t)
	a.grant("short", 1, "short", `{"topic":".*","channels":[".*"],"permissions":["publish"]}`)
	d := authNSQD(t, a, func(o *nsqd.Options) { o.AuthHTTPRequestMethod = "post" })
	c, _ := authed(t, d.TCPAddr().String(), "short")
	must(t, c.Publish("t", "1"))
	asked := len(a.questions())
	testutil.Eventually(t, 5*time.Second, func() bool {
		must(t, c.Publish("t", "again"))
		return len(a.questions()) > asked
	}, "the grants were never asked for again after their TTL")
	a.revoke("short")
	var err error
	testutil.Eventually(t, 5*time.Second, func() bool {
		_ = c.Send(protocol.Publish("t", []byte("revoked")))
		err = c.ExpectResponse("OK")
		return err != nil
	}, "a revoked secret still publishes")
	if !strings.Contains(err.Error(), "E_AUTH_FAILED AUTH failed") {
		t.Errorf("after the revocation: %v", err)
	}
}

// TestAuthServerDownOrSlow: an auth server that is down or does not answer costs the client
// that asked E_AUTH_FAILED within the HTTP client timeouts, and nobody else anything.
func TestAuthServerDownOrSlow(t *testing.T) {
	t.Parallel()
	a := newAuthServer(t)
	a.grant("fast", 3600, "fast", `{"topic":".*","channels":[".*"],"permissions":["publish"]}`)
	d := authNSQD(t, a, nil)
	addr := d.TCPAddr().String()

	slow := make(chan string, 1)
	start := time.Now()
	go func() {
		c := dialRaw(t, addr)
		_, _ = c.Identify(`"feature_negotiation":true`)
		_ = c.Send(protocol.Auth("slow"))
		_, body, err := c.Next()
		slow <- fmt.Sprint(string(body), err)
	}()
	// Meanwhile another client authenticates and publishes.
	c, _ := authed(t, addr, "fast")
	must(t, c.Publish("t", "unaffected"))
	if got := <-slow; !strings.Contains(got, "E_AUTH_FAILED AUTH failed") {
		t.Errorf("the slow auth: %s", got)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the slow auth took %v; the bound is the HTTP client timeouts", took)
	}

	dead, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	deadAddr := dead.Addr().String()
	must(t, dead.Close())
	down := nsqdtest.Start(t, func(o *nsqd.Options) { o.AuthHTTPAddresses = []string{deadAddr} })
	_, got := authed(t, down.TCPAddr().String(), "fast")
	if got != "1 E_AUTH_FAILED AUTH failed" {
		t.Errorf("with the auth server down: %s", got)
	}
}

// TestAuthOverTLS: the auth server is told that the client uses TLS and the common name of
// its certificate.
func TestAuthOverTLS(t *testing.T) {
	t.Parallel()
	ca := testutil.NewCA(t, "tern-test")
	certFile, keyFile, _ := ca.Issue(t, testutil.CertOptions{})
	_, _, clientCert := ca.Issue(t, testutil.CertOptions{Client: true, Name: "billing-service"})
	a := newAuthServer(t)
	a.grant("s3cret", 3600, "billing", `{"topic":".*","channels":[".*"],"permissions":["publish"]}`)
	d := authNSQD(t, a, func(o *nsqd.Options) {
		o.TLSCert, o.TLSKey, o.TLSRootCAFile, o.TLSClientAuthPolicy = certFile, keyFile, ca.File, "require-verify"
	})
	cfg := tlsConfig(ca, &clientCert)
	cfg.AuthSecret = "s3cret"
	p := newProducer(t, d.TCPAddr().String(), cfg)
	must(t, p.Publish("t", []byte("x")))
	q := a.questions()
	if len(q) != 1 || q[0].Get("tls") != "true" || q[0].Get("common_name") != "billing-service" {
		t.Errorf("the auth server was asked %v", q)
	}
}

// TestHTTPAPIAuth: with --http-api-auth, the HTTP API wants a bearer secret whose grants
// allow the request; with open reads, health checks and monitoring need none.
func TestHTTPAPIAuth(t *testing.T) {
	t.Parallel()
	a := newAuthServer(t)
	a.grant("writer", 3600, "writer", `{"topic":"orders","channels":[".*"],"permissions":["publish"]}`)
	a.grant("reader", 3600, "reader", `{"topic":"orders","channels":["billing"],"permissions":["subscribe"]}`)
	a.grant("root", 3600, "root", `{"topic":".*","channels":[".*"],"permissions":["publish","subscribe"]}`)
	for _, openReads := range []bool{false, true} {
		t.Run(fmt.Sprint("open reads ", openReads), func(t *testing.T) {
			d := authNSQD(t, a, func(o *nsqd.Options) { o.HTTPAPIAuth, o.HTTPAPIAuthOpenReads = true, openReads })
			base := "http://" + d.HTTPAddr().String()
			do := func(method, path, secret string) (int, string) {
				t.Helper()
				req, err := http.NewRequest(method, base+path, strings.NewReader("body"))
				must(t, err)
				if secret != "" {
					req.Header.Set("Authorization", "Bearer "+secret)
				}
				resp, err := http.DefaultClient.Do(req)
				must(t, err)
				defer resp.Body.Close()
				var b strings.Builder
				_, _ = io.Copy(&b, resp.Body)
				return resp.StatusCode, strings.TrimSpace(b.String())
			}
			readCode := 401
			if openReads {
				readCode = 200
			}
			for _, tc := range []struct {
				method, path, secret string
				code                 int
				body                 string
			}{
				{"POST", "/pub?topic=orders", "", 401, `{"message":"AUTH_REQUIRED"}`},
				{"POST", "/pub?topic=orders", "guess", 401, `{"message":"AUTH_FAILED"}`},
				{"POST", "/pub?topic=orders", "writer", 200, "OK"},
				{"POST", "/pub?topic=orders_archive", "writer", 403, `{"message":"UNAUTHORIZED"}`},
				{"POST", "/pub?topic=orders", "reader", 403, `{"message":"UNAUTHORIZED"}`},
				{"POST", "/channel/create?topic=orders&channel=billing", "reader", 200, ""},
				{"POST", "/channel/delete?topic=orders&channel=billing", "writer", 403, `{"message":"UNAUTHORIZED"}`},
				{"PUT", "/config/log_level", "writer", 403, `{"message":"UNAUTHORIZED"}`},
				{"GET", "/ping", "", readCode, ""},
				{"GET", "/stats?format=json", "", readCode, ""},
				{"GET", "/ping", "reader", 200, "OK"},
				{"GET", "/config/log_level", "", 401, `{"message":"AUTH_REQUIRED"}`},
				{"GET", "/config/log_level", "reader", 403, `{"message":"UNAUTHORIZED"}`},
				{"GET", "/config/log_level", "root", 200, ""},
				{"GET", "/debug/pprof/cmdline", "writer", 403, `{"message":"UNAUTHORIZED"}`},
				{"POST", "/topic/empty?topic=orders", "writer", 403, `{"message":"UNAUTHORIZED"}`},
				{"POST", "/topic/pause?topic=orders", "writer", 200, ""},
				{"POST", "/topic/empty?topic=orders", "root", 200, ""},
			} {
				code, body := do(tc.method, tc.path, tc.secret)
				if code != tc.code || tc.body != "" && body != tc.body {
					t.Errorf("%s %s with %q: %d %s, want %d %s", tc.method, tc.path, tc.secret, code, body, tc.code, tc.body)
				}
			}
			if code, _ := do("PUT", "/config/log_level", "root"); code != 400 && code != 200 {
				t.Errorf("PUT /config by a grant of everything: %d", code)
			}
		})
	}
	// The answers are cached: many requests, few questions.
	d := authNSQD(t, a, func(o *nsqd.Options) { o.HTTPAPIAuth = true })
	before := len(a.questions())
	for range 20 {
		req, _ := http.NewRequest("POST", "http://"+d.HTTPAddr().String()+"/pub?topic=orders", strings.NewReader("x"))
		req.Header.Set("Authorization", "Bearer writer")
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		_ = resp.Body.Close()
	}
	if asked := len(a.questions()) - before; asked != 1 {
		t.Errorf("20 publishes asked the auth server %d times", asked)
	}
	// And a refused secret is refused for a while without asking again.
	before = len(a.questions())
	for range 20 {
		req, _ := http.NewRequest("POST", "http://"+d.HTTPAddr().String()+"/pub?topic=orders", strings.NewReader("x"))
		req.Header.Set("Authorization", "Bearer made-up")
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		_ = resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("a made-up secret: %d", resp.StatusCode)
		}
	}
	if asked := len(a.questions()) - before; asked != 1 {
		t.Errorf("20 requests with a made-up secret asked the auth server %d times", asked)
	}
}
