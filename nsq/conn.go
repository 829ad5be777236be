package nsq

import (
	"bufio"
	"compress/flate"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang/snappy"

	"github.com/ternmq/tern/internal/protocol"
)

// MessageID is a message's ID as nsqd sends it: 16 hexadecimal characters, echoed in FIN,
// REQ and TOUCH.
type MessageID = protocol.MessageID

// Message is a message delivered by nsqd.
type Message struct {
	// ID identifies the message to FIN, REQ and TOUCH.
	ID MessageID
	// Body is the message's payload. It is the caller's to keep.
	Body []byte
	// Timestamp is when the message was published.
	Timestamp time.Time
	// Attempts counts deliveries, this one included.
	Attempts uint16
	// NSQDAddress is the address of the nsqd that delivered the message.
	NSQDAddress string

	// Set by a Consumer: the connection that delivered the message, and its response state.
	cc                   *consConn
	responded            atomic.Bool
	autoResponseDisabled atomic.Bool
}

// connReadBuffer is the size of a connection's read buffer, the server's default output
// buffer size, so that one read usually takes whatever the server flushed at once.
const connReadBuffer = 16 * 1024

// maxRetainedWriteBuffer bounds the buffer the write pump keeps between writes, so that one
// large MPUB does not pin its size for the connection's lifetime.
const maxRetainedWriteBuffer = 1 << 20

// errClosed is the error a connection reports when it was closed on purpose.
var errClosed = errors.New("nsq: connection closed")

// connHandler receives what a connection reads. Its methods run on the connection's read
// goroutine, one call at a time and in wire order, so they must not block; in particular
// they must not wait for another answer from the same connection.
type connHandler interface {
	// onResponse receives a response frame other than a heartbeat, which the connection
	// answers itself.
	onResponse(c *conn, data []byte)
	// onError receives an error frame. After a fatal one the server closes the connection,
	// and it executes none of the commands sent after the one that failed.
	onError(c *conn, err *Error)
	// onMessage receives a delivered message.
	onMessage(c *conn, m *Message)
	// onClose runs once, when both of the connection's goroutines have ended; err is the
	// first error that ended it, or errClosed after close.
	onClose(c *conn, err error)
}

// batchHandler is implemented by a handler that wants to know where the frames of one read
// end: the read loop calls onBatchEnd before it reads a frame that is not entirely in its
// buffer already, that is before it may block. A Consumer collects the messages of a batch
// and hands them to its handlers at once, which costs one hand-off per read rather than one
// per message.
type batchHandler interface {
	onBatchEnd(c *conn)
}

// commandSource is implemented by a handler that hands the write pump its commands when
// the pump is ready to write, rather than buffering them with write as they come. The
// Producer does, so that it sees every publish that arrived during the previous write and
// can merge them (see Producer.fill).
type commandSource interface {
	// fill appends commands to dst and returns it, and whether more remain for another
	// round. It runs on the write pump's goroutine without any of the conn's locks held.
	fill(c *conn, dst []byte) ([]byte, bool)
}

// conn is one established V2 connection to an nsqd, after the handshake. Its two
// goroutines are the read loop, which owns the reader and reports to the handler, and the
// write pump, which owns the writer. Anyone may buffer a command with write and ask for it
// to be sent with flush; commands buffered between two writes of the pump go out in one
// write, which is how concurrent publishers share system calls.
type conn struct {
	addr   string
	cfg    *Config
	logger *slog.Logger
	h      connHandler
	source commandSource // nil unless h is one
	batch  batchHandler  // nil unless h is one

	nc      net.Conn                  // the socket, for deadlines and Close
	r       *bufio.Reader             // the frame stream, decrypted and decompressed; the read loop's
	w       io.Writer                 // where the pump writes: the socket, TLS or a compressor
	flushW  func() error              // flushes the compressor under w; nil when there is none
	ident   protocol.IdentifyResponse // what the server granted; max_rdy_count is a consumer's
	tlsConn *tls.Conn                 // the TLS layer, when the server granted TLS

	mu      sync.Mutex
	pending []byte // commands buffered since the pump's last write
	closing bool
	wclosed bool // closeWrite was asked for: nothing more is accepted

	kick      chan struct{} // capacity 1: pending has something to send
	exit      chan struct{} // closed by shutdown: both loops stop
	pumpDone  chan struct{} // closed when the write pump has returned
	done      chan struct{} // closed after onClose has returned
	closeOnce sync.Once
	err       atomic.Pointer[error] // the first error that ended the connection
	halfClose atomic.Bool           // set by closeWrite: the pump half-closes after its last write
}

