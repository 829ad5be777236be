package admin

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/nsqd"
	"github.com/ternmq/tern/nsqd/nsqdtest"
)

// page GETs an admin page and returns its status, headers and body.
func page(t *testing.T, u string) (int, http.Header, string) {
	t.Helper()
	resp, err := noRedirect.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// postForm posts an action form and returns the status, the redirect target and the body.
func postForm(t *testing.T, u string, form url.Values, header ...string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

// TestPagesShowTheCluster renders every page over a real cluster and checks what an operator
// looks for is there, that values from the cluster are escaped, and that every page carries
// the security headers.
func TestPagesShowTheCluster(t *testing.T) {
	c := startCluster(t, 2, nil)
	node0 := c.nodes[0].HTTPAddr().String()
	c.publish(t, 0, "orders", "a", "b", "c")
	c.publish(t, 1, "orders", "d")
	const evil = `<img src=x onerror=alert(1)>`
	c.consume(t, 0, "orders", "billing", evil, true)
	testutil.Eventually(t, 10*time.Second, func() bool {
		cs, ok := c.nodes[0].ChannelStats("orders", "billing")
		return ok && cs.ClientCount == 1
	}, "the consumer subscribed")
	if code, body := call(t, "POST", c.url("/api/topics"), `{"topic":"planned"}`); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	c.admin.cache.invalidate()

	tests := []struct {
		path string
		want []string
	}{
		{"/", []string{"<h1>Topics</h1>", `href="/topics/orders"`, "Depth, whole cluster", "1 more topic is known to the lookupds"}},
		{"/topics", []string{`href="/topics/orders"`}},
		{"/topics/orders", []string{"orders", `href="/topics/orders/billing"`, node0, "Tombstone", "Messages per second"}},
		{"/topics/orders/billing", []string{"billing", "&lt;img src=x onerror=alert(1)&gt;", `href="/nodes/` + node0 + `"`, "Depth of billing"}},
		{"/topics/planned", []string{"No node has this topic"}},
		{"/nodes", []string{node0, "1 of 1", "ok"}},
		{"/nodes/" + node0, []string{"Prometheus metrics", `href="/topics/orders/billing"`, "&lt;img"}},
		{"/lookup", []string{`href="/topics/planned"`}},
		{"/counter", []string{"messages processed by every channel"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			code, h, body := page(t, c.url(tt.path))
			if code != 200 || h.Get("Content-Type") != "text/html; charset=utf-8" {
				t.Fatalf("GET %s: %d %s\n%s", tt.path, code, h.Get("Content-Type"), body)
			}
			if h.Get("Content-Security-Policy") != contentSecurityPolicy || h.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("GET %s: security headers %v", tt.path, h)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("GET %s does not contain %q", tt.path, w)
				}
			}
			if strings.Contains(body, evil) {
				t.Errorf("GET %s contains the client ID unescaped", tt.path)
			}
			if strings.Contains(body, "style=") || strings.Contains(body, "<script>") || strings.Contains(body, "onclick") {
				t.Errorf("GET %s has inline style or script, which the CSP refuses", tt.path)
			}
		})
	}

	for _, path := range []string{"/topics/missing", "/topics/orders/missing", "/nodes/10.1.1.1:1", "/no/such/page"} {
		code, h, body := page(t, c.url(path))
		if code != 404 || h.Get("Content-Type") != "text/html; charset=utf-8" || !strings.Contains(body, "Not Found") {
			t.Errorf("GET %s: %d %s, want an HTML 404", path, code, h.Get("Content-Type"))
		}
	}
	if code, body := call(t, "GET", c.url("/api/nope"), ""); code != 404 || body != `{"message":"NOT_FOUND"}` {
		t.Errorf("GET /api/nope: %d %s, want NSQ's JSON 404", code, body)
	}
}

