// Package wiretest is a raw client of nsqd's V2 protocol for tests: it writes exactly the
// bytes a test gives it and reports exactly the frames the daemon answers with, including to
// inputs no client library would send. nsqd's in-package and black-box tests, and anyone else
// who needs to see the wire, share it.
//
// Every method returns an error rather than failing a test, so that goroutines can drive a
// Conn; a test wraps the calls it makes on its own goroutine in a fatal check.
package wiretest

import (
	"bufio"
	"compress/flate"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/golang/snappy"

	"github.com/ternmq/tern/internal/protocol"
)

// DefaultTimeout bounds every read and write of a Conn unless its Timeout says otherwise, so
// that a daemon that stops answering fails the test instead of hanging it.
const DefaultTimeout = 5 * time.Second

// Conn is one V2 connection on a real socket. It is not safe for concurrent use.
type Conn struct {
	// Timeout bounds each read and write; 0 means DefaultTimeout.
	Timeout time.Duration
	// AnswerHeartbeats makes Next answer each heartbeat with NOP, for tests that outlive the
	// heartbeat interval. Off, a client that reads heartbeats stays silent, which is what a
	// test of silent clients needs.
	AnswerHeartbeats bool

	conn  net.Conn
	r     *bufio.Reader
	w     io.Writer
	flush func() error // flushes a compressor, once one was negotiated
}

// Message is a message frame as the client received it.
type Message struct {
	Timestamp int64 // publish time, Unix ns
	Attempts  uint16
	ID        protocol.MessageID
	Body      string
	At        time.Time // when the frame was read
}

// Dial connects to the nsqd at addr, host:port or a unix socket path, and sends the V2
// magic.
func Dial(addr string) (*Conn, error) { return DialMagic(addr, protocol.MagicV2) }

// DialMagic connects to addr and sends magic as the first four bytes.
func DialMagic(addr, magic string) (*Conn, error) {
	conn, err := net.DialTimeout(protocol.Network(addr), addr, DefaultTimeout)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := &Conn{conn: conn, r: bufio.NewReader(conn), w: conn}
	if err := c.Write([]byte(magic)); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// Close closes the socket.
func (c *Conn) Close() error { return c.conn.Close() }

// NetConn returns the socket, for tests that half-close it or look at its addresses.
func (c *Conn) NetConn() net.Conn { return c.conn }

func (c *Conn) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

// Write sends raw bytes, through the negotiated compression if any.
func (c *Conn) Write(b []byte) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.timeout()))
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

// Send writes commands in one write, as a client pipelining them would.
func (c *Conn) Send(cmds ...*protocol.Command) error { return c.Write(Wire(cmds...)) }

// Wire returns commands in wire form, concatenated.
func Wire(cmds ...*protocol.Command) []byte {
	var b []byte
	for _, cmd := range cmds {
		b = cmd.AppendTo(b)
	}
	return b
}

// IdentifyJSON is an IDENTIFY with a literal JSON body, so that a test controls every byte.
func IdentifyJSON(body string) *protocol.Command {
	return &protocol.Command{Name: []byte("IDENTIFY"), Body: []byte(body)}
}

// ReadFrame reads the next frame, heartbeats included, waiting at most timeout.
func (c *Conn) ReadFrame(timeout time.Duration) (protocol.FrameType, []byte, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	ft, data, err := protocol.ReadFrame(c.r, 16<<20)
	if err != nil {
		return 0, nil, fmt.Errorf("read frame: %w", err)
	}
	return ft, data, nil
}

// Next reads the next frame that is not a heartbeat, answering heartbeats with NOP when
// AnswerHeartbeats is set.
func (c *Conn) Next() (protocol.FrameType, []byte, error) {
	for {
		ft, data, err := c.ReadFrame(c.timeout())
		if err != nil {
			return 0, nil, err
		}
		if ft == protocol.FrameTypeResponse && string(data) == protocol.Heartbeat {
			if c.AnswerHeartbeats {
				if err := c.Send(protocol.Nop()); err != nil {
					return 0, nil, err
				}
			}
			continue
		}
		return ft, data, nil
	}
}

// ExpectResponse reads the next frame and checks that it is the response want.
func (c *Conn) ExpectResponse(want string) error {
	ft, data, err := c.Next()
	if err != nil {
		return fmt.Errorf("want response %q: %w", want, err)
	}
	if ft != protocol.FrameTypeResponse || string(data) != want {
		return fmt.Errorf("want response %q, got %s frame %q", want, ft, Trunc(data))
	}
	return nil
}

