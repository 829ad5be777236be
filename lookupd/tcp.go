package lookupd

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/ternmq/tern/internal/connlimit"
	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/version"
)

const (
	// maxLineLength bounds a command line. The longest valid one, UNREGISTER with a topic
	// and a channel of 64 bytes each, is 141 bytes; the slack is for whitespace NSQ trims.
	maxLineLength = 1024
	// maxIdentifyBody bounds the IDENTIFY body. nsqd's is a few hundred bytes of JSON. NSQ
	// allocates whatever size the peer sends (reference §10 item 29).
	maxIdentifyBody = 64 * 1024
	// handshakeTimeout is how long a new connection has to send the protocol magic and its
	// first command (or --inactive-producer-timeout, if that is shorter), TLS handshake
	// included. NSQ waits forever (reference §10 item 28); nsqd sends the magic and IDENTIFY
	// as soon as it connects.
	handshakeTimeout = 10 * time.Second
	// writeTimeout bounds writing one answer: a peer that stops reading is dropped rather
	// than holding its goroutine.
	writeTimeout = 10 * time.Second
	// lingerTimeout and lingerMaxBytes bound how long and how much of a peer's further input
	// is read and dropped after an error was sent (see lingerClose).
	lingerTimeout  = time.Second
	lingerMaxBytes = 64 * 1024
)

// refuseV1 answers a TCP connection over --max-connections or --max-connections-per-ip
// the way V1 reports every error, as an ordinary answer: "E_TOO_MANY_CONNECTIONS too many
// connections (max 100)". It is written at once, before the peer's magic; nsqd reads it as
// the answer to its IDENTIFY, logs it and connects again later.
func refuseV1(w io.ReadWriter, r connlimit.Refusal) error {
	_, err := w.Write(protocol.AppendV1Response(nil, []byte(r.Text())))
	return err
}

// handleConn serves one TCP connection until it closes, an error ends it or shutdown closes
// it. It runs in the Lookupd's tracker, one goroutine per connection. The V1 protocol is
// strictly one answer per command, so the same goroutine writes each answer before reading
// the next command; a separate write pump would have nothing to batch.
func (l *Lookupd) handleConn(id uint64, conn net.Conn) {
	defer conn.Close()
	if !l.trackConn(id, conn) {
		return
	}
	defer l.untrackConn(id)
	l.counters.connections.Inc()
	logger := l.logger.With("remote_addr", conn.RemoteAddr().String())
	logger.Debug("tcp connection opened")

	// The magic and the first command (nsqd's IDENTIFY, sent as it connects) share this
	// deadline: a peer that trickles them in byte by byte is dropped this long after it
	// connected. ioLoop sets a deadline per command line from then on.
	_ = conn.SetReadDeadline(time.Now().Add(min(l.timeouts.handshake, l.opts.InactiveProducerTimeout)))
	var magic [4]byte
	if _, err := io.ReadFull(conn, magic[:]); err != nil {
		logger.Debug("failed to read protocol magic", "error", err)
		return
	}
	if string(magic[:]) != protocol.MagicV1 {
		l.logPeerProblem(logger, "bad protocol magic", "magic", string(magic[:]))
		// NSQ's answer is the bare code, with no description.
		c := &v1Conn{l: l, conn: conn, logger: logger}
		c.sendError(protocol.NewFatalError(protocol.ErrBadProtocol, ""))
		lingerClose(conn)
		return
	}

	c := &v1Conn{l: l, id: id, conn: conn, r: bufio.NewReader(conn), logger: logger}
	err := c.ioLoop()
	switch {
	case c.errorSent:
		// sendError has logged it.
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		logger.Debug("tcp connection closed")
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			l.logPeerProblem(logger, "closed a silent connection", "error", err)
			l.counters.timeouts.Inc()
		} else {
			l.logPeerProblem(logger, "tcp connection closed", "error", err)
		}
	}
	if c.peer != nil {
		removed, dropped := l.db.removePeer(c.peer.id)
		for _, r := range removed {
			logger.Info("unregistered on disconnect", "registration", r.String())
		}
		for _, r := range dropped {
			logger.Info("ephemeral registration removed", "registration", r.String())
		}
	}
	if c.errorSent {
		lingerClose(conn)
	}
}

// lingerClose closes a connection after an error answer so that the peer can read the
// answer. Closing a socket with unread input makes the kernel reset the connection, and a
// reset can make the peer's kernel drop the answer before the peer reads it; a peer that
// sent more than lookupd read (a long garbage line, say) would see only "connection reset".
// So the write side is shut first, then the peer's input is read and dropped until it closes
// too, for at most lingerTimeout and lingerMaxBytes.
func lingerClose(conn net.Conn) {
	defer conn.Close()
	cw, ok := conn.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	_ = conn.SetReadDeadline(time.Now().Add(lingerTimeout))
	_, _ = io.Copy(io.Discard, io.LimitReader(conn, lingerMaxBytes))
}