// dial connects to the nsqd at addr and completes the handshake: magic, IDENTIFY with
// feature negotiation, the TLS, snappy and deflate upgrades the server grants (in that
// order, each confirmed by an OK sent through the upgraded stream), and AUTH when the
// server requires it. Then it starts the read loop and the write pump and returns. The
// dial and the handshake are each bounded by cfg.DialTimeout and by ctx.
func dial(ctx context.Context, addr string, cfg *Config, h connHandler) (*conn, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d := net.Dialer{Timeout: cfg.DialTimeout}
	nc, err := d.DialContext(ctx, protocol.Network(addr), addr)
	if err != nil {
		return nil, fmt.Errorf("nsq: dial %s: %w", addr, err)
	}
	c := &conn{
		addr:     addr,
		cfg:      cfg,
		logger:   logger.With("nsqd", addr),
		h:        h,
		nc:       nc,
		w:        nc,
		kick:     make(chan struct{}, 1),
		exit:     make(chan struct{}),
		pumpDone: make(chan struct{}),
		done:     make(chan struct{}),
	}
	c.source, _ = h.(commandSource)
	c.batch, _ = h.(batchHandler)
	deadline := time.Now().Add(cfg.DialTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = nc.SetDeadline(deadline)
	// A cancelled ctx must interrupt a handshake blocked on the socket; a deadline in the
	// past does that without closing the socket under the reader.
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	err = c.handshake(ctx)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		_ = nc.Close()
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("nsq: connect to %s: %w", addr, err)
	}
	_ = nc.SetDeadline(time.Time{})
	go c.writeLoop()
	go c.readLoop()
	return c, nil
}

// handshake runs everything between the dial and the loops; deadlines are already set.
func (c *conn) handshake(ctx context.Context) error {
	c.r = bufio.NewReaderSize(c.nc, connReadBuffer)
	identify, err := protocol.Identify(c.cfg.identifyRequest())
	if err != nil {
		return err
	}
	out := identify.AppendTo([]byte(protocol.MagicV2))
	if _, err := c.nc.Write(out); err != nil {
		return fmt.Errorf("send IDENTIFY: %w", err)
	}
	data, err := c.readResponse("IDENTIFY")
	if err != nil {
		return err
	}
	if string(data) == protocol.OK {
		// A server without feature negotiation grants nothing.
		if c.cfg.TLS != nil {
			return errors.New("server does not offer TLS, which Config.TLS requires")
		}
		return nil
	}
	if err := json.Unmarshal(data, &c.ident); err != nil {
		return fmt.Errorf("decode IDENTIFY response: %w", err)
	}
	c.logger.Debug("identified", "server_version", c.ident.Version, "tls", c.ident.TLSv1,
		"snappy", c.ident.Snappy, "deflate", c.ident.Deflate, "auth_required", c.ident.AuthRequired)

	stream := io.Writer(c.nc)
	if c.cfg.TLS != nil && !c.ident.TLSv1 {
		return errors.New("server does not offer TLS, which Config.TLS requires")
	}
	if c.ident.TLSv1 {
		// The TLS client reads through the buffered reader: bytes the server sent right
		// after its IDENTIFY response may already be in it.
		tc := tls.Client(&bufferedConn{Conn: c.nc, r: c.r}, c.tlsConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("TLS handshake: %w", err)
		}
		stream = tc
		c.w = tc
		c.tlsConn = tc
		c.r = bufio.NewReaderSize(tc, connReadBuffer)
		if err := c.expectOK("TLS upgrade"); err != nil {
			return err
		}
	}
	switch {
	case c.ident.Snappy:
		// The decompressor reads through the previous reader for the same reason.
		c.r = bufio.NewReaderSize(snappy.NewReader(c.r), connReadBuffer)
		sw := snappy.NewBufferedWriter(stream)
		c.w, c.flushW = sw, sw.Flush
		if err := c.expectOK("snappy upgrade"); err != nil {
			return err
		}
	case c.ident.Deflate:
		level := c.ident.DeflateLevel
		if level < 1 || level > 9 {
			level = c.cfg.DeflateLevel
		}
		c.r = bufio.NewReaderSize(flate.NewReader(c.r), connReadBuffer)
		fw, err := flate.NewWriter(stream, level)
		if err != nil {
			return fmt.Errorf("deflate writer: %w", err)
		}
		c.w, c.flushW = fw, fw.Flush
		if err := c.expectOK("deflate upgrade"); err != nil {
			return err
		}
	}
	if c.ident.AuthRequired {
		return c.auth()
	}
	return nil
}

