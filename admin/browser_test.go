//go:build browser

// The browser tests drive the admin in headless Chromium as a user would: they click, accept
// the confirmations, and read what the page shows. They need Debian's chromium package and run
// with `make browser-test` (part of `make test`), or `go test -tags browser ./admin`.
//
// Each test saves screenshots to one folder, printed at the start of the run; set
// TERN_SCREENSHOTS to choose it.

package admin

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/nsqd/nsqdtest"
)

// browserTimeout bounds one whole browser test.
const browserTimeout = 90 * time.Second

var (
	shotsOnce sync.Once
	shotsDir  string
)

// screenshotDir returns the folder every test of this run saves its screenshots in.
func screenshotDir(t *testing.T) string {
	shotsOnce.Do(func() {
		shotsDir = os.Getenv("TERN_SCREENSHOTS")
		if shotsDir == "" {
			var err error
			if shotsDir, err = os.MkdirTemp("", "tern-admin-screenshots-"); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(shotsDir, 0o755); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("browser tests: screenshots in %s\n", shotsDir)
	})
	return shotsDir
}

// browser is one headless Chromium tab, with every confirm() accepted and every console error
// and uncaught exception recorded.
type browser struct {
	ctx context.Context
	t   *testing.T

	mu     sync.Mutex
	errors []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Fatal("the browser tests need Chromium: apt-get install chromium (.ci/run installs it)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1400, 1000))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	tctx, tcancel := context.WithTimeout(actx, browserTimeout)
	ctx, cancel := chromedp.NewContext(tctx)
	b := &browser{ctx: ctx, t: t}
	stop := func() {
		cancel()
		tcancel()
		acancel()
	}
	// Listen's func runs on the tab's reading goroutine and must not send commands: dialogs
	// are answered from a goroutine of their own.
	dialogs := make(chan struct{}, 16)
	err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *cdppage.EventJavascriptDialogOpening:
			select {
			case dialogs <- struct{}{}:
			default:
			}
		case *runtime.EventExceptionThrown:
			b.record(fmt.Sprintf("exception: %s at %s:%d", ev.ExceptionDetails.Text, ev.ExceptionDetails.URL, ev.ExceptionDetails.LineNumber))
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError {
				b.record(string(ev.Entry.Source) + ": " + ev.Entry.Text)
			}
		}
	})
	if err == nil {
		_, err = chromedp.Call(ctx, log.Enable, cdp.Empty{})
	}
	if err != nil {
		stop()
		t.Fatalf("start chromium: %v", err)
	}
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		for {
			select {
			case <-dialogs:
				_, _ = chromedp.Call(ctx, cdppage.HandleJavaScriptDialog, cdppage.HandleJavaScriptDialogParams{Accept: true})
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() {
		b.mu.Lock()
		if len(b.errors) > 0 {
			t.Errorf("the browser reported errors (a CSP violation, a script error, a failed load):\n%s", strings.Join(b.errors, "\n"))
		}
		b.mu.Unlock()
		stop()
		<-answered
	})
	return b
}

func (b *browser) record(s string) {
	b.mu.Lock()
	b.errors = append(b.errors, s)
	b.mu.Unlock()
}

// do runs steps, failing the test on error.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// text returns the visible text of the first element matching the CSS selector sel.
func (b *browser) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		b.t.Fatalf("read %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// eval evaluates a JavaScript expression.
func (b *browser) eval(expr string) bool {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// eventually waits until the text of sel satisfies ok, without reloading the page.
func (b *browser) eventually(sel string, ok func(string) bool, msg string) {
	b.t.Helper()
	testutil.Eventually(b.t, 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
		defer cancel()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		return err == nil && ok(strings.TrimSpace(s))
	}, "%s", msg)
}

// shot saves a full-page screenshot as <dir>/<name>.png.
func (b *browser) shot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(screenshotDir(b.t), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", path)
}

// visible waits until the element of the CSS selector sel is visible.
func visible(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.CSS(sel))
}