// v1Conn is the state of one V1 connection, owned by its handleConn goroutine.
type v1Conn struct {
	l      *Lookupd
	id     uint64
	conn   net.Conn
	r      *bufio.Reader
	logger *slog.Logger
	peer   *peer    // set by IDENTIFY
	params [][]byte // scratch for SplitParams
	// errorSent records that an error answer was sent, so the connection is closed with
	// lingerClose.
	errorSent bool
}

// ioLoop reads and answers commands until the peer goes away or a command fails. Every V1
// error is fatal, as in NSQ: it is sent as an ordinary answer and the connection is closed.
// A peer silent for --inactive-producer-timeout is dropped: it would no longer be listed
// anyway, and NSQ would hold its connection forever. The deadline is set before each
// command, not per read, so a whole command (line and body) must arrive within it, however
// slowly it trickles in; the first command keeps handleConn's deadline. The returned error
// says why the loop ended.
func (c *v1Conn) ioLoop() error {
	for first := true; ; first = false {
		if !first {
			_ = c.conn.SetReadDeadline(time.Now().Add(c.l.opts.InactiveProducerTimeout))
		}
		line, err := protocol.ReadLine(c.r, maxLineLength)
		if err != nil {
			var pe *protocol.Error
			if errors.As(err, &pe) {
				c.sendError(pe)
			}
			return err
		}
		c.params = protocol.SplitParams(bytes.TrimSpace(line), c.params[:0])
		resp, err := c.exec(c.params)
		if err != nil {
			c.sendError(err)
			return err
		}
		if err := c.send(resp); err != nil {
			return err
		}
	}
}

// exec runs one command and returns its answer.
func (c *v1Conn) exec(params [][]byte) ([]byte, error) {
	cmd := params[0]
	switch string(cmd) {
	case "PING":
		c.l.counters.command("PING")
		// A PING before IDENTIFY is allowed and does nothing.
		if c.peer != nil {
			c.peer.touch(time.Now())
		}
		return []byte(protocol.OK), nil
	case "IDENTIFY":
		c.l.counters.command("IDENTIFY")
		return c.identify()
	case "REGISTER":
		c.l.counters.command("REGISTER")
		return c.register(params[1:])
	case "UNREGISTER":
		c.l.counters.command("UNREGISTER")
		return c.unregister(params[1:])
	}
	return nil, protocol.NewFatalError(protocol.ErrInvalid, "invalid command %s", cmd)
}

// identifyRequest is the IDENTIFY body nsqd sends. The first four fields are required.
type identifyRequest struct {
	BroadcastAddress string `json:"broadcast_address"`
	TCPPort          int    `json:"tcp_port"`
	HTTPPort         int    `json:"http_port"`
	Version          string `json:"version"`
	Hostname         string `json:"hostname"`
	TopologyZone     string `json:"topology_zone"`
	TopologyRegion   string `json:"topology_region"`
}

// identifyResponse is lookupd's answer to IDENTIFY, NSQ's fields (in NSQ's order, which is
// alphabetical because NSQ marshals a map).
type identifyResponse struct {
	BroadcastAddress string `json:"broadcast_address"`
	Hostname         string `json:"hostname"`
	HTTPPort         int    `json:"http_port"`
	TCPPort          int    `json:"tcp_port"`
	Version          string `json:"version"`
}