// TestPagesWarnAboutDeadNodes: a stopped nsqd is a warning on the page, not an error page.
func TestPagesWarnAboutDeadNodes(t *testing.T) {
	c := startCluster(t, 1, nil)
	c.publish(t, 0, "orders", "a")
	d, stop := nsqdtest.StartWithStop(t, nil)
	a := startAdmin(t, func(o *Options) {
		o.NSQDHTTPAddresses = []string{c.nodes[0].HTTPAddr().String(), d.HTTPAddr().String()}
	})
	dead := d.HTTPAddr().String()
	// The node dies while the admin runs: pages show the snapshot taken while it was alive
	// for up to pageMaxAge, then the warning.
	if code, _, _ := page(t, adminURL(a, "/")); code != 200 {
		t.Fatalf("GET / with both nodes up: %d", code)
	}
	stop()
	for _, path := range []string{"/", "/topics/orders", "/nodes", "/counter"} {
		testutil.Eventually(t, 10*time.Second, func() bool {
			code, _, body := page(t, adminURL(a, path))
			return code == 200 && strings.Contains(body, "did not answer") && strings.Contains(body, "nsqd "+dead)
		}, "GET %s with a dead node: want the page with a warning naming %s", path, dead)
	}
}

// TestPageActions takes actions through the pages' forms as a browser without JavaScript
// does: a confirmation page first, then the action and a redirect to the page to see next.
func TestPageActions(t *testing.T) {
	c := startCluster(t, 1, nil)
	c.publish(t, 0, "orders", "a")
	d := c.nodes[0]

	code, _, body := postForm(t, c.url("/topics/orders"), url.Values{"action": {"pause"}, "confirmed": {"0"}})
	if code != 200 || !strings.Contains(body, "Pause topic orders?") || !strings.Contains(body, `name="confirmed" value="1"`) {
		t.Fatalf("unconfirmed pause: %d\n%s", code, body)
	}
	if ts, _ := d.TopicStats("orders"); ts.Paused {
		t.Fatal("an unconfirmed action was carried out")
	}
	code, loc, _ := postForm(t, c.url("/topics/orders"), url.Values{"action": {"pause"}, "confirmed": {"1"}})
	if code != 303 || loc != "/topics/orders?done=pause_topic" {
		t.Fatalf("pause: %d %s", code, loc)
	}
	if ts, _ := d.TopicStats("orders"); !ts.Paused {
		t.Fatal("the topic is not paused")
	}
	if _, _, body := page(t, c.url(loc)); !strings.Contains(body, "Paused the topic.") || !strings.Contains(body, `class="badge paused"`) {
		t.Error("the topic page after the pause shows no notice or no paused badge")
	}

	code, loc, _ = postForm(t, c.url("/topics"), url.Values{"action": {"create"}, "topic": {"orders"}, "channel": {"billing"}, "confirmed": {"1"}})
	if code != 303 || loc != "/topics/orders/billing?done=create_channel" {
		t.Fatalf("create: %d %s", code, loc)
	}
	if _, ok := d.ChannelStats("orders", "billing"); !ok {
		t.Fatal("the channel was not created")
	}
	code, loc, _ = postForm(t, c.url("/topics/orders/billing"), url.Values{"action": {"delete"}, "confirmed": {"1"}})
	if code != 303 || loc != "/topics/orders?done=delete_channel" {
		t.Fatalf("delete channel: %d %s", code, loc)
	}
	code, loc, _ = postForm(t, c.url("/topics/orders"), url.Values{"action": {"delete"}, "confirmed": {"1"}})
	if code != 303 || loc != "/?done=delete_topic" {
		t.Fatalf("delete topic: %d %s", code, loc)
	}
	if _, ok := d.TopicStats("orders"); ok {
		t.Fatal("the topic was not deleted")
	}

	code, _, body = postForm(t, c.url("/topics/orders"), url.Values{"action": {"explode"}, "confirmed": {"1"}})
	if code != 400 || !strings.Contains(body, "INVALID_ACTION") {
		t.Errorf("unknown action: %d", code)
	}
	code, _, body = postForm(t, c.url("/topics"), url.Values{"action": {"create"}, "topic": {"bad name"}, "confirmed": {"1"}})
	if code != 400 || !strings.Contains(body, "Topic names are") {
		t.Errorf("bad topic name: %d", code)
	}
	// A form posted from another site's page is refused before it is read.
	code, _, _ = postForm(t, c.url("/topics/orders"), url.Values{"action": {"delete"}, "confirmed": {"1"}},
		"Sec-Fetch-Site", "cross-site")
	if code != 403 {
		t.Errorf("cross-site post: %d, want 403", code)
	}
}

