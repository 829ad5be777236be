package nsqd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/wiretest"
)

// TestMain runs the tests of package nsqd and its black-box tests (one binary), then fails if
// any goroutine is left: every daemon a test starts must be gone when its test ends.
//
// The restart and crash tests run nsqd as a child process, the test binary itself re-executed
// with TERN_TEST_NSQD_CHILD set, so SIGTERM and SIGKILL are real signals to a real process.
func TestMain(m *testing.M) {
	if os.Getenv("TERN_TEST_NSQD_CHILD") == "1" {
		os.Exit(runChildNSQD())
	}
	goleak.VerifyTestMain(m)
}

func runChildNSQD() int {
	opts := NewOptions()
	opts.TCPAddress = "127.0.0.1:0"
	opts.HTTPAddress = "127.0.0.1:0"
	opts.NodeID = 1
	opts.DataPath = os.Getenv("TERN_TEST_DATA")
	if b, err := strconv.ParseInt(os.Getenv("TERN_TEST_SEGMENT_BYTES"), 10, 64); err == nil {
		opts.MaxBytesPerFile = b
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	n, err := New(opts, logger, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	fmt.Printf("LISTENING %s %s\n", n.TCPAddr(), n.HTTPAddr())
	if err := n.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		return 1
	}
	return 0
}

type childNSQD struct {
	cmd      *exec.Cmd
	addr     string // TCP
	httpAddr string
	done     chan error
}

func startChild(t *testing.T, dataPath string, env ...string) *childNSQD {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TERN_TEST_NSQD_CHILD=1", "TERN_TEST_DATA="+dataPath)
	cmd.Env = append(cmd.Env, env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &testLogWriter{t: t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &childNSQD{cmd: cmd, done: make(chan error, 1)}
	lines := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		if s.Scan() {
			lines <- s.Text()
		}
		_, _ = io.Copy(io.Discard, stdout)
		c.done <- cmd.Wait()
	}()
	select {
	case line := <-lines:
		addrs, ok := strings.CutPrefix(line, "LISTENING ")
		if !ok {
			t.Fatalf("child said %q", line)
		}
		c.addr, c.httpAddr, _ = strings.Cut(addrs, " ")
	case err := <-c.done:
		t.Fatalf("child exited before listening: %v", err)
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("child did not start listening")
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
		}
	})
	return c
}

// stop signals the child and waits for it to exit.
func (c *childNSQD) stop(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.done:
		c.done <- err // let Cleanup's wait return too
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("child did not exit after %v", sig)
		return nil
	}
}

type testLogWriter struct {
	mu sync.Mutex
	t  *testing.T
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log("child: " + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// rawConn is the shared raw V2 client (package wiretest) failing the test on any error, for
// the in-package tests that drive it from the test goroutine: exact control over what is in
// flight is the point of these tests, which a client library hides.
type rawConn struct {
	*wiretest.Conn
	t testing.TB
}

// dialRaw connects and identifies with a msg_timeout of a minute.
func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	return dialRawMsgTimeout(t, addr, time.Minute)
}

// dialRawMsgTimeout connects and identifies with msgTimeout, for deliveries that must time
// out. Heartbeats are answered, so the connection outlives any test.
func dialRawMsgTimeout(t testing.TB, addr string, msgTimeout time.Duration) *rawConn {
	t.Helper()
	c, err := wiretest.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.Timeout, c.AnswerHeartbeats = 20*time.Second, true
	rc := &rawConn{Conn: c, t: t}
	if _, err := c.Identify(fmt.Sprintf(`"msg_timeout":%d`, msgTimeout.Milliseconds())); err != nil {
		t.Fatal(err)
	}
	return rc
}

func (rc *rawConn) send(cmd *protocol.Command) {
	rc.t.Helper()
	if err := rc.Send(cmd); err != nil {
		rc.t.Fatalf("send %s: %v", cmd.Name, err)
	}
}

func (rc *rawConn) expectOK() {
	rc.t.Helper()
	if err := rc.ExpectResponse(protocol.OK); err != nil {
		rc.t.Fatal(err)
	}
}

func (rc *rawConn) expectError(prefix string) {
	rc.t.Helper()
	if err := rc.ExpectError(prefix); err != nil {
		rc.t.Fatal(err)
	}
}

func ptr[T any](v T) *T { return &v }

func (rc *rawConn) message() wiretest.Message {
	rc.t.Helper()
	m, err := rc.ExpectMessage()
	if err != nil {
		rc.t.Fatal(err)
	}
	return m
}

// TestRestartAfterSIGTERMKeepsDeliveryState stops nsqd with SIGTERM while messages are queued,
// in flight, requeued with a delay and deferred, and checks what the restarted daemon delivers:
// everything not finished, delayed ones not before their original due time, finished ones never.
func TestRestartAfterSIGTERMKeepsDeliveryState(t *testing.T) {
	dir := t.TempDir()
	child := startChild(t, dir)

	pub := dialRaw(t, child.addr)
	var bodies [][]byte
	for i := range 100 {
		bodies = append(bodies, fmt.Appendf(nil, "m%03d", i))
	}
	mpub, err := protocol.MultiPublish("restart", bodies)
	if err != nil {
		t.Fatal(err)
	}
	pub.send(mpub)
	pub.expectOK()

	sub := dialRaw(t, child.addr)
	sub.send(protocol.Subscribe("restart", "ch"))
	sub.expectOK()
	sub.send(protocol.Ready(30))
	var got []wiretest.Message
	for range 30 {
		got = append(got, sub.message())
	}
	sub.send(protocol.Ready(0))

	finished := map[string]bool{}
	requeuedDue := map[string]time.Time{}
	inFlight := map[string]bool{}
	const reqDelay = 3 * time.Second
	for i, m := range got {
		switch {
		case i < 10:
			sub.send(protocol.Finish(m.ID))
			finished[m.Body] = true
		case i < 20:
			// The earliest the daemon can count the delay from: it may read the command
			// before this goroutine runs again.
			requeuedDue[m.Body] = time.Now().Add(reqDelay)
			sub.send(protocol.Requeue(m.ID, reqDelay))
		default:
			inFlight[m.Body] = true
		}
	}
	// A publish on the same connection is answered only after everything before it ran.
	sub.send(protocol.Publish("sync", []byte("x")))
	sub.expectOK()

	deferredDue := map[string]time.Time{}
	const dpubDelay = 4 * time.Second
	for i := range 5 {
		body := fmt.Sprintf("d%d", i)
		deferredDue[body] = time.Now().Add(dpubDelay)
		pub.send(protocol.DeferredPublish("restart", dpubDelay, []byte(body)))
		pub.expectOK()
	}

	if err := child.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("nsqd exited with %v after SIGTERM", err)
	}
	restarted := time.Now()
	child = startChild(t, dir)

	cons := dialRaw(t, child.addr)
	cons.send(protocol.Subscribe("restart", "ch"))
	cons.expectOK()
	cons.send(protocol.Ready(200))
	want := 100 - len(finished) + len(deferredDue)
	seen := map[string]wiretest.Message{}
	for len(seen) < want {
		m := cons.message()
		if finished[m.Body] {
			t.Fatalf("%s was finished before the stop and delivered again", m.Body)
		}
		if _, dup := seen[m.Body]; dup {
			t.Fatalf("%s delivered twice after the restart", m.Body)
		}
		seen[m.Body] = m
		cons.send(protocol.Finish(m.ID))
	}
	for body, due := range requeuedDue {
		if m := seen[body]; m.At.Before(due) {
			t.Errorf("requeued %s delivered %v before its due time", body, due.Sub(m.At))
		}
		if m := seen[body]; m.Attempts < 2 {
			t.Errorf("requeued %s has attempts %d, want >= 2", body, m.Attempts)
		}
	}
	for body, due := range deferredDue {
		if m := seen[body]; m.At.Before(due) {
			t.Errorf("deferred %s delivered %v before its due time", body, due.Sub(m.At))
		}
	}
	for body := range inFlight {
		if m := seen[body]; m.Attempts < 2 {
			t.Errorf("in-flight %s redelivered with attempts %d, want >= 2", body, m.Attempts)
		}
	}
	t.Logf("restart to all delivered: %v", time.Since(restarted))
}