// auth sends AUTH with the configured secret and reads the server's verdict.
func (c *conn) auth() error {
	if c.cfg.AuthSecret == "" {
		return errors.New("server requires AUTH and Config.AuthSecret is empty")
	}
	if _, err := protocol.Auth(c.cfg.AuthSecret).WriteTo(c.w); err != nil {
		return fmt.Errorf("send AUTH: %w", err)
	}
	if c.flushW != nil {
		if err := c.flushW(); err != nil {
			return fmt.Errorf("send AUTH: %w", err)
		}
	}
	data, err := c.readResponse("AUTH")
	if err != nil {
		return err
	}
	var resp struct {
		Identity        string `json:"identity"`
		IdentityURL     string `json:"identity_url"`
		PermissionCount int    `json:"permission_count"`
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return fmt.Errorf("decode AUTH response: %w", err)
	}
	c.logger.Info("authenticated", "identity", resp.Identity, "identity_url", resp.IdentityURL,
		"permission_count", resp.PermissionCount)
	return nil
}

// readResponse reads one frame during the handshake: a response's data, or an error frame
// as an [*Error].
func (c *conn) readResponse(what string) ([]byte, error) {
	ft, data, err := protocol.ReadFrame(c.r, c.cfg.MaxMsgSize)
	if err != nil {
		return nil, fmt.Errorf("read %s response: %w", what, err)
	}
	switch ft {
	case protocol.FrameTypeResponse:
		return data, nil
	case protocol.FrameTypeError:
		return nil, protocol.ParseError(data)
	}
	return nil, fmt.Errorf("read %s response: unexpected %v frame", what, ft)
}

func (c *conn) expectOK(what string) error {
	data, err := c.readResponse(what)
	if err != nil {
		return err
	}
	if string(data) != protocol.OK {
		return fmt.Errorf("%s: expected OK, got %q", what, data)
	}
	return nil
}

func (c *conn) tlsConfig() *tls.Config {
	tc := c.cfg.TLS.Clone()
	if tc.ServerName == "" {
		if host, _, err := net.SplitHostPort(c.addr); err == nil {
			tc.ServerName = host
		}
	}
	return tc
}

// bufferedConn is a net.Conn whose reads drain a bufio.Reader over it first.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// write buffers cmd to be sent by the next flush. It fails only once the connection is
// closing, in which case nothing was buffered.
func (c *conn) write(cmd *protocol.Command) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.wclosed {
		return c.closedErr()
	}
	c.pending = cmd.AppendTo(c.pending)
	return nil
}

// writeMessageCommand buffers name, a space, id and arg (if any, after another space) as
// one command line, like write but without building a Command: FIN and REQ are a
// consumer's hot path.
func (c *conn) writeMessageCommand(name string, id *MessageID, arg []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.wclosed {
		return c.closedErr()
	}
	c.pending = append(c.pending, name...)
	c.pending = append(c.pending, ' ')
	c.pending = append(c.pending, id[:]...)
	if arg != nil {
		c.pending = append(c.pending, ' ')
		c.pending = append(c.pending, arg...)
	}
	c.pending = append(c.pending, '\n')
	return nil
}

// closeWrite asks the write pump to send everything buffered and then half-close the
// connection, so that the server reads every command before it sees the end of the stream
// and closes its side, which ends the read loop. Closing the socket outright instead could
// make the server discard commands it had not read yet. Nothing written afterwards is
// sent.
func (c *conn) closeWrite() {
	c.mu.Lock()
	c.wclosed = true
	c.mu.Unlock()
	c.halfClose.Store(true)
	c.flush()
}

// flush asks the write pump to send everything buffered. It does not wait: write errors
// end the connection and reach the handler's onClose.
func (c *conn) flush() {
	select {
	case c.kick <- struct{}{}:
	default: // a kick is already pending; the pump will take this command with it
	}
}

// close ends the connection. It does not wait; onClose reports the end.
func (c *conn) close() { c.shutdown(errClosed) }

// shutdown records err as the reason, unless one is already recorded, and closes the
// socket, which ends the read loop.
func (c *conn) shutdown(err error) {
	c.closeOnce.Do(func() {
		c.err.Store(&err)
		c.mu.Lock()
		c.closing = true
		c.pending = nil
		c.mu.Unlock()
		close(c.exit)
		_ = c.nc.Close()
	})
}

