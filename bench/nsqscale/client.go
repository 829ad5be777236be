package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/ternmq/tern/internal/protocol"
)

// ioTimeout bounds each write, and each read of a handshake, so that a daemon that stops
// answering fails the run instead of hanging it.
const ioTimeout = 30 * time.Second

// client is one V2 connection on a raw socket: the tool's thousands of clients are cheaper
// this way than as client-library connections, each with its goroutines and buffers.
// Reads belong to one goroutine at a time (the handshake, then a read loop); writes may
// come from any goroutine and go through send.
type client struct {
	nc  net.Conn
	r   *bufio.Reader
	wmu sync.Mutex
	buf []byte // the wire form of the commands being sent, under wmu
}

// dial connects to addr from local (nil for any), sends the V2 magic and IDENTIFY with
// heartbeat_interval hb, and reads the answer.
func dial(ctx context.Context, addr string, local net.Addr, hb time.Duration, userAgent string) (*client, error) {
	d := net.Dialer{Timeout: ioTimeout, LocalAddr: local}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	// Frames are small here; a small buffer keeps 10,000 connections light on the tool's side.
	c := &client{nc: nc, r: bufio.NewReaderSize(nc, 512)}
	identify, err := protocol.Identify(map[string]any{
		"feature_negotiation": true,
		"heartbeat_interval":  hb.Milliseconds(),
		"user_agent":          userAgent,
	})
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	if err := c.writeRaw([]byte(protocol.MagicV2)); err != nil {
		_ = nc.Close()
		return nil, err
	}
	if err := c.send(identify); err != nil {
		_ = nc.Close()
		return nil, err
	}
	// The answer is JSON with feature negotiation; nothing in it matters here.
	if ft, data, err := c.readHandshake(); err != nil || ft != protocol.FrameTypeResponse {
		_ = nc.Close()
		if err == nil {
			err = fmt.Errorf("IDENTIFY: %s frame %q", ft, data)
		}
		return nil, err
	}
	return c, nil
}

// subscribe sends SUB, waits for OK and sends RDY rdy.
func (c *client) subscribe(topic, channel string, rdy int) error {
	if err := c.send(protocol.Subscribe(topic, channel)); err != nil {
		return err
	}
	ft, data, err := c.readHandshake()
	if err != nil {
		return fmt.Errorf("SUB %s %s: %w", topic, channel, err)
	}
	if ft != protocol.FrameTypeResponse || string(data) != protocol.OK {
		return fmt.Errorf("SUB %s %s: %s frame %q", topic, channel, ft, data)
	}
	return c.send(protocol.Ready(rdy))
}

// readHandshake reads the next frame that is not a heartbeat, within ioTimeout.
func (c *client) readHandshake() (protocol.FrameType, []byte, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	defer func() { _ = c.nc.SetReadDeadline(time.Time{}) }()
	return c.next()
}

// next reads the next frame that is not a heartbeat, answering heartbeats with NOP.
func (c *client) next() (protocol.FrameType, []byte, error) {
	for {
		ft, data, err := protocol.ReadFrame(c.r, 16<<20)
		if err != nil {
			return 0, nil, err
		}
		if ft == protocol.FrameTypeResponse && string(data) == protocol.Heartbeat {
			if err := c.send(protocol.Nop()); err != nil {
				return 0, nil, err
			}
			continue
		}
		return ft, data, nil
	}
}

// send writes commands in one write.
func (c *client) send(cmds ...*protocol.Command) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.buf = c.buf[:0]
	for _, cmd := range cmds {
		c.buf = cmd.AppendTo(c.buf)
	}
	return c.writeLocked(c.buf)
}

func (c *client) writeRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(b)
}

func (c *client) writeLocked(b []byte) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := c.nc.Write(b); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

func (c *client) close() error { return c.nc.Close() }

// stampBody writes a sequence number and the send time into the first 16 bytes of body.
func stampBody(body []byte, seq uint64, now time.Time) {
	binary.BigEndian.PutUint64(body, seq)
	binary.BigEndian.PutUint64(body[8:], uint64(now.UnixNano()))
}

// readStamp returns what stampBody wrote, or ok false for a body too short to hold it.
func readStamp(body []byte) (seq uint64, sent time.Time, ok bool) {
	if len(body) < 16 {
		return 0, time.Time{}, false
	}
	return binary.BigEndian.Uint64(body), time.Unix(0, int64(binary.BigEndian.Uint64(body[8:]))), true
}
