package nsqd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gonsq "github.com/nsqio/go-nsq"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/internal/version"
)

// fakeMode is how a fakeLookupd treats connections.
type fakeMode int

const (
	fakeNormal         fakeMode = iota // answer like nsqlookupd
	fakeHang                           // read everything, answer nothing
	fakeCloseOnAccept                  // close every connection at once
	fakeRejectIdentify                 // answer IDENTIFY with E_INVALID and close
)

// fakeLookupd is a V1 server that records what nsqd sends and keeps nsqlookupd's model of
// each connection's registrations: REGISTER topic channel holds the topic too, UNREGISTER
// topic drops its channels.
type fakeLookupd struct {
	t    testing.TB
	addr string

	mu       sync.Mutex
	ln       net.Listener
	mode     fakeMode
	gate     chan struct{} // when not nil, REGISTER and UNREGISTER wait for it to close
	nextID   int
	accepts  []time.Time
	conns    map[int]*fakeLookupdConn
	commands []fakeCommand
	wg       sync.WaitGroup
}

// fakeLookupdConn is one nsqd connection as the fake sees it.
type fakeLookupdConn struct {
	conn     net.Conn
	identity map[string]any
	regs     map[string]map[string]bool
	closed   bool
}

// fakeCommand is one command line received, with the connection it came on.
type fakeCommand struct {
	conn int
	line string
}

// startFakeLookupd listens on addr ("127.0.0.1:0" for any port) and serves until the test
// ends.
func startFakeLookupd(t testing.TB, addr string, mode fakeMode) *fakeLookupd {
	t.Helper()
	f := &fakeLookupd{t: t, mode: mode, conns: make(map[int]*fakeLookupdConn)}
	f.listen(addr)
	t.Cleanup(f.stop)
	return f
}

func (f *fakeLookupd) listen(addr string) {
	f.t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		f.t.Fatalf("fake lookupd: %v", err)
	}
	f.mu.Lock()
	f.ln, f.addr = ln, ln.Addr().String()
	f.mu.Unlock()
	f.wg.Go(func() { f.accept(ln) })
}

