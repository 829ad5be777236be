package nsqd

import (
	"bufio"
	"compress/flate"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang/snappy"

	"github.com/ternmq/tern/internal/protocol"
)

const (
	defaultBufferSize = 16 * 1024

	stateInit       int32 = 0
	stateSubscribed int32 = 3
	stateClosing    int32 = 4
)

// client is one V2 connection. Its read loop (protocolV2.ioLoop) owns the reader and the
// negotiated settings; its pump (protocolV2.pump) delivers messages; both write frames under
// wmu. Settings are fixed before SUB, which is the only moment the pump starts delivering, so
// the pump reads them without a lock.
type client struct {
	id       int64
	conn     net.Conn
	remote   string
	connTime time.Time

	r *bufio.Reader
	// stream is what the compressors read and write: conn, or the TLS session over it. The
	// read loop changes it, in IDENTIFY, while the pump is not yet running.
	stream io.ReadWriter
	// authSecret is the secret of the client's AUTH, asked about again when its grants
	// expire; auth is what the auth servers granted (nil before AUTH). The read loop writes
	// both; stats read auth.
	authSecret string
	auth       atomic.Pointer[authState]
	// tlsState is the TLS session's state once IDENTIFY upgraded the connection, for /stats.
	tlsState atomic.Pointer[tls.ConnectionState]

	wmu     sync.Mutex
	out     io.Writer     // where w writes: the socket, or the compressor over it
	w       *bufio.Writer // buffered output over out
	flushFn func() error  // flushes the compressor under w, if any
	heldAns bool          // an answer was written without a flush (pipelined commands)

	// ident is what /stats shows of the client, replaced whole by IDENTIFY and never
	// changed in place, so stats read it without a lock while the read loop writes.
	ident atomic.Pointer[identity]

	// Negotiated by IDENTIFY; owned by the read loop until SUB, when the pump starts reading
	// them and they stop changing (IDENTIFY is refused after SUB).
	heartbeatNs         atomic.Int64 // heartbeat interval; 0: disabled. Atomic: the pump reads it before SUB
	outputBufferSize    int
	outputBufferTimeout time.Duration // 0: disabled
	msgTimeout          time.Duration
	sampleRate          int32
	compressed          bool // snappy or deflate is on: it cannot be negotiated again

	state   atomic.Int32
	rdy     atomic.Int64
	sub     atomic.Pointer[subscription] // set by SUB, before the pump reads it
	channel *Channel                     // set by SUB, before the pump reads it
	topic   *Topic

	messageCount atomic.Uint64
	finishCount  atomic.Uint64
	requeueCount atomic.Uint64

	published atomic.Bool // has published: listed among /stats producers
	pubMu     sync.Mutex
	pubCounts map[string]uint64

	wakeCh     chan struct{} // capacity 1: something the pump waits for changed
	idle       atomic.Bool   // the pump is waiting in its select, not writing
	settingsCh chan struct{} // capacity 1: IDENTIFY changed the heartbeat or flush settings
	exit       chan struct{}
	closeOnce  sync.Once
}

// A client is what a channel delivers to.
var _ subscriber = (*client)(nil)

// identity is a client's self-description and negotiated options, as /stats reports them.
type identity struct {
	clientID, hostname, userAgent string
	sampleRate                    int32
	deflate, snappy               bool
}

func newClient(id int64, conn net.Conn, opts *Options) *client {
	c := &client{
		id:                  id,
		conn:                conn,
		remote:              addrString(conn.RemoteAddr()),
		connTime:            time.Now(),
		r:                   bufio.NewReaderSize(conn, defaultBufferSize),
		stream:              conn,
		out:                 conn,
		w:                   bufio.NewWriterSize(conn, defaultBufferSize),
		outputBufferSize:    defaultBufferSize,
		outputBufferTimeout: opts.OutputBufferTimeout,
		msgTimeout:          opts.MsgTimeout,
		wakeCh:              make(chan struct{}, 1),
		settingsCh:          make(chan struct{}, 1),
		exit:                make(chan struct{}),
	}
	c.ident.Store(&identity{clientID: clientIDFromAddr(conn.RemoteAddr())})
	c.heartbeatNs.Store(int64(opts.ClientTimeout / 2))
	return c
}

func (c *client) heartbeatInterval() time.Duration { return time.Duration(c.heartbeatNs.Load()) }

// clientIDFromAddr is a client's ID until it IDENTIFYs: its host, or for a unix socket
// connection whatever the socket's address says (usually nothing).
func clientIDFromAddr(a net.Addr) string {
	host, _, err := net.SplitHostPort(addrString(a))
	if err != nil {
		return addrString(a)
	}
	return host
}

// readyCount implements subscriber: the client's RDY while it is subscribed, 0 once it sent
// CLS.
func (c *client) readyCount() int64 {
	if c.state.Load() != stateSubscribed {
		return 0
	}
	return c.rdy.Load()
}

// wake tells the pump to look again; it never blocks. It implements subscriber.
func (c *client) wake() {
	select {
	case c.wakeCh <- struct{}{}:
	default:
	}
}

// parked implements subscriber: the pump is waiting to be woken.
func (c *client) parked() bool { return c.idle.Load() }

// close ends the connection; the read loop sees the error and cleans up. It implements
// subscriber.
func (c *client) close() {
	c.closeOnce.Do(func() {
		close(c.exit)
		_ = c.conn.Close()
	})
}

