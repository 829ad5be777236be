//go:build browser

// The browser tests drive the admin in headless Chromium as a user would: they click, accept
// the confirmations, and read what the page shows. They need Debian's chromium package and run
// with `make browser-test` (part of `make test`), or `go test -tags browser ./admin`.
//
// Each test saves screenshots to one folder, printed at the start of the run; set
// TERN_SCREENSHOTS to choose it.

package admin

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ternmq/tern/internal/browsertest"
	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/nsqd/nsqdtest"
)

// TestBrowserOverviewAndLiveDepth opens the overview and sees both nodes, then watches a
// topic's depth change on the page, without a reload, after a publish.
func TestBrowserOverviewAndLiveDepth(t *testing.T) {
	c := startCluster(t, 2, nil)
	c.publish(t, 0, "orders", "1", "2", "3", "4", "5")
	c.publish(t, 1, "orders", "6", "7", "8")
	c.publish(t, 1, "payments", "p")
	c.admin.cache.invalidate()
	b := browsertest.New(t)

	b.Do("open the overview", chromedp.Navigate(c.url("/")), browsertest.Visible("#topics table"))
	if got := b.Text("#summary .card:nth-child(1) .value"); got != "2" {
		t.Errorf("the overview shows %q nodes, want 2", got)
	}
	if got := b.Text("#topics"); !strings.Contains(got, "orders") || !strings.Contains(got, "payments") {
		t.Errorf("the overview's topics: %q", got)
	}
	b.Shot("overview")

	b.Do("open the nodes", chromedp.Click(chromedp.CSS(`header nav a[href="/nodes"]`)), browsertest.Visible("#nodes table"))
	nodes := b.Text("#nodes")
	for _, d := range c.nodes {
		if !strings.Contains(nodes, d.HTTPAddr().String()) {
			t.Errorf("the nodes page does not list %s:\n%s", d.HTTPAddr(), nodes)
		}
	}
	b.Shot("nodes")

	b.Do("open the topic", chromedp.Navigate(c.url("/topics/orders")), browsertest.Visible("#summary"))
	b.Eval(`window.ternNoReload = true`)
	if got := b.Text("#summary .card:nth-child(1) .value"); got != "8" {
		t.Fatalf("the topic's depth is %q, want 8", got)
	}
	c.publish(t, 0, "orders", "9", "10", "11", "12")
	b.Eventually("#summary .card:nth-child(1) .value", func(s string) bool { return s == "12" },
		"the topic page shows the new depth, 12, by itself")
	if !b.Eval(`window.ternNoReload === true`) {
		t.Error("the page was reloaded to show the new depth")
	}
	if got := b.Text("#live"); got != "live" {
		t.Errorf("the live indicator says %q", got)
	}
	b.Shot("topic")

	// A phone: nothing wider than the screen but the tables, which scroll in their boxes.
	b.Do("phone size", chromedp.EmulateViewport(390, 844), chromedp.Navigate(c.url("/")), browsertest.Visible("#topics"))
	if b.Eval(`document.documentElement.scrollWidth > window.innerWidth + 1`) {
		t.Error("the overview is wider than a phone's screen")
	}
	b.Shot("overview-phone")
}