// stop closes the listener and every connection, as a lookupd that exits does.
func (f *fakeLookupd) stop() {
	f.mu.Lock()
	if f.ln != nil {
		f.ln.Close()
		f.ln = nil
	}
	for _, c := range f.conns {
		c.conn.Close()
	}
	if f.gate != nil {
		close(f.gate)
		f.gate = nil
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// restart stops the fake and listens again on the same address, forgetting every
// registration.
func (f *fakeLookupd) restart() {
	f.t.Helper()
	f.stop()
	f.listen(f.addr)
}

func (f *fakeLookupd) setMode(m fakeMode) {
	f.mu.Lock()
	f.mode = m
	f.mu.Unlock()
}

// hold makes REGISTER and UNREGISTER wait for release before they are answered.
func (f *fakeLookupd) hold() {
	f.mu.Lock()
	f.gate = make(chan struct{})
	f.mu.Unlock()
}

func (f *fakeLookupd) release() {
	f.mu.Lock()
	if f.gate != nil {
		close(f.gate)
		f.gate = nil
	}
	f.mu.Unlock()
}

func (f *fakeLookupd) accept(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.accepts = append(f.accepts, time.Now())
		mode := f.mode
		if mode == fakeCloseOnAccept {
			f.mu.Unlock()
			conn.Close()
			continue
		}
		f.nextID++
		id := f.nextID
		c := &fakeLookupdConn{conn: conn, regs: make(map[string]map[string]bool)}
		f.conns[id] = c
		f.mu.Unlock()
		f.wg.Go(func() {
			defer func() {
				conn.Close()
				f.mu.Lock()
				c.closed = true
				f.mu.Unlock()
			}()
			if mode == fakeHang {
				_, _ = io.Copy(io.Discard, conn)
				return
			}
			f.serve(id, c, mode)
		})
	}
}

func (f *fakeLookupd) serve(id int, c *fakeLookupdConn, mode fakeMode) {
	r := bufio.NewReader(c.conn)
	var magic [4]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil || string(magic[:]) != protocol.MagicV1 {
		return
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSpace(line)
		f.mu.Lock()
		f.commands = append(f.commands, fakeCommand{conn: id, line: line})
		gate := f.gate
		f.mu.Unlock()
		params := strings.Split(line, " ")
		answer := "OK"
		switch params[0] {
		case "IDENTIFY":
			var size [4]byte
			if _, err := io.ReadFull(r, size[:]); err != nil {
				return
			}
			body := make([]byte, binary.BigEndian.Uint32(size[:]))
			if _, err := io.ReadFull(r, body); err != nil {
				return
			}
			if mode == fakeRejectIdentify {
				f.answer(c, "E_INVALID")
				return
			}
			var identity map[string]any
			if err := json.Unmarshal(body, &identity); err != nil {
				f.answer(c, "E_BAD_BODY")
				return
			}
			f.mu.Lock()
			c.identity = identity
			f.mu.Unlock()
			answer = `{"tcp_port":4160,"http_port":4161,"version":"1.3.0","broadcast_address":"fake","hostname":"fake"}`
		case "REGISTER", "UNREGISTER":
			if len(params) < 2 || len(params) > 3 {
				f.answer(c, "E_INVALID bad params")
				return
			}
			if gate != nil {
				<-gate
			}
			topic, channel := params[1], ""
			if len(params) == 3 {
				channel = params[2]
			}
			f.mu.Lock()
			switch {
			case params[0] == "REGISTER":
				if c.regs[topic] == nil {
					c.regs[topic] = make(map[string]bool)
				}
				if channel != "" {
					c.regs[topic][channel] = true
				}
			case channel == "":
				delete(c.regs, topic)
			default:
				delete(c.regs[topic], channel)
			}
			f.mu.Unlock()
		case "PING":
		default:
			f.answer(c, "E_INVALID invalid command "+params[0])
			return
		}
		if !f.answer(c, answer) {
			return
		}
	}
}

func (f *fakeLookupd) answer(c *fakeLookupdConn, s string) bool {
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.conn.Write(protocol.AppendV1Response(nil, []byte(s)))
	return err == nil
}

// live returns the IDs of the connections still open, in order.
func (f *fakeLookupd) live() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []int
	for id, c := range f.conns {
		if !c.closed {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// registrations returns what the open connections hold, as "topic" and "topic/channel",
// sorted.
func (f *fakeLookupd) registrations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var regs []string
	for _, c := range f.conns {
		if c.closed {
			continue
		}
		for topic, chans := range c.regs {
			regs = append(regs, topic)
			for ch := range chans {
				regs = append(regs, topic+"/"+ch)
			}
		}
	}
	slices.Sort(regs)
	return regs
}

// linesOn returns the command lines received on connection id.
func (f *fakeLookupd) linesOn(id int) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var lines []string
	for _, c := range f.commands {
		if c.conn == id {
			lines = append(lines, c.line)
		}
	}
	return lines
}

func (f *fakeLookupd) identity(id int) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.conns[id]; c != nil {
		return maps.Clone(c.identity)
	}
	return nil
}

func (f *fakeLookupd) acceptTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.accepts)
}

// hasExactly polls until the open connections hold exactly want.
func (f *fakeLookupd) hasExactly(t testing.TB, timeout time.Duration, want ...string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	testutil.Eventually(t, timeout, func() bool { return slices.Equal(f.registrations(), want) },
		"lookupd %s holds %v, want %v", f.addr, f.registrations, want)
}

