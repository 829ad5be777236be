package nsqd_test

import (
	"bufio"
	"compress/flate"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	nsq "github.com/nsqio/go-nsq"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/nsqd"
	"github.com/ternmq/tern/nsqd/nsqdtest"
)

// ioTimeout bounds every read and write the black-box clients make, so a daemon that stops
// answering fails the test instead of hanging it.
const ioTimeout = 5 * time.Second

// startNSQD runs an nsqd in-process on 127.0.0.1:0 with a fresh data path, a test logger and
// no HTTP listener (mutate may turn it on). stop cancels Run and waits for it to return; it
// runs at cleanup if the test does not call it first, and fails the test if Run returns an
// error or does not return.
func startNSQD(t *testing.T, mutate func(*nsqd.Options)) (addr string, d *nsqd.NSQD, stop func()) {
	t.Helper()
	d, stop = nsqdtest.StartWithStop(t, func(o *nsqd.Options) {
		o.HTTPAddress = ""
		if mutate != nil {
			mutate(o)
		}
	})
	return d.TCPAddr().String(), d, stop
}

// must fails the test with err unless it is nil. The raw-client helpers return errors
// rather than failing, so that goroutines can use them too.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// holdsFor checks cond repeatedly for the whole of d and fails the first time it is false.
// It asserts an invariant over a period (a connection stays up while idle), which is the one
// thing a deadline poll cannot express.
func holdsFor(t testing.TB, d time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	end := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(end) {
		if !cond() {
			t.Fatalf("stopped holding after %v of %v: %s", d-time.Until(end), d, testutil.Sprintf(msg, args...))
		}
		<-tick.C
	}
}

// channelStats returns the stats of one channel, and false if it does not exist.
func channelStats(d *nsqd.NSQD, topic, channel string) (nsqd.ChannelStats, bool) {
	for _, ts := range d.Stats() {
		if ts.Name != topic {
			continue
		}
		for _, cs := range ts.Channels {
			if cs.Name == channel {
				return cs, true
			}
		}
	}
	return nsqd.ChannelStats{}, false
}

// topicStats returns the stats of one topic, and false if it does not exist.
func topicStats(d *nsqd.NSQD, topic string) (nsqd.TopicStats, bool) {
	for _, ts := range d.Stats() {
		if ts.Name == topic {
			return ts, true
		}
	}
	return nsqd.TopicStats{}, false
}

// drained reports whether a channel exists and has nothing left to deliver or acknowledge.
func drained(d *nsqd.NSQD, topic, channel string) bool {
	cs, ok := channelStats(d, topic, channel)
	return ok && cs.Depth == 0 && cs.InFlightCount == 0 && cs.DeferredCount == 0
}

// rawConn is a V2 client speaking bytes on a real socket, for the tests that need exact
// frames or inputs no client library would send. Every method returns an error instead of
// failing the test, so goroutines can drive one.
type rawConn struct {
	conn  net.Conn
	r     *bufio.Reader
	w     io.Writer
	flush func() error // flushes a compressor, if one was negotiated
}

// dialMagic connects to addr and sends magic as the protocol's first four bytes.
func dialMagic(addr, magic string) (*rawConn, error) {
	conn, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := &rawConn{conn: conn, r: bufio.NewReader(conn), w: conn}
	if err := c.write([]byte(magic)); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// dialRaw connects a V2 client that is closed when the test ends.
func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := dialMagic(addr, protocol.MagicV2)
	must(t, err)
	t.Cleanup(func() { c.conn.Close() })
	return c
}

func (c *rawConn) close() { c.conn.Close() }

// write sends raw bytes.
func (c *rawConn) write(b []byte) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := c.w.Write(b); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if c.flush != nil {
		if err := c.flush(); err != nil {
			return fmt.Errorf("flush: %w", err)
		}
	}
	return nil
}

// send writes commands in one go, as a client pipelining them would.
func (c *rawConn) send(cmds ...*protocol.Command) error {
	return c.write(wire(cmds...))
}

// wire returns commands in wire form, concatenated.
func wire(cmds ...*protocol.Command) []byte {
	var b []byte
	for _, cmd := range cmds {
		b = cmd.AppendTo(b)
	}
	return b
}

// identifyCmd is an IDENTIFY with a literal JSON body, so that tests control every byte.
func identifyCmd(jsonBody string) *protocol.Command {
	return &protocol.Command{Name: []byte("IDENTIFY"), Body: []byte(jsonBody)}
}

// mpubCmd is an MPUB of bodies, which must be valid for the builder.
func mpubCmd(topic string, bodies ...string) *protocol.Command {
	bs := make([][]byte, len(bodies))
	for i, b := range bodies {
		bs[i] = []byte(b)
	}
	cmd, err := protocol.MultiPublish(topic, bs)
	if err != nil {
		// Only reachable through a mistake in a test table.
		panic(fmt.Sprintf("mpubCmd: %v", err))
	}
	return cmd
}