// TestPagesForNonAdmins: with admin users, others see no action and are refused if they post.
func TestPagesForNonAdmins(t *testing.T) {
	c := startCluster(t, 1, func(o *Options) { o.AdminUsers = []string{"alice"} })
	c.publish(t, 0, "orders", "a")
	c.admin.cache.invalidate()
	req, _ := http.NewRequest("GET", c.url("/topics/orders"), nil)
	req.Header.Set("X-Forwarded-User", "bob")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), `name="action"`) || !strings.Contains(string(body), "bob") {
		t.Error("a user who is not an admin sees action forms, or not their name")
	}
	code, _, text := postForm(t, c.url("/topics/orders"), url.Values{"action": {"pause"}, "confirmed": {"1"}}, "X-Forwarded-User", "bob")
	if code != 403 || !strings.Contains(text, "Only the admin users") {
		t.Errorf("a non-admin's pause: %d", code)
	}
	code, loc, _ := postForm(t, c.url("/topics/orders"), url.Values{"action": {"pause"}, "confirmed": {"1"}}, "X-Forwarded-User", "alice")
	if code != 303 || loc == "" {
		t.Errorf("the admin's pause: %d", code)
	}
}

// TestConfirmPageKeepsTheName: the confirmation of an action on channel "billing#ephemeral"
// posts back to that channel, not to "billing" (a # left bare in the form's action would
// end the path there).
func TestConfirmPageKeepsTheName(t *testing.T) {
	c := startCluster(t, 1, nil)
	c.publish(t, 0, "orders", "a")
	code, _, body := postForm(t, c.url("/topics/orders/billing%23ephemeral"), url.Values{"action": {"delete"}, "confirmed": {"0"}})
	if code != 200 || !strings.Contains(body, `action="/topics/orders/billing%23ephemeral"`) {
		t.Fatalf("the confirmation of a delete of billing#ephemeral: %d\n%s", code, body)
	}
}

// TestBasePath serves everything under --base-path.
func TestBasePath(t *testing.T) {
	c := startCluster(t, 1, func(o *Options) { o.BasePath = "tern/admin/" })
	c.publish(t, 0, "orders", "a")
	c.admin.cache.invalidate()
	code, _, body := page(t, c.url("/"))
	if code != 200 || !strings.Contains(body, `href="/tern/admin/static/admin.css"`) || !strings.Contains(body, `href="/tern/admin/topics/orders"`) {
		t.Fatalf("GET /tern/admin/: %d\n%s", code, body)
	}
	if code, _, _ := page(t, c.url("/static/admin.js")); code != 200 {
		t.Errorf("the script under the base path: %d", code)
	}
	if code, _, _ := page(t, "http://"+c.admin.HTTPAddr().String()+"/"); code != 404 {
		t.Errorf("GET / outside the base path: %d, want 404", code)
	}
	if code, _ := call(t, "GET", c.url("/api/topics"), ""); code != 200 {
		t.Errorf("the API under the base path: %d", code)
	}
}

// TestStaticAssets serves the embedded CSS, script and logo with their types.
func TestStaticAssets(t *testing.T) {
	c := startCluster(t, 0, nil)
	for name, typ := range map[string]string{
		"admin.css": "text/css; charset=utf-8", "admin.js": "text/javascript; charset=utf-8", "tern.svg": "image/svg+xml",
	} {
		code, h, body := page(t, c.url("/static/"+name))
		if code != 200 || h.Get("Content-Type") != typ || len(body) == 0 {
			t.Errorf("/static/%s: %d %s", name, code, h.Get("Content-Type"))
		}
	}
	if code, _, body := page(t, c.url("/static/nope.css")); code != 404 || body != "NOT_FOUND" {
		t.Errorf("missing asset: %d %q", code, body)
	}
}