// ExpectError reads the next frame and checks that it is an error starting with prefix.
func (c *Conn) ExpectError(prefix string) error {
	ft, data, err := c.Next()
	if err != nil {
		return fmt.Errorf("want error %q: %w", prefix, err)
	}
	if ft != protocol.FrameTypeError || !strings.HasPrefix(string(data), prefix) {
		return fmt.Errorf("want error %q..., got %s frame %q", prefix, ft, Trunc(data))
	}
	return nil
}

// Expect checks the next frame against want: an error prefix when want starts with "E_",
// else an exact response.
func (c *Conn) Expect(want string) error {
	if strings.HasPrefix(want, "E_") {
		return c.ExpectError(want)
	}
	return c.ExpectResponse(want)
}

// ExpectClosed checks that the server closes the connection within the timeout and sends
// nothing but heartbeats, which it does not answer, before it does.
func (c *Conn) ExpectClosed() error {
	for {
		ft, data, err := c.ReadFrame(c.timeout())
		if err != nil {
			if IsClosed(err) {
				return nil
			}
			return fmt.Errorf("want connection closed: %w", err)
		}
		if ft == protocol.FrameTypeResponse && string(data) == protocol.Heartbeat {
			continue
		}
		return fmt.Errorf("want connection closed, got %s frame %q", ft, Trunc(data))
	}
}

// IsClosed reports whether a read error means the peer closed the connection (a reset
// counts: a server closing with unread input makes the kernel send one).
func IsClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// ExpectMessage reads the next frame and checks that it is a message.
func (c *Conn) ExpectMessage() (Message, error) {
	ft, data, err := c.Next()
	if err != nil {
		return Message{}, fmt.Errorf("want message: %w", err)
	}
	if ft != protocol.FrameTypeMessage {
		return Message{}, fmt.Errorf("want message, got %s frame %q", ft, Trunc(data))
	}
	ts, attempts, id, body, err := protocol.DecodeMessage(data)
	if err != nil {
		return Message{}, err
	}
	return Message{Timestamp: ts, Attempts: attempts, ID: id, Body: string(body), At: time.Now()}, nil
}

// Identify sends IDENTIFY with feature negotiation and the given extra JSON fields (`"a":1,
// "b":true`, without braces), reads the JSON response and performs the compression upgrade
// it announces.
func (c *Conn) Identify(fields string) (map[string]any, error) {
	body := `{"feature_negotiation":true}`
	if fields != "" {
		body = `{"feature_negotiation":true,` + fields + `}`
	}
	if err := c.Send(IdentifyJSON(body)); err != nil {
		return nil, err
	}
	ft, data, err := c.Next()
	if err != nil {
		return nil, fmt.Errorf("IDENTIFY response: %w", err)
	}
	if ft != protocol.FrameTypeResponse {
		return nil, fmt.Errorf("IDENTIFY: got %s frame %q", ft, Trunc(data))
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
	if err := c.ExpectResponse(protocol.OK); err != nil {
		return nil, fmt.Errorf("after compression upgrade: %w", err)
	}
	return resp, nil
}

// Subscribe sends SUB, waits for its OK, and then sends RDY rdy when it is positive.
func (c *Conn) Subscribe(topic, channel string, rdy int) error {
	if err := c.Send(protocol.Subscribe(topic, channel)); err != nil {
		return err
	}
	if err := c.ExpectResponse(protocol.OK); err != nil {
		return fmt.Errorf("SUB %s %s: %w", topic, channel, err)
	}
	if rdy > 0 {
		return c.Send(protocol.Ready(rdy))
	}
	return nil
}

// Publish sends PUB and waits for its OK.
func (c *Conn) Publish(topic, body string) error {
	if err := c.Send(protocol.Publish(topic, []byte(body))); err != nil {
		return err
	}
	return c.ExpectResponse(protocol.OK)
}

// Usable checks that the connection still serves commands: a NOP, then a PUB to the topic
// "after" answered OK.
func (c *Conn) Usable() error {
	if err := c.Send(protocol.Nop(), protocol.Publish("after", []byte("still here"))); err != nil {
		return err
	}
	if err := c.ExpectResponse(protocol.OK); err != nil {
		return fmt.Errorf("connection no longer usable: %w", err)
	}
	return nil
}

// Trunc shortens b for an error message.
func Trunc(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}