// fatalLinger is how long a connection closed for a fatal error goes on reading, and
// discarding, what the client still sends (net/http waits as long for the same reason).
const fatalLinger = 500 * time.Millisecond

// lingerAfterFatal half-closes the connection after its fatal error frame and discards what
// the client still sends, for fatalLinger at most, before the caller closes it. Closing a
// socket with unread data makes the kernel send a reset, which can destroy the error frame
// before the client reads it: a client in the middle of sending a large MPUB would see
// "connection reset" instead of E_BAD_BODY.
func (c *client) lingerAfterFatal() {
	if cw, ok := c.conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(fatalLinger))
	_, _ = io.Copy(io.Discard, c.conn)
}

// writeDeadline bounds every write so a client that stops reading cannot hold a pump or a
// read loop forever.
func (c *client) writeDeadline() time.Time {
	d := c.heartbeatInterval()
	if d <= 0 {
		d = 30 * time.Second
	}
	return time.Now().Add(d)
}

// sendFrame writes one frame and flushes it.
func (c *client) sendFrame(ft protocol.FrameType, data []byte) error {
	return c.writeFrame(ft, data, true)
}

// writeFrame writes one frame, flushing it when flush is set.
func (c *client) writeFrame(ft protocol.FrameType, data []byte, flush bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(c.writeDeadline())
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(len(data)+4))
	binary.BigEndian.PutUint32(hdr[4:], uint32(ft))
	if _, err := c.w.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := c.w.Write(data); err != nil {
		return err
	}
	if !flush {
		c.heldAns = true
		return nil
	}
	return c.flushLocked()
}

func (c *client) flushLocked() error {
	c.heldAns = false
	if err := c.w.Flush(); err != nil {
		return err
	}
	if c.flushFn != nil {
		return c.flushFn()
	}
	return nil
}

// writeMessages writes message frames to the buffer; the caller decides when to flush.
func (c *client) writeMessagesLocked(ds []delivery, scratch []byte) ([]byte, error) {
	for i := range ds {
		d := &ds[i]
		scratch = binary.BigEndian.AppendUint32(scratch[:0], uint32(4+protocol.MessageHeaderLength+len(d.body)))
		scratch = binary.BigEndian.AppendUint32(scratch, uint32(protocol.FrameTypeMessage))
		scratch = binary.BigEndian.AppendUint64(scratch, uint64(d.timestamp))
		scratch = binary.BigEndian.AppendUint16(scratch, d.attempts)
		id := protocol.NewMessageID(d.id)
		scratch = append(scratch, id[:]...)
		if _, err := c.w.Write(scratch); err != nil {
			return scratch, err
		}
		if _, err := c.w.Write(d.body); err != nil {
			return scratch, err
		}
	}
	return scratch, nil
}

// upgradeSnappy and upgradeDeflate switch the stream to compression after IDENTIFY's
// response has been sent in the clear. The client sends nothing until it has read that
// response, so nothing compressed is left in the old reader's buffer.
// upgradeTLS runs the server side of a TLS handshake on the connection, within
// tlsHandshakeTimeout, and reads and writes through the session from then on. Deadlines are
// still set on conn, which the session reads and writes through.
func (c *client) upgradeTLS(cfg *tls.Config) error {
	if c.r.Buffered() > 0 {
		// The client must wait for the IDENTIFY answer before its handshake; bytes already
		// read would be lost under the session.
		return errors.New("data received before the TLS handshake")
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	sess := tls.Server(c.conn, cfg)
	_ = c.conn.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
	err := sess.Handshake()
	_ = c.conn.SetDeadline(time.Time{})
	if err != nil {
		return err
	}
	state := sess.ConnectionState()
	c.tlsState.Store(&state)
	c.stream = sess
	c.r = bufio.NewReaderSize(sess, defaultBufferSize)
	c.out, c.flushFn = sess, nil
	c.w = bufio.NewWriterSize(sess, c.bufferSize())
	return nil
}

func (c *client) upgradeSnappy() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.r = bufio.NewReaderSize(snappy.NewReader(c.stream), defaultBufferSize)
	sw := snappy.NewBufferedWriter(c.stream)
	c.out, c.flushFn = sw, sw.Flush
	c.w = bufio.NewWriterSize(sw, c.bufferSize())
}

func (c *client) upgradeDeflate(level int) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.r = bufio.NewReaderSize(flate.NewReader(c.stream), defaultBufferSize)
	fw, err := flate.NewWriter(c.stream, level)
	if err != nil {
		return err
	}
	c.out, c.flushFn = fw, fw.Flush
	c.w = bufio.NewWriterSize(fw, c.bufferSize())
	return nil
}

// resizeOutput gives the output buffer the negotiated size, over whatever stream is in
// use. Nothing is buffered: the read loop calls it between commands, with answers flushed.
func (c *client) resizeOutput() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.w.Size() == c.bufferSize() {
		return nil
	}
	if err := c.w.Flush(); err != nil {
		return err
	}
	c.w = bufio.NewWriterSize(c.out, c.bufferSize())
	return nil
}

func (c *client) bufferSize() int {
	if c.outputBufferSize <= 0 {
		return 64 // unbuffered: the pump flushes after every write anyway
	}
	return c.outputBufferSize
}

func (c *client) countPub(topic string, n int) {
	c.published.Store(true)
	c.pubMu.Lock()
	if c.pubCounts == nil {
		c.pubCounts = make(map[string]uint64)
	}
	c.pubCounts[topic] += uint64(n)
	c.pubMu.Unlock()
}