// TestDevStaticDir serves the assets from --dev-static-dir.
func TestDevStaticDir(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "admin.css", "body { color: red }")
	l := startCluster(t, 0, nil).lookupd
	a := startAdmin(t, func(o *Options) {
		o.NSQLookupdHTTPAddresses = []string{l.HTTPAddr().String()}
		o.DevStaticDir = dir
	})
	if code, _, body := page(t, adminURL(a, "/static/admin.css")); code != 200 || body != "body { color: red }" {
		t.Errorf("dev static: %d %q", code, body)
	}
}

// TestPagesWarnAboutDepartedNodes: an nsqd that unregisters from the lookupds (stopped, say)
// is still named on the pages, as a warning, rather than silently dropped.
func TestPagesWarnAboutDepartedNodes(t *testing.T) {
	c := startCluster(t, 1, nil)
	leaving, stop := nsqdtest.StartWithStop(t, func(o *nsqd.Options) {
		o.NodeID = 2
		o.LookupdTCPAddresses = []string{c.lookupd.TCPAddr().String()}
	})
	addr := leaving.HTTPAddr().String()
	testutil.Eventually(t, 10*time.Second, func() bool {
		_, _, body := page(t, c.url("/nodes"))
		return strings.Contains(body, addr)
	}, "the admin never listed the second node")
	stop()
	want := "nsqd " + addr + ": no longer registered with any nsqlookupd"
	var body string
	testutil.Eventually(t, 10*time.Second, func() bool {
		_, _, body = page(t, c.url("/"))
		return strings.Contains(body, want)
	}, "the overview does not warn that the node left:\n%s", &body)
	var nodes struct {
		Message string `json:"message"`
	}
	if code := getJSON(t, c.url("/api/nodes"), &nodes); code != 200 || !strings.Contains(nodes.Message, want) {
		t.Errorf("/api/nodes: %d %q, want the warning in the message", code, nodes.Message)
	}
}

// TestChannelMessages shows a channel's messages on its page and in the API, escaped, to
// admin users only.
func TestChannelMessages(t *testing.T) {
	c := startCluster(t, 1, func(o *Options) { o.AdminUsers = []string{"alice"} })
	c.publish(t, 0, "orders", "first <b>bold</b>", "second")
	base := "http://" + c.nodes[0].HTTPAddr().String()
	resp, err := http.Post(base+"/channel/create?topic=orders&channel=billing", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	c.publish(t, 0, "orders", "third")
	c.admin.cache.invalidate()

	req, _ := http.NewRequest("GET", c.url("/topics/orders/billing"), nil)
	req.Header.Set("X-Forwarded-User", "alice")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	page := string(body)
	if !strings.Contains(page, `id="messages"`) || !strings.Contains(page, "<code>third</code>") {
		t.Errorf("the channel page does not show the channel's message:\n%s", page)
	}
	if strings.Contains(page, "<b>bold</b>") {
		t.Error("a message body went into the page unescaped")
	}

	var api struct {
		Nodes []struct {
			Node     string `json:"node"`
			Messages []struct {
				Body  []byte `json:"body"`
				State string `json:"state"`
			} `json:"messages"`
		} `json:"nodes"`
	}
	code := getJSON(t, c.url("/api/topics/orders/billing/messages?state=next"), &api)
	if code != 403 {
		t.Errorf("the API without a user: %d, want 403", code)
	}
	code, text := call(t, "GET", c.url("/api/topics/orders/billing/messages?state=next"), "", "X-Forwarded-User", "alice")
	if code != 200 || !strings.Contains(text, `"node":"`+c.nodes[0].HTTPAddr().String()+`"`) {
		t.Errorf("the API for alice: %d %s", code, text)
	}

	req.Header.Set("X-Forwarded-User", "bob")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if strings.Contains(string(body), `id="messages"`) {
		t.Error("a user who is not an admin sees the messages")
	}
}