// TestBrowserChannelPauseAndDelete opens a channel and sees its consumer, pauses it, and
// deletes the topic after confirming.
func TestBrowserChannelPauseAndDelete(t *testing.T) {
	c := startCluster(t, 1, nil)
	c.publish(t, 0, "orders", "a", "b")
	consumer := c.consume(t, 0, "orders", "billing", "browser-consumer", false)
	testutil.Eventually(t, 10*time.Second, func() bool {
		cs, ok := c.nodes[0].ChannelStats("orders", "billing")
		return ok && cs.ClientCount == 1
	}, "the consumer subscribed")
	c.admin.cache.invalidate()
	b := browsertest.New(t)

	b.Do("open the channel", chromedp.Navigate(c.url("/topics/orders/billing")), browsertest.Visible("#clients table"))
	if row := b.Text("#clients tbody tr"); !strings.Contains(row, "browser-consumer") {
		t.Fatalf("the channel's client row: %q", row)
	}
	b.Shot("channel")

	b.Do("pause the channel", chromedp.Click(chromedp.CSS(`#heading form.action button`)), browsertest.Visible(`#heading .badge.paused`))
	if cs, _ := c.nodes[0].ChannelStats("orders", "billing"); !cs.Paused {
		t.Fatal("the page shows the channel paused, but it is not")
	}
	if got := b.Text(".notice"); got != "Paused the channel." {
		t.Errorf("the notice after pausing: %q", got)
	}
	b.Shot("channel-paused")

	// A subscribed consumer would create the topic again when it reconnects, as in NSQ.
	if err := consumer.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	b.Do("open the topic", chromedp.Navigate(c.url("/topics/orders")), browsertest.Visible("#heading"))
	b.Do("delete the topic", chromedp.Click(chromedp.CSS(`#heading form.action:last-of-type button`)), browsertest.Visible(".notice"))
	if got := b.Text(".notice"); got != "Deleted the topic." {
		t.Errorf("the notice after deleting: %q", got)
	}
	location, err := chromedp.Run(b.Ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(location, "/?done=delete_topic") {
		t.Errorf("after the delete the browser is at %s, want the overview", location)
	}
	if _, ok := c.nodes[0].TopicStats("orders"); ok {
		t.Fatal("the topic was not deleted")
	}
	b.Shot("topic-deleted")
}

// TestBrowserStoppedNode: a stopped nsqd is a warning on the page, which shows the rest.
func TestBrowserStoppedNode(t *testing.T) {
	c := startCluster(t, 1, nil)
	c.publish(t, 0, "orders", "a")
	d, stop := nsqdtest.StartWithStop(t, nil)
	a := startAdmin(t, func(o *Options) {
		o.NSQDHTTPAddresses = []string{c.nodes[0].HTTPAddr().String(), d.HTTPAddr().String()}
	})
	dead := d.HTTPAddr().String()
	stop()
	b := browsertest.New(t)
	b.Do("open the overview", chromedp.Navigate(adminURL(a, "/")), browsertest.Visible(".warnings"))
	if w := b.Text(".warnings"); !strings.Contains(w, "nsqd "+dead) {
		t.Errorf("the warning does not name the stopped node: %q", w)
	}
	if got := b.Text("#topics"); !strings.Contains(got, "orders") {
		t.Errorf("the live node's topic is not shown: %q", got)
	}
	b.Shot("stopped-node")
}

// TestBrowserLogin opens a page, is sent to the login form, logs in, lands on the page it
// asked for with its name in the header, and logs out.
func TestBrowserLogin(t *testing.T) {
	users := testUsers(t)
	c := startCluster(t, 1, func(o *Options) { o.Users, o.ACLHTTPHeader = users, "" })
	b := browsertest.New(t)

	b.Do("open the nodes", chromedp.Navigate(c.url("/nodes")), browsertest.Visible("section.login form"))
	b.Shot("login")
	// A wrong password is a 401 page, which the harness counts as a failed load: the handler
	// tests cover it (TestLoginFailures).
	b.Do("log in", chromedp.SendKeys(`input[name=user]`, "alice"), chromedp.SendKeys(`input[name=password]`, "alice-pw"),
		chromedp.Click(`section.login button`), browsertest.Visible("#nodes table"))
	if got := b.Text("header .user"); got != "alice" {
		t.Errorf("the header shows %q, want alice", got)
	}
	b.Shot("logged-in")
	b.Do("log out", chromedp.Click(`header form.logout button`), browsertest.Visible("section.login form"))
	b.Do("the nodes again", chromedp.Navigate(c.url("/nodes")), browsertest.Visible("section.login form"))
}

// TestBrowserDeadLetterRedrive sees a message that failed its only attempt among the
// channel's dead letters, with its reason and body, and sends it back with its button.
func TestBrowserDeadLetterRedrive(t *testing.T) {
	c := startCluster(t, 1, nil)
	node := c.nodes[0].HTTPAddr().String()
	nodePost(t, node, "/topic/create?topic=orders")
	nodePost(t, node, "/channel/create?topic=orders&channel=billing")
	c.waitRegistered(t, 0, "orders")
	if code, body := call(t, "POST", c.url("/api/settings/orders/billing"), `{"max_attempts":1}`); code != 200 {
		t.Fatalf("set max attempts: %d %s", code, body)
	}
	c.publish(t, 0, "orders", "poison pill")
	consumer := failingConsumer(t, c.nodes[0].TCPAddr().String())
	testutil.Eventually(t, 10*time.Second, func() bool {
		cs, ok := c.nodes[0].ChannelStats("orders", "billing")
		return ok && cs.DeadLetterCount == 1
	}, "the message is a dead letter")
	if err := consumer.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	c.admin.cache.invalidate()
	b := browsertest.New(t)

	b.Do("open the channel", chromedp.Navigate(c.url("/topics/orders/billing")), browsertest.Visible("#dead-letters table"))
	if row := b.Text("#dead-letters tbody tr"); !strings.Contains(row, "poison pill") || !strings.Contains(row, "requeue") {
		t.Fatalf("the dead letter's row: %q", row)
	}
	b.Shot("dead-letters")

	b.Do("redrive it", chromedp.Click(chromedp.CSS(`#dead-letters tbody tr button`)), browsertest.Visible(".notice"))
	if got := b.Text(".notice"); got != "Sent the dead letters back to the channel." {
		t.Errorf("the notice after the redrive: %q", got)
	}
	if got := b.Text("#dead-letters"); strings.Contains(got, "poison pill") {
		t.Errorf("the dead letter is still listed: %q", got)
	}
	if cs, _ := c.nodes[0].ChannelStats("orders", "billing"); cs.Depth != 1 {
		t.Errorf("the channel holds %d messages after the redrive, want 1", cs.Depth)
	}
	b.Shot("redriven")
}
