//go:build browser || e2e

// Package browsertest drives headless Chromium for the tests that look at the admin as a user
// does: the admin's browser tests (build tag browser) and the compose end-to-end test (build
// tag e2e). A Browser is one tab that accepts every confirm() and records every console error
// and uncaught exception, failing the test at its end if there were any; screenshots go to one
// folder per run, printed once, or to $TERN_SCREENSHOTS.
package browsertest

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
)

// timeout bounds one whole browser test.
const timeout = 90 * time.Second

var (
	shotsOnce sync.Once
	shotsDir  string
)

// ScreenshotDir returns the folder every test of this run saves its screenshots in.
func ScreenshotDir(t *testing.T) string {
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

// Browser is one headless Chromium tab, with every confirm() accepted and every console error
// and uncaught exception recorded.
type Browser struct {
	// Ctx is the tab's context, for chromedp calls of the test's own.
	Ctx context.Context
	t   *testing.T

	mu     sync.Mutex
	errors []string
}

// New starts headless Chromium (Debian's chromium package) with one tab, closed when the test
// ends, which then fails if the page reported an error.
func New(t *testing.T) *Browser {
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
	tctx, tcancel := context.WithTimeout(actx, timeout)
	ctx, cancel := chromedp.NewContext(tctx)
	b := &Browser{Ctx: ctx, t: t}
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

func (b *Browser) record(s string) {
	b.mu.Lock()
	b.errors = append(b.errors, s)
	b.mu.Unlock()
}

// Do runs steps, failing the test on error.
func (b *Browser) Do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.Ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// Text returns the visible text of the first element matching the CSS selector sel.
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.Ctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		b.t.Fatalf("read %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// Eval evaluates a JavaScript expression.
func (b *Browser) Eval(expr string) bool {
	b.t.Helper()
	v, err := chromedp.Run(b.Ctx, chromedp.Evaluate[bool](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// Eventually waits until the text of sel satisfies ok, without reloading the page.
func (b *Browser) Eventually(sel string, ok func(string) bool, msg string) {
	b.t.Helper()
	testutil.Eventually(b.t, 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(b.Ctx, 2*time.Second)
		defer cancel()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		return err == nil && ok(strings.TrimSpace(s))
	}, "%s", msg)
}

// Shot saves a full-page screenshot as <dir>/<name>.png.
func (b *Browser) Shot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.Ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(ScreenshotDir(b.t), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", path)
}

// Visible waits until the element of the CSS selector sel is visible.
func Visible(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.CSS(sel))
}