// TestBrowserOverviewAndLiveDepth opens the overview and sees both nodes, then watches a
// topic's depth change on the page, without a reload, after a publish.
func TestBrowserOverviewAndLiveDepth(t *testing.T) {
	c := startCluster(t, 2, nil)
	c.publish(t, 0, "orders", "1", "2", "3", "4", "5")
	c.publish(t, 1, "orders", "6", "7", "8")
	c.publish(t, 1, "payments", "p")
	c.admin.cache.invalidate()
	b := newBrowser(t)

	b.do("open the overview", chromedp.Navigate(c.url("/")), visible("#topics table"))
	if got := b.text("#summary .card:nth-child(1) .value"); got != "2" {
		t.Errorf("the overview shows %q nodes, want 2", got)
	}
	if got := b.text("#topics"); !strings.Contains(got, "orders") || !strings.Contains(got, "payments") {
		t.Errorf("the overview's topics: %q", got)
	}
	b.shot("overview")

	b.do("open the nodes", chromedp.Click(chromedp.CSS(`header nav a[href="/nodes"]`)), visible("#nodes table"))
	nodes := b.text("#nodes")
	for _, d := range c.nodes {
		if !strings.Contains(nodes, d.HTTPAddr().String()) {
			t.Errorf("the nodes page does not list %s:\n%s", d.HTTPAddr(), nodes)
		}
	}
	b.shot("nodes")

	b.do("open the topic", chromedp.Navigate(c.url("/topics/orders")), visible("#summary"))
	b.eval(`window.ternNoReload = true`)
	if got := b.text("#summary .card:nth-child(1) .value"); got != "8" {
		t.Fatalf("the topic's depth is %q, want 8", got)
	}
	c.publish(t, 0, "orders", "9", "10", "11", "12")
	b.eventually("#summary .card:nth-child(1) .value", func(s string) bool { return s == "12" },
		"the topic page shows the new depth, 12, by itself")
	if !b.eval(`window.ternNoReload === true`) {
		t.Error("the page was reloaded to show the new depth")
	}
	if got := b.text("#live"); got != "live" {
		t.Errorf("the live indicator says %q", got)
	}
	b.shot("topic")

	// A phone: nothing wider than the screen but the tables, which scroll in their boxes.
	b.do("phone size", chromedp.EmulateViewport(390, 844), chromedp.Navigate(c.url("/")), visible("#topics"))
	if b.eval(`document.documentElement.scrollWidth > window.innerWidth + 1`) {
		t.Error("the overview is wider than a phone's screen")
	}
	b.shot("overview-phone")
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
	b := newBrowser(t)

	b.do("open the channel", chromedp.Navigate(c.url("/topics/orders/billing")), visible("#clients table"))
	if row := b.text("#clients tbody tr"); !strings.Contains(row, "browser-consumer") {
		t.Fatalf("the channel's client row: %q", row)
	}
	b.shot("channel")

	b.do("pause the channel", chromedp.Click(chromedp.CSS(`#heading form.action button`)), visible(`#heading .badge.paused`))
	if cs, _ := c.nodes[0].ChannelStats("orders", "billing"); !cs.Paused {
		t.Fatal("the page shows the channel paused, but it is not")
	}
	if got := b.text(".notice"); got != "Paused the channel." {
		t.Errorf("the notice after pausing: %q", got)
	}
	b.shot("channel-paused")

	// A subscribed consumer would create the topic again when it reconnects, as in NSQ.
	if err := consumer.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	b.do("open the topic", chromedp.Navigate(c.url("/topics/orders")), visible("#heading"))
	b.do("delete the topic", chromedp.Click(chromedp.CSS(`#heading form.action:last-of-type button`)), visible(".notice"))
	if got := b.text(".notice"); got != "Deleted the topic." {
		t.Errorf("the notice after deleting: %q", got)
	}
	location, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(location, "/?done=delete_topic") {
		t.Errorf("after the delete the browser is at %s, want the overview", location)
	}
	if _, ok := c.nodes[0].TopicStats("orders"); ok {
		t.Fatal("the topic was not deleted")
	}
	b.shot("topic-deleted")
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
	b := newBrowser(t)
	b.do("open the overview", chromedp.Navigate(adminURL(a, "/")), visible(".warnings"))
	if w := b.text(".warnings"); !strings.Contains(w, "nsqd "+dead) {
		t.Errorf("the warning does not name the stopped node: %q", w)
	}
	if got := b.text("#topics"); !strings.Contains(got, "orders") {
		t.Errorf("the live node's topic is not shown: %q", got)
	}
	b.shot("stopped-node")
}