// startLookupNSQD runs an nsqd with TCP and HTTP on 127.0.0.1:0 and the given lookupd
// tuning. before, when not nil, runs between New and Run. The daemon stops when the test
// ends; stop stops it earlier.
func startLookupNSQD(t testing.TB, tuning lookupTuning, mutate func(*Options), before func(*NSQD)) (n *NSQD, stop func()) {
	t.Helper()
	n, stopErr := startTestDaemon(t, t.TempDir(), withHTTP(true, mutate), beforeRun(func(n *NSQD) {
		n.lookupState().tuning = tuning
		if before != nil {
			before(n)
		}
	}))
	// When the test does not call stop, startTestDaemon's cleanup stops the daemon and reports.
	return n, sync.OnceFunc(func() {
		if err := stopErr(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func mustDo(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func createChannels(t testing.TB, n *NSQD, topic string, channels ...string) {
	t.Helper()
	_, err := n.CreateTopic(topic)
	mustDo(t, err)
	for _, c := range channels {
		_, err := n.CreateChannel(topic, c)
		mustDo(t, err)
	}
}

// fastLookup is tuning for tests that wait for reconnections.
var fastLookup = lookupTuning{backoffMin: 10 * time.Millisecond, backoffMax: 100 * time.Millisecond}

func TestLookupConnectIdentifiesAndRegistersEverything(t *testing.T) {
	tests := []struct {
		name              string
		mutate            func(*Options)
		wantTCP, wantHTTP func(*NSQD) int
	}{
		{
			name:     "real ports",
			mutate:   func(o *Options) {},
			wantTCP:  func(n *NSQD) int { return protocol.ListenPort(n.TCPAddr()) },
			wantHTTP: func(n *NSQD) int { return protocol.ListenPort(n.HTTPAddr()) },
		},
		{
			name: "broadcast ports and topology",
			mutate: func(o *Options) {
				o.BroadcastAddress = "node7.example"
				o.BroadcastTCPPort = 14150
				o.BroadcastHTTPPort = 14151
				o.TopologyZone = "zone-a"
				o.TopologyRegion = "region-1"
			},
			wantTCP:  func(*NSQD) int { return 14150 },
			wantHTTP: func(*NSQD) int { return 14151 },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := startFakeLookupd(t, "127.0.0.1:0", fakeNormal)
			n, _ := startLookupNSQD(t, lookupTuning{}, func(o *Options) {
				o.LookupdTCPAddresses = []string{f.addr}
				tc.mutate(o)
			}, func(n *NSQD) {
				// Made before Run: the first sync must find them.
				createChannels(t, n, "orders", "billing", "audit#ephemeral")
				createChannels(t, n, "empty")
				createChannels(t, n, "scratch#ephemeral", "tmp#ephemeral")
			})
			f.hasExactly(t, 5*time.Second, "orders", "orders/audit#ephemeral", "orders/billing",
				"empty", "scratch#ephemeral", "scratch#ephemeral/tmp#ephemeral")

			live := f.live()
			if len(live) != 1 {
				t.Fatalf("connections %v, want one", live)
			}
			lines := f.linesOn(live[0])
			want := []string{"IDENTIFY", "REGISTER empty", "REGISTER orders audit#ephemeral",
				"REGISTER orders billing", "REGISTER scratch#ephemeral tmp#ephemeral"}
			if !slices.Equal(lines, want) {
				t.Errorf("commands on connect:\n got %q\nwant %q", lines, want)
			}
			opts := n.getOpts()
			id := f.identity(live[0])
			wantID := map[string]any{
				"version":           version.Binary,
				"tcp_port":          float64(tc.wantTCP(n)),
				"http_port":         float64(tc.wantHTTP(n)),
				"hostname":          n.lookupIdentity().Hostname,
				"broadcast_address": opts.BroadcastAddress,
				"topology_zone":     opts.TopologyZone,
				"topology_region":   opts.TopologyRegion,
			}
			if !maps.Equal(id, wantID) {
				t.Errorf("IDENTIFY body %v, want %v", id, wantID)
			}
		})
	}
}

func TestLookupFollowsTopicsAndChannels(t *testing.T) {
	f := startFakeLookupd(t, "127.0.0.1:0", fakeNormal)
	n, _ := startLookupNSQD(t, lookupTuning{}, func(o *Options) { o.LookupdTCPAddresses = []string{f.addr} },
		func(n *NSQD) { createChannels(t, n, "base") })
	f.hasExactly(t, 5*time.Second, "base")

	// sub is a go-nsq consumer of topic/channel, stopped by the returned func.
	sub := func(t *testing.T, topic, channel string) func() {
		t.Helper()
		cfg := gonsq.NewConfig()
		c, err := gonsq.NewConsumer(topic, channel, cfg)
		mustDo(t, err)
		c.SetLogger(nil, gonsq.LogLevelError)
		c.AddHandler(gonsq.HandlerFunc(func(*gonsq.Message) error { return nil }))
		mustDo(t, c.ConnectToNSQD(n.TCPAddr().String()))
		stop := func() {
			c.Stop()
			<-c.StopChan
		}
		t.Cleanup(stop)
		return stop
	}
	var stopEphemeral func()

	steps := []struct {
		name string
		do   func(t *testing.T)
		want []string
	}{
		{"create topic", func(t *testing.T) { createChannels(t, n, "a") }, []string{"a"}},
		{"publish creates a topic", func(t *testing.T) { mustDo(t, n.Publish("b", [][]byte{[]byte("x")}, 0)) },
			[]string{"a", "b"}},
		{"create channels", func(t *testing.T) { createChannels(t, n, "a", "c1", "c2") },
			[]string{"a", "a/c1", "a/c2", "b"}},
		{"delete channel", func(t *testing.T) { mustDo(t, n.DeleteChannel("a", "c1")) },
			[]string{"a", "a/c2", "b"}},
		{"delete last channel keeps the topic", func(t *testing.T) { mustDo(t, n.DeleteChannel("a", "c2")) },
			[]string{"a", "b"}},
		{"subscribe creates an ephemeral channel", func(t *testing.T) { stopEphemeral = sub(t, "b", "live#ephemeral") },
			[]string{"a", "b", "b/live#ephemeral"}},
		{"its last client leaving deletes it", func(t *testing.T) { stopEphemeral() },
			[]string{"a", "b"}},
		{"ephemeral topic and channel", func(t *testing.T) { stopEphemeral = sub(t, "e#ephemeral", "c#ephemeral") },
			[]string{"a", "b", "e#ephemeral", "e#ephemeral/c#ephemeral"}},
		{"ephemeral topic goes with its last channel", func(t *testing.T) { stopEphemeral() },
			[]string{"a", "b"}},
		{"delete topic with channels", func(t *testing.T) {
			createChannels(t, n, "b", "x", "y")
			mustDo(t, n.DeleteTopic("b"))
		}, []string{"a"}},
		{"delete and recreate at once", func(t *testing.T) {
			mustDo(t, n.DeleteTopic("a"))
			createChannels(t, n, "a", "z")
		}, []string{"a", "a/z"}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			s.do(t)
			f.hasExactly(t, 5*time.Second, append([]string{"base"}, s.want...)...)
		})
	}
	if live := f.live(); len(live) != 1 {
		t.Errorf("connections %v, want the one it started with", live)
	}
}

func TestLookupPings(t *testing.T) {
	f := startFakeLookupd(t, "127.0.0.1:0", fakeNormal)
	startLookupNSQD(t, lookupTuning{pingInterval: 20 * time.Millisecond},
		func(o *Options) { o.LookupdTCPAddresses = []string{f.addr} }, nil)
	pings := func() int {
		live := f.live()
		if len(live) != 1 {
			return 0
		}
		return strings.Count(strings.Join(f.linesOn(live[0]), "\n"), "PING")
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return pings() >= 5 }, "5 PINGs on one connection")
	if a := len(f.acceptTimes()); a != 1 {
		t.Errorf("%d connections accepted, want 1", a)
	}
}

func TestLookupResyncsAfterLookupdRestart(t *testing.T) {
	f := startFakeLookupd(t, "127.0.0.1:0", fakeNormal)
	// Default tuning: the reconnection bound is the production one.
	n, _ := startLookupNSQD(t, lookupTuning{}, func(o *Options) { o.LookupdTCPAddresses = []string{f.addr} },
		func(n *NSQD) { createChannels(t, n, "t1", "c1") })
	f.hasExactly(t, 5*time.Second, "t1", "t1/c1")

	f.stop()
	// Changes while the lookupd is down are part of the picture it gets back.
	createChannels(t, n, "t2")
	mustDo(t, n.DeleteChannel("t1", "c1"))
	createChannels(t, n, "t1", "c9")
	f.listen(f.addr)
	restarted := time.Now()
	f.hasExactly(t, 5*time.Second, "t1", "t1/c9", "t2")
	t.Logf("full picture %v after the restart", time.Since(restarted))

	// And again with the lookupd coming back at once.
	f.restart()
	f.hasExactly(t, 5*time.Second, "t1", "t1/c9", "t2")
}

func TestLookupHungLookupdDelaysNothing(t *testing.T) {
	hung := startFakeLookupd(t, "127.0.0.1:0", fakeHang)
	good := startFakeLookupd(t, "127.0.0.1:0", fakeNormal)
	// A long I/O timeout: a design that waited on the hung lookupd would take seconds per
	// topic.
	n, _ := startLookupNSQD(t, lookupTuning{ioTimeout: 10 * time.Second},
		func(o *Options) { o.LookupdTCPAddresses = []string{hung.addr, good.addr} }, nil)
	testutil.Eventually(t, 5*time.Second, func() bool { return len(hung.acceptTimes()) > 0 },
		"nsqd connects to the hung lookupd")

	p, err := gonsq.NewProducer(n.TCPAddr().String(), gonsq.NewConfig())
	mustDo(t, err)
	p.SetLogger(nil, gonsq.LogLevelError)
	t.Cleanup(p.Stop)
	var want []string
	var slowest time.Duration
	for i := range 30 {
		topic := fmt.Sprintf("new-%02d", i)
		want = append(want, topic)
		start := time.Now()
		done := make(chan *gonsq.ProducerTransaction, 1)
		mustDo(t, p.PublishAsync(topic, []byte("x"), done))
		select {
		case tr := <-done:
			mustDo(t, tr.Error)
		case <-time.After(5 * time.Second):
			t.Fatalf("PUB to %s not answered within 5s while a lookupd hangs", topic)
		}
		slowest = max(slowest, time.Since(start))
	}
	t.Logf("slowest PUB to a new topic: %v", slowest)
	if slowest > time.Second {
		t.Errorf("a PUB to a new topic took %v while a lookupd hangs", slowest)
	}
	// The healthy lookupd is not held up either.
	good.hasExactly(t, 5*time.Second, want...)
}

func TestLookupDeadAddressRetriedWithBackoff(t *testing.T) {
	tuning := lookupTuning{backoffMin: 20 * time.Millisecond, backoffMax: 160 * time.Millisecond}
	f := startFakeLookupd(t, "127.0.0.1:0", fakeCloseOnAccept)
	startLookupNSQD(t, tuning, func(o *Options) { o.LookupdTCPAddresses = []string{f.addr} },
		func(n *NSQD) { createChannels(t, n, "t", "c") })
	const attempts = 8
	testutil.Eventually(t, 10*time.Second, func() bool { return len(f.acceptTimes()) >= attempts },
		"%d connection attempts", attempts)

	// Attempt i+1 follows failure i+1, whose wait is drawn from the upper half of
	// min(backoffMin * 2^i, backoffMax) (package backoff).
	times := f.acceptTimes()
	for i := range attempts - 1 {
		ceiling := min(tuning.backoffMin<<i, tuning.backoffMax)
		gap := times[i+1].Sub(times[i])
		if gap < ceiling/2 {
			t.Errorf("attempt %d came %v after the previous one, want at least %v", i+2, gap, ceiling/2)
		}
		if gap > ceiling+2*time.Second {
			t.Errorf("attempt %d came %v after the previous one, want about %v at most", i+2, gap, ceiling)
		}
	}

	// A dead port: nothing listens, then the lookupd comes up there.
	addr := f.addr
	f.stop()
	f.setMode(fakeNormal)
	f.listen(addr)
	f.hasExactly(t, 5*time.Second, "t", "t/c")
}

func TestLookupRejectedIdentifyClosesThePeer(t *testing.T) {
	f := startFakeLookupd(t, "127.0.0.1:0", fakeRejectIdentify)
	startLookupNSQD(t, fastLookup, func(o *Options) { o.LookupdTCPAddresses = []string{f.addr} },
		func(n *NSQD) { createChannels(t, n, "t") })
	testutil.Eventually(t, 5*time.Second, func() bool { return len(f.acceptTimes()) >= 3 },
		"nsqd retries after E_INVALID")
	for id := 1; id <= 2; id++ {
		if lines := f.linesOn(id); !slices.Equal(lines, []string{"IDENTIFY"}) {
			t.Errorf("connection %d after E_INVALID: %q, want IDENTIFY alone", id, lines)
		}
	}
	f.setMode(fakeNormal)
	f.hasExactly(t, 5*time.Second, "t")
}

func TestLookupOverflowingQueueResyncs(t *testing.T) {
	f := startFakeLookupd(t, "127.0.0.1:0", fakeNormal)
	n, _ := startLookupNSQD(t, lookupTuning{maxPending: 4, ioTimeout: 20 * time.Second},
		func(o *Options) { o.LookupdTCPAddresses = []string{f.addr} },
		func(n *NSQD) { createChannels(t, n, "gone", "c") })
	f.hasExactly(t, 5*time.Second, "gone", "gone/c")

	// The peer waits for its answer to REGISTER trigger while more changes than its queue
	// holds pile up, a deletion among them.
	f.hold()
	createChannels(t, n, "trigger")
	testutil.Eventually(t, 5*time.Second, func() bool {
		live := f.live()
		return len(live) == 1 && slices.Contains(f.linesOn(live[0]), "REGISTER trigger")
	}, "REGISTER trigger sent")
	mustDo(t, n.DeleteTopic("gone"))
	want := []string{"trigger"}
	for i := range 10 {
		topic := fmt.Sprintf("t%d", i)
		createChannels(t, n, topic, "c")
		want = append(want, topic, topic+"/c")
	}
	f.release()
	f.hasExactly(t, 5*time.Second, want...)
	if live := f.live(); len(live) != 1 {
		t.Errorf("connections %v, want the one it started with", live)
	}
}

func TestLookupAddressesChangeAtRuntime(t *testing.T) {
	a := startFakeLookupd(t, "127.0.0.1:0", fakeNormal)
	b := startFakeLookupd(t, "127.0.0.1:0", fakeNormal)
	n, _ := startLookupNSQD(t, lookupTuning{}, nil, func(n *NSQD) { createChannels(t, n, "t", "c") })
	base := "http://" + n.HTTPAddr().String()
	put := func(t *testing.T, addrs ...string) {
		t.Helper()
		if addrs == nil {
			addrs = []string{}
		}
		body, _ := json.Marshal(addrs)
		req, err := http.NewRequest("PUT", base+"/config/nsqlookupd_tcp_addresses", bytes.NewReader(body))
		mustDo(t, err)
		res, err := http.DefaultClient.Do(req)
		mustDo(t, err)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("PUT %s: %d", body, res.StatusCode)
		}
	}
	full := []string{"t", "t/c"}
	steps := []struct {
		name         string
		addrs        []string
		wantA, wantB []string
	}{
		{"add one", []string{a.addr}, full, nil},
		{"add another", []string{a.addr, b.addr}, full, full},
		{"remove the first", []string{b.addr}, nil, full},
		{"duplicates connect once", []string{a.addr, a.addr, b.addr}, full, full},
		{"remove all", nil, nil, nil},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			put(t, s.addrs...)
			a.hasExactly(t, 5*time.Second, s.wantA...)
			b.hasExactly(t, 5*time.Second, s.wantB...)
			for _, f := range []*fakeLookupd{a, b} {
				want := 0
				if slices.Contains(s.addrs, f.addr) {
					want = 1
				}
				testutil.Eventually(t, 5*time.Second, func() bool { return len(f.live()) == want },
					"%d connections to %s, want %d", func() int { return len(f.live()) }, f.addr, want)
			}
		})
	}
}

