package nsq_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/nsq"
	"github.com/ternmq/tern/nsqd"
)

func TestProducerPublishVariants(t *testing.T) {
	t.Parallel()
	s := startNSQD(t, nil)
	publishes := []struct {
		name    string
		msgs    int
		publish func(ctx context.Context, p *nsq.Producer, topic string) error
	}{
		{"Publish", 1, func(ctx context.Context, p *nsq.Producer, topic string) error {
			return p.Publish(ctx, topic, []byte("hello"))
		}},
		{"MultiPublish", 25, func(ctx context.Context, p *nsq.Producer, topic string) error {
			return p.MultiPublish(ctx, topic, bodies("m", 25))
		}},
		{"DeferredPublish", 1, func(ctx context.Context, p *nsq.Producer, topic string) error {
			return p.DeferredPublish(ctx, topic, 50*time.Millisecond, []byte("later"))
		}},
		{"PublishAsync", 1, func(ctx context.Context, p *nsq.Producer, topic string) error {
			return waitAsync(ctx, func(done func(error)) error { return p.PublishAsync(topic, []byte("a"), done) })
		}},
		{"MultiPublishAsync", 3, func(ctx context.Context, p *nsq.Producer, topic string) error {
			return waitAsync(ctx, func(done func(error)) error { return p.MultiPublishAsync(topic, bodies("ma", 3), done) })
		}},
		{"DeferredPublishAsync", 1, func(ctx context.Context, p *nsq.Producer, topic string) error {
			return waitAsync(ctx, func(done func(error)) error {
				return p.DeferredPublishAsync(topic, time.Millisecond, []byte("da"), done)
			})
		}},
	}
	compressions := []struct {
		name            string
		snappy, deflate bool
	}{
		{"plain", false, false},
		{"snappy", true, false},
		{"deflate", false, true},
	}
	for _, comp := range compressions {
		t.Run(comp.name, func(t *testing.T) {
			t.Parallel()
			cfg := nsq.NewConfig()
			cfg.Snappy, cfg.Deflate = comp.snappy, comp.deflate
			cfg.ClientID = "variants-" + comp.name
			p := newProducer(t, s.tcpAddr(), cfg)
			for _, pub := range publishes {
				topic := comp.name + "." + pub.name
				if err := pub.publish(ctxTimeout(t, 5*time.Second), p, topic); err != nil {
					t.Fatalf("%s: %v", pub.name, err)
				}
				waitCount(t, s, topic, uint64(pub.msgs))
			}
			st := p.Stats()
			if !st.Connected || st.Connects != 1 || st.Failed != 0 || st.InFlight != 0 {
				t.Errorf("stats %+v: want connected once, nothing failed or in flight", st)
			}
			checkNegotiated(t, s, cfg.ClientID, comp.snappy, comp.deflate)
		})
	}
}

// checkNegotiated fails unless nsqd reports the client's connection with the compression
// asked for and our user agent.
func checkNegotiated(t *testing.T, s *server, clientID string, snappy, deflate bool) {
	t.Helper()
	for _, c := range s.d.StatsReport(nsqd.StatsFilter{IncludeClients: true}).Producers {
		if c.ClientID != clientID {
			continue
		}
		if c.Snappy != snappy || c.Deflate != deflate {
			t.Errorf("nsqd sees snappy %v deflate %v, want %v %v", c.Snappy, c.Deflate, snappy, deflate)
		}
		if c.UserAgent != nsq.UserAgent {
			t.Errorf("nsqd sees user agent %q, want %q", c.UserAgent, nsq.UserAgent)
		}
		return
	}
	t.Errorf("nsqd lists no producer with client_id %q", clientID)
}