// readFrameRaw reads the next frame, heartbeats included, waiting at most timeout.
func (c *rawConn) readFrameRaw(timeout time.Duration) (protocol.FrameType, []byte, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	ft, data, err := protocol.ReadFrame(c.r, 16<<20)
	if err != nil {
		return 0, nil, fmt.Errorf("read frame: %w", err)
	}
	return ft, data, nil
}

// next reads the next frame that is not a heartbeat. Heartbeats are not answered: the tests
// using next finish well within the default 30 s interval.
func (c *rawConn) next() (protocol.FrameType, []byte, error) {
	for {
		ft, data, err := c.readFrameRaw(ioTimeout)
		if err != nil {
			return 0, nil, err
		}
		if ft == protocol.FrameTypeResponse && string(data) == protocol.Heartbeat {
			continue
		}
		return ft, data, nil
	}
}

// expectResponse reads the next frame and checks that it is the response want.
func (c *rawConn) expectResponse(want string) error {
	ft, data, err := c.next()
	if err != nil {
		return fmt.Errorf("want response %q: %w", want, err)
	}
	if ft != protocol.FrameTypeResponse || string(data) != want {
		return fmt.Errorf("want response %q, got %s frame %q", want, ft, trunc(data))
	}
	return nil
}

// expectError reads the next frame and checks that it is an error starting with prefix.
func (c *rawConn) expectError(prefix string) error {
	ft, data, err := c.next()
	if err != nil {
		return fmt.Errorf("want error %q: %w", prefix, err)
	}
	if ft != protocol.FrameTypeError || !strings.HasPrefix(string(data), prefix) {
		return fmt.Errorf("want error %q..., got %s frame %q", prefix, ft, trunc(data))
	}
	return nil
}

// expect checks the next frame against want: an error prefix when want starts with "E_",
// else an exact response.
func (c *rawConn) expect(want string) error {
	if strings.HasPrefix(want, "E_") {
		return c.expectError(want)
	}
	return c.expectResponse(want)
}

// expectClosed checks that the server closes the connection within ioTimeout and sends
// nothing but heartbeats before it does.
func (c *rawConn) expectClosed() error {
	for {
		ft, data, err := c.readFrameRaw(ioTimeout)
		if err != nil {
			if isClosed(err) {
				return nil
			}
			return fmt.Errorf("want connection closed: %w", err)
		}
		if ft == protocol.FrameTypeResponse && string(data) == protocol.Heartbeat {
			continue
		}
		return fmt.Errorf("want connection closed, got %s frame %q", ft, trunc(data))
	}
}

// isClosed reports whether a read error means the peer closed the connection (a reset
// counts: the server closing with unread input makes the kernel send one).
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// usable checks that the connection still serves commands: a NOP, then a PUB answered OK.
func (c *rawConn) usable() error {
	if err := c.send(protocol.Nop(), protocol.Publish("after", []byte("still here"))); err != nil {
		return err
	}
	if err := c.expectResponse(protocol.OK); err != nil {
		return fmt.Errorf("connection no longer usable: %w", err)
	}
	return nil
}

// rawMessage is a message frame as a raw client receives it.
type rawMessage struct {
	timestamp int64
	attempts  uint16
	id        protocol.MessageID
	body      string
	at        time.Time
}

// expectMessage reads the next frame and checks that it is a message.
func (c *rawConn) expectMessage() (rawMessage, error) {
	ft, data, err := c.next()
	if err != nil {
		return rawMessage{}, fmt.Errorf("want message: %w", err)
	}
	if ft != protocol.FrameTypeMessage {
		return rawMessage{}, fmt.Errorf("want message, got %s frame %q", ft, trunc(data))
	}
	ts, attempts, id, body, err := protocol.DecodeMessage(data)
	if err != nil {
		return rawMessage{}, err
	}
	return rawMessage{timestamp: ts, attempts: attempts, id: id, body: string(body), at: time.Now()}, nil
}

// identify sends IDENTIFY with feature negotiation and the given extra JSON fields, reads the
// JSON response and performs the compression upgrade it announces.
func (c *rawConn) identify(fields string) (map[string]any, error) {
	body := `{"feature_negotiation":true}`
	if fields != "" {
		body = `{"feature_negotiation":true,` + fields + `}`
	}
	if err := c.send(identifyCmd(body)); err != nil {
		return nil, err
	}
	ft, data, err := c.next()
	if err != nil {
		return nil, fmt.Errorf("IDENTIFY response: %w", err)
	}
	if ft != protocol.FrameTypeResponse {
		return nil, fmt.Errorf("IDENTIFY: got %s frame %q", ft, trunc(data))
	}
	var resp map[string]any
	if err := json.Unmarshal(data, &resp); err != nil {
		return nil, fmt.Errorf("IDENTIFY response %q: %w", data, err)
	}
	// The compressed stream is read through the old reader, which may already hold its
	// first bytes: the server sends the confirming OK right after the response.
	switch {
	case resp["snappy"] == true:
		c.r = bufio.NewReader(snappy.NewReader(c.r))
		sw := snappy.NewBufferedWriter(c.conn)
		c.w, c.flush = sw, sw.Flush
	case resp["deflate"] == true:
		level, _ := resp["deflate_level"].(float64)
		fw, err := flate.NewWriter(c.conn, int(level))
		if err != nil {
			return nil, fmt.Errorf("deflate level %v: %w", level, err)
		}
		c.r = bufio.NewReader(flate.NewReader(c.r))
		c.w, c.flush = fw, fw.Flush
	default:
		return resp, nil
	}
	// The upgrade is confirmed by an OK sent through the compressed stream.
	if err := c.expectResponse(protocol.OK); err != nil {
		return nil, fmt.Errorf("after compression upgrade: %w", err)
	}
	return resp, nil
}