func TestLookupShutdownClosesConnections(t *testing.T) {
	f := startFakeLookupd(t, "127.0.0.1:0", fakeNormal)
	hung := startFakeLookupd(t, "127.0.0.1:0", fakeHang)
	_, stop := startLookupNSQD(t, lookupTuning{ioTimeout: time.Minute},
		func(o *Options) { o.LookupdTCPAddresses = []string{f.addr, hung.addr} },
		func(n *NSQD) { createChannels(t, n, "t") })
	f.hasExactly(t, 5*time.Second, "t")
	start := time.Now()
	stop()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %v with a hung lookupd", d)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return len(f.live()) == 0 && len(hung.live()) == 0 },
		"connections closed at shutdown")
	// Run waits for every peer goroutine, so none may be left once it has returned.
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, fn := range []string{"(*lookupPeer).run", "(*lookupSession).readLoop", "(*lookupPeers).run"} {
		if strings.Contains(stacks, fn) {
			t.Errorf("a goroutine in %s outlived Run", fn)
		}
	}
}

// fakeSource is a lookupSource over a fixed state, for the command planning tests.
type fakeSource struct{ state map[string][]string }

func (s fakeSource) lookupdAddresses() []string        { return nil }
func (s fakeSource) lookupdDialTimeout() time.Duration { return 0 }
func (s fakeSource) lookupdTLS() *tls.Config           { return nil }
func (s fakeSource) lookupIdentity() lookupIdentity    { return lookupIdentity{} }