// TestCrashKeepsAcknowledgedMessages kills nsqd with SIGKILL while four connections publish
// and checks that every message that was answered OK is delivered after the restart.
func TestCrashKeepsAcknowledgedMessages(t *testing.T) {
	dir := t.TempDir()
	child := startChild(t, dir)

	// One channel exists and consumes while the publishers run; the other has no consumer.
	live := dialRaw(t, child.addr)
	live.send(protocol.Subscribe("crash", "live"))
	live.expectOK()
	idle := dialRaw(t, child.addr)
	idle.send(protocol.Subscribe("crash", "idle"))
	idle.expectOK()

	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		wg    sync.WaitGroup
	)
	enough := make(chan struct{})
	var once sync.Once
	for g := range 4 {
		wg.Go(func() {
			conn, err := net.Dial("tcp", child.addr)
			if err != nil {
				return
			}
			defer conn.Close()
			r := bufio.NewReader(conn)
			if _, err := conn.Write([]byte(protocol.MagicV2)); err != nil {
				return
			}
			for i := 0; ; i++ {
				var cmd *protocol.Command
				var sent []string
				if i%2 == 0 {
					b := fmt.Sprintf("g%d-%d", g, i)
					cmd, sent = protocol.Publish("crash", []byte(b)), []string{b}
				} else {
					var batch [][]byte
					for j := range 10 {
						b := fmt.Sprintf("g%d-%d-%d", g, i, j)
						batch = append(batch, []byte(b))
						sent = append(sent, b)
					}
					cmd, _ = protocol.MultiPublish("crash", batch)
				}
				if _, err := cmd.WriteTo(conn); err != nil {
					return
				}
				_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				ft, data, err := protocol.ReadFrame(r, 0)
				if err != nil || ft != protocol.FrameTypeResponse || string(data) != "OK" {
					return
				}
				mu.Lock()
				for _, b := range sent {
					acked[b] = true
				}
				n := len(acked)
				mu.Unlock()
				if n >= 20000 {
					once.Do(func() { close(enough) })
				}
			}
		})
	}
	live.send(protocol.Ready(100))
	consumedBefore := map[string]bool{}
	deadline := time.After(60 * time.Second)
consume:
	for {
		select {
		case <-enough:
			break consume
		case <-deadline:
			t.Fatal("publishers did not reach 20000 acknowledged messages")
		default:
		}
		m := live.message()
		consumedBefore[m.Body] = true
		live.send(protocol.Finish(m.ID))
	}
	if err := child.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	<-child.done
	child.done <- nil

	mu.Lock()
	want := acked
	mu.Unlock()
	child = startChild(t, dir)
	for _, channel := range []string{"live", "idle"} {
		c := dialRaw(t, child.addr)
		c.send(protocol.Subscribe("crash", channel))
		c.expectOK()
		c.send(protocol.Ready(2500))
		missing := map[string]bool{}
		for b := range want {
			if channel == "idle" || !consumedBefore[b] {
				missing[b] = true
			}
		}
		for len(missing) > 0 {
			m := c.message()
			delete(missing, m.Body)
			c.send(protocol.Finish(m.ID))
		}
	}
	t.Logf("%d acknowledged messages all delivered after SIGKILL", len(want))
}