func (c *conn) closedErr() error {
	if p := c.err.Load(); p != nil {
		return *p
	}
	return errClosed
}

// writeLoop is the write pump. It is started by dial and returns when the connection is
// shut down or a write fails (which shuts it down). Each round takes what the command
// source has and everything buffered since the previous round and sends it with one write
// and one flush.
func (c *conn) writeLoop() {
	defer close(c.pumpDone)
	var out []byte
	for {
		select {
		case <-c.exit:
			return
		case <-c.kick:
		}
		out = out[:0]
		more := false
		if c.source != nil {
			out, more = c.source.fill(c, out)
		}
		c.mu.Lock()
		out = append(out, c.pending...)
		c.pending = c.pending[:0]
		c.mu.Unlock()
		if more {
			c.flush()
		}
		if len(out) == 0 {
			if c.halfClose.Load() {
				c.shutdownWrite()
				return
			}
			continue
		}
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
		_, err := c.w.Write(out)
		if err == nil && c.flushW != nil {
			err = c.flushW()
		}
		if err != nil {
			c.shutdown(fmt.Errorf("nsq: write to %s: %w", c.addr, err))
			return
		}
		if cap(out) > maxRetainedWriteBuffer {
			out = nil
		}
		if c.halfClose.Load() {
			// Whatever closeWrite raced with is in pending still; one more round takes it.
			c.flush()
		}
	}
}

// shutdownWrite half-closes the connection for closeWrite: with TLS's close_notify when
// TLS is in use, else by shutting down the socket's sending side (compressors were flushed
// after their last write). A stream that cannot be half-closed is closed outright.
func (c *conn) shutdownWrite() {
	var err error
	switch {
	case c.tlsConn != nil:
		err = c.tlsConn.CloseWrite()
	default:
		tc, ok := c.nc.(*net.TCPConn)
		if !ok {
			c.close()
			return
		}
		err = tc.CloseWrite()
	}
	if err != nil {
		c.close()
	}
}

// readLoop is the read loop. It is started by dial and returns when reading fails, which
// includes the socket being closed by shutdown; it then waits for the write pump and
// reports the end to the handler. It answers heartbeats itself.
func (c *conn) readLoop() {
	defer close(c.done)
	err := c.readFrames()
	c.shutdown(err)
	<-c.pumpDone
	c.h.onClose(c, c.closedErr())
}

// frameBuffered reports whether the next frame is entirely in the read buffer, so that
// reading it cannot block.
func (c *conn) frameBuffered() bool {
	n := c.r.Buffered()
	if n < 4 {
		return false
	}
	size, _ := c.r.Peek(4)
	return uint64(n-4) >= uint64(binary.BigEndian.Uint32(size))
}

func (c *conn) readFrames() error {
	for {
		// Refreshing the deadline costs a clock read and a runtime timer update; it only
		// matters when the next read may block, that is when the next frame is not
		// buffered whole.
		if !c.frameBuffered() {
			if c.batch != nil {
				c.batch.onBatchEnd(c)
			}
			_ = c.nc.SetReadDeadline(time.Now().Add(c.cfg.ReadTimeout))
		}
		ft, data, err := protocol.ReadFrame(c.r, c.cfg.MaxMsgSize)
		if err != nil {
			return fmt.Errorf("nsq: read from %s: %w", c.addr, err)
		}
		switch ft {
		case protocol.FrameTypeResponse:
			if string(data) == protocol.Heartbeat {
				if err := c.write(protocol.Nop()); err != nil {
					c.mu.Lock()
					wclosed := c.wclosed
					c.mu.Unlock()
					if !wclosed {
						return err
					}
					continue // half-closed: the server is closing its side anyway
				}
				c.flush()
				continue
			}
			c.h.onResponse(c, data)
		case protocol.FrameTypeError:
			perr := protocol.ParseError(data)
			if perr.Fatal {
				c.logger.Debug("fatal error from server", "error", perr.Error())
			}
			c.h.onError(c, perr)
		case protocol.FrameTypeMessage:
			ts, attempts, id, body, err := protocol.DecodeMessage(data)
			if err != nil {
				return fmt.Errorf("nsq: read from %s: %w", c.addr, err)
			}
			c.h.onMessage(c, &Message{
				ID:          id,
				Body:        body,
				Timestamp:   time.Unix(0, ts),
				Attempts:    attempts,
				NSQDAddress: c.addr,
			})
		default:
			return fmt.Errorf("nsq: read from %s: unknown frame type %d", c.addr, ft)
		}
	}
}