func (s fakeSource) registrationSnapshot() []topicRegistrations {
	var regs []topicRegistrations
	for _, topic := range slices.Sorted(maps.Keys(s.state)) {
		regs = append(regs, topicRegistrations{topic: topic, channels: s.state[topic]})
	}
	return regs
}

func (s fakeSource) registrationExists(topic, channel string) bool {
	chans, ok := s.state[topic]
	return ok && (channel == "" || slices.Contains(chans, channel))
}

func commandLines(cmds []*protocol.Command) []string {
	lines := make([]string, len(cmds))
	for i, c := range cmds {
		lines[i] = c.String()
	}
	return lines
}

// held builds a lookupPeer.registered value from "topic" and "topic/channel" names.
func held(names ...string) map[string]map[string]struct{} {
	m := make(map[string]map[string]struct{})
	for _, name := range names {
		topic, channel, _ := strings.Cut(name, "/")
		if m[topic] == nil {
			m[topic] = make(map[string]struct{})
		}
		if channel != "" {
			m[topic][channel] = struct{}{}
		}
	}
	return m
}

func TestLookupSyncCommands(t *testing.T) {
	tests := []struct {
		name  string
		state map[string][]string
		held  []string
		want  []string
	}{
		{"nothing", nil, nil, nil},
		{"fresh connection", map[string][]string{"a": {"c1", "c2"}, "b": nil}, nil,
			[]string{"REGISTER a c1", "REGISTER a c2", "REGISTER b"}},
		{"up to date", map[string][]string{"a": {"c1"}, "b": nil}, []string{"a", "a/c1", "b"}, nil},
		{"topic gone", map[string][]string{"b": nil}, []string{"a", "a/c1", "b"},
			[]string{"UNREGISTER a"}},
		{"channel gone, topic kept", map[string][]string{"a": nil}, []string{"a", "a/c1"},
			[]string{"UNREGISTER a c1"}},
		{"mixed", map[string][]string{"a": {"c2"}, "n": {"x"}}, []string{"a", "a/c1", "z"},
			[]string{"UNREGISTER a c1", "UNREGISTER z", "REGISTER a c2", "REGISTER n x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &lookupPeer{src: fakeSource{tc.state}, registered: held(tc.held...)}
			if got := commandLines(p.syncCommands()); !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			// After the commands the peer's record is the state itself.
			if got := commandLines(p.syncCommands()); len(got) != 0 {
				t.Errorf("second sync sent %q, want nothing", got)
			}
		})
	}
}