// identify reads the IDENTIFY body, registers the peer under the client category and
// answers with lookupd's own identity.
func (c *v1Conn) identify() ([]byte, error) {
	if c.peer != nil {
		return nil, protocol.NewFatalError(protocol.ErrInvalid, "cannot IDENTIFY again")
	}
	// The size is checked before anything is allocated: a huge or negative one is an
	// E_BAD_BODY, never an allocation or a panic.
	body, err := protocol.ReadBody(c.r, nil, maxIdentifyBody, protocol.ErrBadBody, "IDENTIFY")
	if err != nil {
		return nil, err
	}
	var req identifyRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, &protocol.Error{Code: protocol.ErrBadBody, Desc: "IDENTIFY failed to decode JSON body", Fatal: true, Err: err}
	}
	if req.BroadcastAddress == "" || req.TCPPort == 0 || req.HTTPPort == 0 || req.Version == "" {
		return nil, protocol.NewFatalError(protocol.ErrBadBody, "IDENTIFY missing fields")
	}
	// NSQ accepts any port number; a negative or oversized one could only be advertised to
	// consumers as an address that does not exist.
	if !validPort(req.TCPPort) || !validPort(req.HTTPPort) {
		return nil, protocol.NewFatalError(protocol.ErrBadBody, "IDENTIFY invalid port")
	}
	info := peerInfo{
		RemoteAddress:    c.conn.RemoteAddr().String(),
		Hostname:         req.Hostname,
		BroadcastAddress: req.BroadcastAddress,
		TCPPort:          req.TCPPort,
		HTTPPort:         req.HTTPPort,
		Version:          req.Version,
		TopologyZone:     req.TopologyZone,
		TopologyRegion:   req.TopologyRegion,
	}
	c.peer = newPeer(c.id, info, time.Now())
	c.logger = c.logger.With("node", info.node())
	c.l.db.identify(c.peer)
	c.logger.Info("nsqd identified", "hostname", info.Hostname, "tcp_port", info.TCPPort,
		"http_port", info.HTTPPort, "version", info.Version)

	resp, err := json.Marshal(identifyResponse{
		BroadcastAddress: c.l.opts.BroadcastAddress,
		Hostname:         c.l.hostname,
		HTTPPort:         protocol.ListenPort(c.l.HTTPAddr()),
		TCPPort:          protocol.ListenPort(c.l.TCPAddr()),
		Version:          version.Binary,
	})
	if err != nil {
		// Cannot happen with these field types; NSQ answers OK in this case.
		return []byte(protocol.OK), nil
	}
	return resp, nil
}

func validPort(p int) bool { return p > 0 && p <= 65535 }

func (c *v1Conn) register(params [][]byte) ([]byte, error) {
	if c.peer == nil {
		return nil, protocol.NewFatalError(protocol.ErrInvalid, "client must IDENTIFY")
	}
	topic, channel, err := topicChannel("REGISTER", params)
	if err != nil {
		return nil, err
	}
	for _, r := range c.l.db.register(c.peer, topic, channel) {
		c.logger.Info("registered", "registration", r.String())
	}
	return []byte(protocol.OK), nil
}

func (c *v1Conn) unregister(params [][]byte) ([]byte, error) {
	if c.peer == nil {
		return nil, protocol.NewFatalError(protocol.ErrInvalid, "client must IDENTIFY")
	}
	topic, channel, err := topicChannel("UNREGISTER", params)
	if err != nil {
		return nil, err
	}
	removed, dropped := c.l.db.unregister(c.peer.id, topic, channel)
	for _, r := range removed {
		// NSQ warns when a topic's UNREGISTER takes channels with it: nsqd unregisters
		// channels first, so it should find none.
		if channel == "" && r.category == categoryChannel {
			c.logger.Warn("unexpected unregister", "registration", r.String())
			continue
		}
		c.logger.Info("unregistered", "registration", r.String())
	}
	for _, r := range dropped {
		c.logger.Info("ephemeral registration removed", "registration", r.String())
	}
	return []byte(protocol.OK), nil
}

// topicChannel validates REGISTER's and UNREGISTER's parameters: a topic and an optional
// channel (an empty one counts as absent, and parameters past the channel are ignored, as in
// NSQ).
func topicChannel(cmd string, params [][]byte) (topic, channel string, err error) {
	if len(params) == 0 {
		return "", "", protocol.NewFatalError(protocol.ErrInvalid, "%s insufficient number of params", cmd)
	}
	topic = string(params[0])
	if len(params) >= 2 {
		channel = string(params[1])
	}
	if !protocol.IsValidTopicName(topic) {
		return "", "", protocol.NewFatalError(protocol.ErrBadTopic, "%s topic name '%s' is not valid", cmd, topic)
	}
	if channel != "" && !protocol.IsValidChannelName(channel) {
		return "", "", protocol.NewFatalError(protocol.ErrBadChannel, "%s channel name '%s' is not valid", cmd, channel)
	}
	return topic, channel, nil
}

// sendError sends err's text as an answer, the way V1 reports errors, and counts it. Errors
// that are not wire errors (a read failure) have nobody to tell.
func (c *v1Conn) sendError(err error) {
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		return
	}
	c.errorSent = true
	c.l.counters.protocolError(pe.Code)
	args := []any{"error", pe.Error()}
	if pe.Err != nil {
		args = append(args, "cause", pe.Err)
	}
	c.l.logPeerProblem(c.logger, "protocol error", args...)
	_ = c.send(pe.AppendTo(nil))
}

// send writes one answer, [4-byte size][data].
func (c *v1Conn) send(data []byte) error {
	buf := protocol.AppendV1Response(make([]byte, 0, 4+len(data)), data)
	_ = c.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := c.conn.Write(buf)
	return err
}