func waitAsync(ctx context.Context, start func(done func(error)) error) error {
	ch := make(chan error, 1)
	if err := start(func(err error) { ch <- err }); err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestProducerConcurrentPublishers(t *testing.T) {
	t.Parallel()
	s := startNSQD(t, nil)
	p := newProducer(t, s.tcpAddr(), nil)
	const goroutines, each = 8, 250
	ctx := ctxTimeout(t, 20*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, b := range bodies(string(rune('a'+g)), each) {
				var err error
				if i%2 == 0 {
					err = p.Publish(ctx, "concurrent", b)
				} else {
					err = waitAsync(ctx, func(done func(error)) error { return p.PublishAsync("concurrent", b, done) })
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitCount(t, s, "concurrent", goroutines*each)
	if st := p.Stats(); st.Published != goroutines*each || st.Connects != 1 {
		t.Errorf("stats %+v: want %d published on one connection", st, goroutines*each)
	}
}

func TestProducerLocalErrors(t *testing.T) {
	t.Parallel()
	s := startNSQD(t, nil)
	p := newProducer(t, s.tcpAddr(), nil)
	ctx := ctxTimeout(t, 5*time.Second)
	cases := []struct {
		name string
		code string
		call func() error
	}{
		{"bad topic", nsq.ErrCodeBadTopic, func() error { return p.Publish(ctx, "bad topic!", []byte("x")) }},
		{"long topic", nsq.ErrCodeBadTopic, func() error { return p.Publish(ctx, string(bytes.Repeat([]byte("t"), 65)), []byte("x")) }},
		{"empty body", nsq.ErrCodeBadMessage, func() error { return p.Publish(ctx, "ok", nil) }},
		{"MPUB bad topic", nsq.ErrCodeBadTopic, func() error { return p.MultiPublish(ctx, "", bodies("x", 1)) }},
		{"MPUB empty batch", nsq.ErrCodeBadBody, func() error { return p.MultiPublish(ctx, "ok", nil) }},
		{"MPUB empty message", nsq.ErrCodeBadMessage, func() error { return p.MultiPublish(ctx, "ok", [][]byte{[]byte("a"), {}}) }},
		{"DPUB bad topic", nsq.ErrCodeBadTopic, func() error { return p.DeferredPublish(ctx, "a/b", time.Second, []byte("x")) }},
		{"async bad topic", nsq.ErrCodeBadTopic, func() error { return p.PublishAsync("a b", []byte("x"), nil) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var e *nsq.Error
			if !errors.As(err, &e) || e.Code != tc.code {
				t.Fatalf("err = %v, want an *nsq.Error with code %s", err, tc.code)
			}
		})
	}
	// The MPUB refusals are nsqd's own words.
	for _, c := range []struct {
		err  error
		want string
	}{
		{p.MultiPublish(ctx, "ok", nil), "E_BAD_BODY MPUB invalid message count 0"},
		{p.MultiPublish(ctx, "ok", [][]byte{[]byte("a"), {}}), "E_BAD_MESSAGE MPUB invalid message(1) body size 0"},
	} {
		if c.err == nil || c.err.Error() != c.want {
			t.Errorf("err = %v, want %q", c.err, c.want)
		}
	}
	// The refusals cost no connection: a good publish goes out on the first one.
	if err := p.Publish(ctx, "ok", []byte("fine")); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Connects != 1 || st.Failed != uint64(len(cases)+2) {
		t.Errorf("stats %+v: want 1 connect and %d failed", st, len(cases)+2)
	}
}

// A command nsqd rejects with a fatal error fails alone: nsqd executes nothing after it, so
// the commands pipelined behind it are sent again on a new connection.
func TestProducerFatalServerErrorResendsPipelined(t *testing.T) {
	t.Parallel()
	s := startNSQD(t, func(o *nsqd.Options) { o.MaxMsgSize = 100 })
	p := newProducer(t, s.tcpAddr(), nil)
	ctx := ctxTimeout(t, 10*time.Second)
	if err := p.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	const small = 20
	res := newAsyncResult(small)
	bigErr := make(chan error, 1)
	if err := p.PublishAsync("fatal", bytes.Repeat([]byte("x"), 200), func(err error) { bigErr <- err }); err != nil {
		t.Fatal(err)
	}
	for _, b := range bodies("small", small) {
		if err := p.PublishAsync("fatal", b, res.done); err != nil {
			t.Fatal(err)
		}
	}
	var e *nsq.Error
	if err := <-bigErr; !errors.As(err, &e) || e.Code != nsq.ErrCodeBadMessage || !e.Fatal {
		t.Fatalf("big message: err = %v, want fatal %s", err, nsq.ErrCodeBadMessage)
	}
	if errs := res.wait(t); len(errs) > 0 {
		t.Fatalf("%d small publishes failed, first: %v", len(errs), errs[0])
	}
	waitCount(t, s, "fatal", small)
}

func TestProducerReconnects(t *testing.T) {
	t.Parallel()
	addr, startAgain := restartableNSQD(t)
	first := startAgain()
	cfg := fastReconnectConfig()
	p := newProducer(t, addr, cfg)
	if err := p.Publish(ctxTimeout(t, 5*time.Second), "durable", []byte("before")); err != nil {
		t.Fatal(err)
	}
	first.stop()
	testutil.Eventually(t, 5*time.Second, func() bool { return !p.Stats().Connected }, "producer notices nsqd went away")

	// While nsqd is down a publish waits, and gives up with the context.
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := p.Publish(short, "durable", []byte("given up"))
	if !errors.Is(err, nsq.ErrNotConnected) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publish while down: err = %v, want ErrNotConnected and DeadlineExceeded", err)
	}

	// A publish issued while down is sent once nsqd is back on the same address.
	during := make(chan error, 1)
	go func() { during <- p.Publish(ctxTimeout(t, 10*time.Second), "durable", []byte("during")) }()
	testutil.Eventually(t, 5*time.Second, func() bool { return p.Stats().Waiting == 1 }, "publish waits for a connection")
	second := startAgain()
	if err := <-during; err != nil {
		t.Fatalf("publish across restart: %v", err)
	}
	if st := p.Stats(); st.Connects != 2 || st.ConnectErrors == 0 {
		t.Errorf("stats %+v: want 2 connects after failed attempts", st)
	}
	// "before" survived the restart on disk, "given up" was never sent.
	testutil.Eventually(t, 5*time.Second, func() bool { return second.d.Topic("durable") != nil && second.d.Topic("durable").Depth() == 2 },
		"topic holds the messages from before and during the restart")
}

func TestProducerContext(t *testing.T) {
	t.Parallel()
	s := startNSQD(t, nil)
	p := newProducer(t, s.tcpAddr(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Publish(ctx, "ctx", []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: err = %v, want context.Canceled", err)
	}
	if err := p.Ping(ctx); !errors.Is(err, context.Canceled) || !errors.Is(err, nsq.ErrNotConnected) {
		t.Fatalf("Ping with cancelled context: err = %v", err)
	}
	// Nothing was sent, and the Producer works with a live context.
	if err := p.Publish(ctxTimeout(t, 5*time.Second), "ctx", []byte("y")); err != nil {
		t.Fatal(err)
	}
	waitCount(t, s, "ctx", 1)
}

func TestProducerUnreachable(t *testing.T) {
	t.Parallel()
	cfg := nsq.NewConfig()
	cfg.ReconnectBackoff = 10 * time.Millisecond
	p := newProducer(t, freePort(t), cfg)
	err := p.Publish(ctxTimeout(t, 200*time.Millisecond), "t", []byte("x"))
	if !errors.Is(err, nsq.ErrNotConnected) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrNotConnected and DeadlineExceeded", err)
	}
	// The last dial error is part of the message so the cause is visible.
	if !bytes.Contains([]byte(err.Error()), []byte("last error")) {
		t.Errorf("err = %v: the last connection error is missing", err)
	}
}

func TestProducerStop(t *testing.T) {
	t.Parallel()
	s := startNSQD(t, nil)
	p := newProducer(t, s.tcpAddr(), nil)
	ctx := ctxTimeout(t, 5*time.Second)
	if err := p.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	res := newAsyncResult(100)
	for _, b := range bodies("stop", 100) {
		if err := p.PublishAsync("stop", b, res.done); err != nil {
			t.Fatal(err)
		}
	}
	p.Stop()
	// Everything issued before Stop was answered: Stop waits for what is in flight.
	if errs := res.wait(t); len(errs) > 0 {
		t.Fatalf("%d publishes failed, first: %v", len(errs), errs[0])
	}
	waitCount(t, s, "stop", 100)
	if err := p.Publish(ctx, "stop", []byte("late")); !errors.Is(err, nsq.ErrStopped) {
		t.Errorf("Publish after Stop: err = %v, want ErrStopped", err)
	}
	if err := p.PublishAsync("stop", []byte("late"), nil); !errors.Is(err, nsq.ErrStopped) {
		t.Errorf("PublishAsync after Stop: err = %v, want ErrStopped", err)
	}
	if err := p.Ping(ctx); !errors.Is(err, nsq.ErrStopped) {
		t.Errorf("Ping after Stop: err = %v, want ErrStopped", err)
	}
	p.Stop() // a second Stop is harmless
}

func TestProducerStopFailsWaiting(t *testing.T) {
	t.Parallel()
	cfg := nsq.NewConfig()
	cfg.ReconnectBackoff = 10 * time.Millisecond
	p := newProducer(t, freePort(t), cfg)
	res := newAsyncResult(3)
	for _, b := range bodies("w", 3) {
		if err := p.PublishAsync("t", b, res.done); err != nil {
			t.Fatal(err)
		}
	}
	p.Stop()
	errs := res.wait(t)
	if len(errs) != 3 {
		t.Fatalf("%d of 3 waiting publishes failed, want all", len(errs))
	}
	for _, err := range errs {
		if !errors.Is(err, nsq.ErrStopped) {
			t.Errorf("err = %v, want ErrStopped", err)
		}
	}
}

// With heartbeats every second nsqd drops a client that does not answer within two; the
// connection's read loop answers them, so an idle Producer keeps its connection.
func TestProducerAnswersHeartbeats(t *testing.T) {
	t.Parallel()
	s := startNSQD(t, nil)
	cfg := nsq.NewConfig()
	cfg.HeartbeatInterval = time.Second
	cfg.ReadTimeout = 3 * time.Second
	p := newProducer(t, s.tcpAddr(), cfg)
	ctx := ctxTimeout(t, 10*time.Second)
	if err := p.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	idle := time.NewTimer(2500 * time.Millisecond) // longer than nsqd's 2x heartbeat limit
	<-idle.C
	if err := p.Publish(ctx, "hb", []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Connects != 1 {
		t.Errorf("stats %+v: the connection was dropped while idle", st)
	}
}

func TestNewProducerRejectsBadConfig(t *testing.T) {
	t.Parallel()
	cfg := nsq.NewConfig()
	cfg.Snappy, cfg.Deflate = true, true
	if _, err := nsq.NewProducer("127.0.0.1:4150", cfg); err == nil {
		t.Fatal("NewProducer accepted snappy and deflate together")
	}
	if _, err := nsq.NewProducer("", nil); err == nil {
		t.Fatal("NewProducer accepted an empty address")
	}
}

// An asynchronous flood over several topics, mixed with deferred publishes, arrives
// complete, and each topic's PUBs in the order they were issued, whatever the merging.
func TestProducerAsyncFloodKeepsTopicOrder(t *testing.T) {
	t.Parallel()
	s := startNSQD(t, nil)
	p := newProducer(t, s.tcpAddr(), nil)
	topics := []string{"flood.a", "flood.b", "flood.c"}
	const each = 600
	res := newAsyncResult(len(topics)*each + each/10)
	for i := range each {
		for _, topic := range topics {
			if err := p.PublishAsync(topic, []byte(fmt.Sprintf("%s-%05d", topic, i)), res.done); err != nil {
				t.Fatal(err)
			}
		}
		if i%10 == 0 {
			if err := p.DeferredPublishAsync("flood.d", 0, []byte("d"), res.done); err != nil {
				t.Fatal(err)
			}
		}
	}
	if errs := res.wait(t); len(errs) > 0 {
		t.Fatalf("%d publishes failed, first: %v", len(errs), errs[0])
	}
	for _, topic := range topics {
		waitCount(t, s, topic, each)
	}
	waitCount(t, s, "flood.d", each/10)
	got := consumeGoNSQInOrder(t, s.tcpAddr(), "flood.b", each)
	for i, b := range got {
		if want := fmt.Sprintf("flood.b-%05d", i); b != want {
			t.Fatalf("message %d is %q, want %q", i, b, want)
		}
	}
}

// Stop leaves no goroutine of this package behind, after a reconnection too.
func TestProducerStopLeavesNoGoroutines(t *testing.T) {
	s := startNSQD(t, nil)
	cfg := nsq.NewConfig()
	cfg.Logger = nil
	p, err := nsq.NewProducer(s.tcpAddr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxTimeout(t, 5*time.Second)
	if err := p.Publish(ctx, "leak", []byte("x")); err != nil {
		t.Fatal(err)
	}
	// A rejected merged batch costs a reconnection.
	res := newAsyncResult(3)
	for _, b := range [][]byte{[]byte("a"), make([]byte, 2<<20), []byte("b")} {
		if err := p.PublishAsync("leak", b, res.done); err != nil {
			t.Fatal(err)
		}
	}
	if errs := res.wait(t); len(errs) != 1 {
		t.Fatalf("%d publishes failed, want the oversized one: %v", len(errs), errs)
	}
	p.Stop()
	// The test is not parallel: the parallel tests wait until it has finished, so every
	// goroutine of this package is this Producer's.
	ours := func() string {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "ternmq/tern/nsq.(*") {
				return g
			}
		}
		return ""
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return ours() == "" }, "goroutine left after Stop:\n%s", ours)
}

// TestProducerNotSentBehindStalledCommand has nsqd stop answering: a publish whose context
// ends while it waits behind the unanswered one fails with ErrNotSent (it was never sent, and
// the connection is up), not ErrNotConnected.
func TestProducerNotSentBehindStalledCommand(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		r := bufio.NewReader(nc)
		if _, err := io.ReadFull(r, make([]byte, 4)); err != nil {
			return
		}
		if _, err := readCommand(r, "IDENTIFY"); err != nil {
			return
		}
		// Identified without feature negotiation; then nothing is ever answered.
		if _, err := nc.Write(protocol.AppendFrame(nil, protocol.FrameTypeResponse, []byte("OK"))); err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	p := newProducer(t, ln.Addr().String(), nil)
	if err := p.PublishAsync("t", []byte("first"), nil); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return p.Stats().InFlight == 1 }, "the first PUB sent")
	err = p.Publish(ctxTimeout(t, 100*time.Millisecond), "t", []byte("second"))
	if !errors.Is(err, nsq.ErrNotSent) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nsq.ErrNotConnected) {
		t.Fatalf("err = %v, want ErrNotSent and DeadlineExceeded", err)
	}
}