func TestLookupChangeCommands(t *testing.T) {
	tests := []struct {
		name  string
		state map[string][]string
		held  []string
		keys  []regKey
		want  []string
	}{
		{"new topic", map[string][]string{"a": nil}, nil, []regKey{{"a", ""}}, []string{"REGISTER a"}},
		{"new channel", map[string][]string{"a": {"c"}}, []string{"a"}, []regKey{{"a", "c"}},
			[]string{"REGISTER a c"}},
		{"created and deleted before its turn", nil, nil, []regKey{{"a", ""}, {"a", "c"}}, nil},
		{"deleted and recreated before its turn", map[string][]string{"a": nil}, []string{"a"},
			[]regKey{{"a", ""}}, nil},
		{"topic deleted drops its channels", nil, []string{"a", "a/c"}, []regKey{{"a", ""}, {"a", "c"}},
			[]string{"UNREGISTER a"}},
		{"channel deleted", map[string][]string{"a": nil}, []string{"a", "a/c"}, []regKey{{"a", "c"}},
			[]string{"UNREGISTER a c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &lookupPeer{src: fakeSource{tc.state}, registered: held(tc.held...)}
			if got := commandLines(p.changeCommands(tc.keys)); !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLookupQueueIsBoundedAndNeverBlocks(t *testing.T) {
	p := &lookupPeer{tuning: lookupTuning{maxPending: 3}, wake: make(chan struct{}, 1)}
	for i := range 3 {
		p.note(regKey{topic: fmt.Sprint(i)})
		p.note(regKey{topic: fmt.Sprint(i)}) // a repeat takes no room
	}
	if keys, resync := p.take(); len(keys) != 3 || resync {
		t.Fatalf("take: %v %v, want 3 names", keys, resync)
	}
	for i := range 10 {
		p.note(regKey{topic: fmt.Sprint(i)})
	}
	if keys, resync := p.take(); len(keys) != 0 || !resync {
		t.Fatalf("take after overflow: %v %v, want a full sync", keys, resync)
	}
	if keys, resync := p.take(); len(keys) != 0 || resync {
		t.Fatalf("take of an empty queue: %v %v", keys, resync)
	}
}

// TestLookupErrorNamesTheCommand checks that the error a peer logs names the command that
// failed and keeps the cause.
func TestLookupErrorNamesTheCommand(t *testing.T) {
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	go func() { _, _ = io.Copy(io.Discard, server) }()
	s := &lookupSession{conn: client, w: bufio.NewWriter(client), responses: make(chan lookupResponse, 1),
		done: make(chan struct{}), ioTimeout: 5 * time.Second}

	s.responses <- lookupResponse{data: []byte("E_BAD_TOPIC bad")}
	err := s.roundTrip(context.Background(), []*protocol.Command{protocol.Register("t", "")})
	if err == nil || !strings.Contains(err.Error(), "REGISTER t") || !strings.Contains(err.Error(), "E_BAD_TOPIC") {
		t.Errorf("error %v, want it to name REGISTER t and E_BAD_TOPIC", err)
	}
	s.responses <- lookupResponse{err: io.EOF}
	err = s.roundTrip(context.Background(), []*protocol.Command{protocol.Ping()})
	if !errors.Is(err, io.EOF) || !strings.Contains(err.Error(), "PING") {
		t.Errorf("error %v, want io.EOF wrapped, naming PING", err)
	}
}

// BenchmarkLookupRegistrationChanged is what creating or deleting a topic or channel costs the
// caller with two lookupd peers: the publish path pays this and nothing more.
func BenchmarkLookupRegistrationChanged(b *testing.B) {
	var l lookupPeers
	l.peers = make(map[string]*lookupPeer)
	for _, addr := range []string{"a", "b"} {
		l.peers[addr] = &lookupPeer{tuning: lookupTuning{}.withDefaults(), wake: make(chan struct{}, 1)}
	}
	keys := make([]regKey, 1024)
	for i := range keys {
		keys[i] = regKey{topic: fmt.Sprintf("topic-%d", i)}
	}
	i := 0
	for b.Loop() {
		l.changed(keys[i%len(keys)])
		if i++; i%len(keys) == 0 {
			for _, p := range l.peers {
				p.take()
			}
		}
	}
}

// BenchmarkLookupFullSync registers 1,000 topics with two channels each on a fresh
// connection, as after a lookupd restart; it reports registrations per second.
func BenchmarkLookupFullSync(b *testing.B) {
	f := startFakeLookupd(b, "127.0.0.1:0", fakeNormal)
	state := make(map[string][]string)
	for i := range 1000 {
		state[fmt.Sprintf("topic-%04d", i)] = []string{"c1", "c2"}
	}
	regs := 0
	for b.Loop() {
		conn, err := net.Dial("tcp", f.addr)
		mustDo(b, err)
		s := startLookupSession(conn, 10*time.Second)
		_, err = s.identify(context.Background(), lookupIdentity{Version: "1.3.0", TCPPort: 1, HTTPPort: 2, BroadcastAddress: "x"})
		mustDo(b, err)
		p := &lookupPeer{src: fakeSource{state}, registered: make(map[string]map[string]struct{})}
		cmds := p.syncCommands()
		mustDo(b, s.roundTrip(context.Background(), cmds))
		regs += len(cmds)
		s.close()
	}
	b.ReportMetric(float64(regs)/b.Elapsed().Seconds(), "registrations/s")
}