// subscribe sends SUB and RDY and waits for SUB's OK.
func (c *rawConn) subscribe(topic, channel string, rdy int) error {
	if err := c.send(protocol.Subscribe(topic, channel)); err != nil {
		return err
	}
	if err := c.expectResponse(protocol.OK); err != nil {
		return fmt.Errorf("SUB %s %s: %w", topic, channel, err)
	}
	if rdy > 0 {
		return c.send(protocol.Ready(rdy))
	}
	return nil
}

// publish sends PUB and waits for its OK.
func (c *rawConn) publish(topic, body string) error {
	if err := c.send(protocol.Publish(topic, []byte(body))); err != nil {
		return err
	}
	return c.expectResponse(protocol.OK)
}

func trunc(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

// quietLogger routes go-nsq's log lines through t.Log until the test ends, and drops them
// after, since go-nsq's goroutines can outlive a test by a moment.
func quietLogger(t testing.TB) *log.Logger {
	w := &gonsqLogWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return log.New(w, "go-nsq ", 0)
}

type gonsqLogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *gonsqLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// newProducer returns a go-nsq producer stopped when the test ends.
func newProducer(t testing.TB, addr string, cfg *nsq.Config) *nsq.Producer {
	t.Helper()
	if cfg == nil {
		cfg = nsq.NewConfig()
	}
	p, err := nsq.NewProducer(addr, cfg)
	must(t, err)
	p.SetLogger(quietLogger(t), nsq.LogLevelError)
	t.Cleanup(p.Stop)
	return p
}

// newConsumer connects a go-nsq consumer for topic/channel to addr with handler run by
// concurrency goroutines. It is stopped when the test ends; handlers must have answered every
// message by then, or go-nsq waits up to 30 s for them.
func newConsumer(t testing.TB, addr, topic, channel string, cfg *nsq.Config, handler nsq.Handler, concurrency int) *nsq.Consumer {
	t.Helper()
	if cfg == nil {
		cfg = nsq.NewConfig()
	}
	c, err := nsq.NewConsumer(topic, channel, cfg)
	must(t, err)
	c.SetLogger(quietLogger(t), nsq.LogLevelError)
	c.AddConcurrentHandlers(handler, max(concurrency, 1))
	must(t, c.ConnectToNSQD(addr))
	t.Cleanup(func() {
		c.Stop()
		select {
		case <-c.StopChan:
		case <-time.After(10 * time.Second):
			t.Logf("consumer %s/%s did not stop within 10s", topic, channel)
		}
	})
	return c
}

// received is one delivery seen by a go-nsq handler.
type received struct {
	body     string
	attempts uint16
	id       nsq.MessageID
	at       time.Time
}

// collector is a go-nsq handler that records every delivery and finishes it.
type collector struct {
	mu   sync.Mutex
	msgs []received
}

// HandleMessage records m; returning nil makes go-nsq send FIN.
func (c *collector) HandleMessage(m *nsq.Message) error {
	c.mu.Lock()
	c.msgs = append(c.msgs, received{body: string(m.Body), attempts: m.Attempts, id: m.ID, at: time.Now()})
	c.mu.Unlock()
	return nil
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

func (c *collector) snapshot() []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]received(nil), c.msgs...)
}

// bodies counts deliveries per body.
func (c *collector) bodies() map[string]int {
	m := make(map[string]int)
	for _, r := range c.snapshot() {
		m[r.body]++
	}
	return m
}

// waitFor waits until the collector has seen at least n deliveries.
func (c *collector) waitFor(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	testutil.Eventually(t, timeout, func() bool { return c.count() >= n }, "%d deliveries (have %d)", n, c.count)
}

// checkExactlyOnce fails unless bodies were each delivered exactly once and nothing else was.
func checkExactlyOnce(t testing.TB, got map[string]int, want []string) {
	t.Helper()
	wantSet := make(map[string]bool, len(want))
	for _, w := range want {
		wantSet[w] = true
		if got[w] != 1 {
			t.Errorf("message %q delivered %d times, want 1", w, got[w])
		}
	}
	for b, n := range got {
		if !wantSet[b] {
			t.Errorf("unexpected message %q delivered %d times", b, n)
		}
	}
}

// numbered returns n bodies "<prefix>-<i>".
func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

func toBytes(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}
