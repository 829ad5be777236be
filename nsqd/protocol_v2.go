package nsqd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"time"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/version"
)

// maxLineLength bounds a command line: the longest legal one is a DPUB or REQ with a 64-byte
// name and numbers, so anything much longer is garbage.
const maxLineLength = 1024

var (
	okBytes        = []byte("OK")
	heartbeatBytes = []byte("_heartbeat_")
	closeWaitBytes = []byte("CLOSE_WAIT")
)

// protocolV2 serves NSQ's "  V2" protocol for one daemon.
type protocolV2 struct {
	n *NSQD
}

// ioLoop runs a connection after the magic: it starts the pump, then reads and executes
// commands until the client leaves, a fatal error, or shutdown. It owns the connection's
// cleanup.
func (p *protocolV2) ioLoop(ctx context.Context, c *client) {
	pumpDone := make(chan struct{})
	go func() {
		defer close(pumpDone)
		p.pump(c)
	}()
	defer func() {
		c.close()
		<-pumpDone
		if sub := c.sub.Load(); sub != nil {
			c.topic.clientLeft(c.channel, sub)
		}
		p.n.removeClient(c)
	}()

	params := make([][]byte, 0, 8)
	var (
		// The first command keeps the deadline handleConn set before the magic: a client
		// that trickles the magic and its first command in byte by byte is dropped
		// the client timeout after it connected, not that long after each part.
		deadlineSet = c.connTime
		cmds        uint64
	)
	for {
		// Refreshing the deadline, or even reading the clock, for every pipelined command (a
		// stream of FINs) was a measurable share of CPU. Refresh it when the next read may
		// block on the socket; a client that keeps the buffer full is checked every 256
		// commands and refreshed once half the deadline is used. The deadline is set before
		// a command line is read, never while it is: the whole command must arrive within
		// it, however slowly it trickles in.
		cmds++
		switch hb := c.heartbeatInterval(); {
		case cmds == 1:
			// handleConn's deadline still holds.
		case hb > 0:
			if c.r.Buffered() == 0 || cmds%256 == 0 {
				if now := time.Now(); c.r.Buffered() == 0 || now.Sub(deadlineSet) > hb {
					_ = c.conn.SetReadDeadline(now.Add(2 * hb))
					deadlineSet = now
				}
			}
		default:
			if !p.awaitCommand(c, &deadlineSet, cmds) {
				return
			}
		}
		line, err := protocol.ReadLine(c.r, maxLineLength)
		if err != nil {
			var perr *protocol.Error
			if errors.As(err, &perr) {
				if c.sendFrame(protocol.FrameTypeError, []byte(perr.Error())) == nil {
					c.lingerAfterFatal()
				}
			} else if !isClosedConnError(err) {
				p.n.logger.Debug("client read failed", "client", c.remote, "error", err)
			}
			return
		}
		params = protocol.SplitParams(line, params[:0])
		resp, err := p.exec(ctx, c, params)
		if err != nil {
			var perr *protocol.Error
			if !errors.As(err, &perr) {
				perr = protocol.NewFatalError(protocol.ErrInvalid, "%s", err)
			}
			if werr := c.sendFrame(protocol.FrameTypeError, []byte(perr.Error())); werr != nil {
				return
			}
			if perr.Fatal {
				p.n.logger.Debug("fatal client error", "client", c.remote, "error", perr.Error())
				c.lingerAfterFatal()
				return
			}
			continue
		}
		if resp != nil {
			// A client that pipelines commands (a producer with many PUBs in flight) gets
			// its answers in one write: flush only when no further command is already
			// buffered, which is also before the read loop can block.
			if err := c.writeFrame(protocol.FrameTypeResponse, resp, c.r.Buffered() == 0); err != nil {
				return
			}
		} else if c.r.Buffered() == 0 {
			// Answers held back for pipelined commands must not wait for the next one.
			c.wmu.Lock()
			var err error
			if c.heldAns {
				err = c.flushLocked()
			}
			c.wmu.Unlock()
			if err != nil {
				return
			}
		}
	}
}

// awaitCommand sets the read deadline of a client that turned heartbeats off (IDENTIFY
// heartbeat_interval -1). Such a client may stay silent for as long as it likes, as in NSQ,
// so the wait for a command has no deadline; but once its first byte is in, the rest of the
// command must follow within the client timeout, or a client could hold its connection and
// goroutine by trickling half a command forever. It reports false when the connection ended
// while waiting. deadlineSet is when the deadline in force was set, zero for none.
func (p *protocolV2) awaitCommand(c *client, deadlineSet *time.Time, cmds uint64) bool {
	timeout := p.n.getOpts().ClientTimeout
	if c.r.Buffered() > 0 {
		// Pipelined commands share the deadline; a client that keeps the buffer full gets
		// a fresh one every 256 commands once half of it is used, as with heartbeats.
		if cmds%256 == 0 {
			if now := time.Now(); now.Sub(*deadlineSet) > timeout/2 {
				_ = c.conn.SetReadDeadline(now.Add(timeout))
				*deadlineSet = now
			}
		}
		return true
	}
	if !deadlineSet.IsZero() {
		_ = c.conn.SetReadDeadline(time.Time{})
		*deadlineSet = time.Time{}
	}
	if _, err := c.r.Peek(1); err != nil {
		if !isClosedConnError(err) {
			p.n.logger.Debug("client read failed", "client", c.remote, "error", err)
		}
		return false
	}
	now := time.Now()
	_ = c.conn.SetReadDeadline(now.Add(timeout))
	*deadlineSet = now
	return true
}

func isClosedConnError(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF)
}

// exec runs one command and returns the response frame data, if any.
func (p *protocolV2) exec(ctx context.Context, c *client, params [][]byte) ([]byte, error) {
	if len(params) == 0 {
		return nil, protocol.NewFatalError(protocol.ErrInvalid, "invalid command ")
	}
	cmd := params[0]
	if !bytes.Equal(cmd, []byte("IDENTIFY")) && c.tlsState.Load() == nil && p.n.getOpts().tlsRequired() != "false" {
		return nil, protocol.NewFatalError(protocol.ErrInvalid, "cannot %s in current state (TLS required)", cmd)
	}
	switch {
	case bytes.Equal(cmd, []byte("FIN")):
		return p.fin(c, params)
	case bytes.Equal(cmd, []byte("RDY")):
		return p.rdy(c, params)
	case bytes.Equal(cmd, []byte("REQ")):
		return p.req(c, params)
	case bytes.Equal(cmd, []byte("PUB")):
		return p.pub(ctx, c, params)
	case bytes.Equal(cmd, []byte("MPUB")):
		return p.mpub(ctx, c, params)
	case bytes.Equal(cmd, []byte("DPUB")):
		return p.dpub(ctx, c, params)
	case bytes.Equal(cmd, []byte("NOP")):
		return nil, nil
	case bytes.Equal(cmd, []byte("TOUCH")):
		return p.touch(c, params)
	case bytes.Equal(cmd, []byte("SUB")):
		return p.sub(ctx, c, params)
	case bytes.Equal(cmd, []byte("CLS")):
		return p.cls(c)
	case bytes.Equal(cmd, []byte("IDENTIFY")):
		return p.identify(c, params)
	case bytes.Equal(cmd, []byte("AUTH")):
		return p.auth(ctx, c, params)
	}
	return nil, protocol.NewFatalError(protocol.ErrInvalid, "invalid command %s", cmd)
}

// identify negotiates the connection's settings. As in NSQ it may be sent more than once
// before SUB, each time replacing the settings; what cannot be undone, a compressed stream,
// cannot be negotiated a second time.
func (p *protocolV2) identify(c *client, params [][]byte) ([]byte, error) {
	if c.state.Load() != stateInit {
		return nil, protocol.NewFatalError(protocol.ErrInvalid, "cannot IDENTIFY in current state")
	}
	opts := p.n.getOpts()
	body, err := protocol.ReadBody(c.r, nil, opts.MaxBodySize, protocol.ErrBadBody, "IDENTIFY")
	if err != nil {
		return nil, err
	}
	var req protocol.IdentifyRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, protocol.NewFatalError(protocol.ErrBadBody, "IDENTIFY failed to decode JSON body")
	}

	heartbeat := c.heartbeatInterval()
	switch {
	case req.HeartbeatInterval == -1:
		heartbeat = 0
	case req.HeartbeatInterval == 0:
	case req.HeartbeatInterval >= 1000 && time.Duration(req.HeartbeatInterval)*time.Millisecond <= opts.MaxHeartbeatInterval:
		heartbeat = time.Duration(req.HeartbeatInterval) * time.Millisecond
	default:
		return nil, protocol.NewFatalError(protocol.ErrBadBody, "IDENTIFY heartbeat interval (%d) is invalid", req.HeartbeatInterval)
	}
	bufSize := c.outputBufferSize
	switch {
	case req.OutputBufferSize == -1:
		bufSize = 0
	case req.OutputBufferSize == 0:
	case req.OutputBufferSize >= 64 && int64(req.OutputBufferSize) <= opts.MaxOutputBufferSize:
		bufSize = req.OutputBufferSize
	default:
		return nil, protocol.NewFatalError(protocol.ErrBadBody, "IDENTIFY output buffer size (%d) is invalid", req.OutputBufferSize)
	}
	bufTimeout := c.outputBufferTimeout
	obt := time.Duration(req.OutputBufferTimeout) * time.Millisecond
	switch {
	case req.OutputBufferTimeout == -1:
		bufTimeout = 0
	case req.OutputBufferTimeout == 0:
	case obt >= opts.MinOutputBufferTimeout && obt <= opts.MaxOutputBufferTimeout:
		bufTimeout = obt
	default:
		return nil, protocol.NewFatalError(protocol.ErrBadBody, "IDENTIFY output buffer timeout (%d) is invalid", req.OutputBufferTimeout)
	}
	if req.SampleRate < 0 || req.SampleRate > 99 {
		return nil, protocol.NewFatalError(protocol.ErrBadBody, "IDENTIFY sample rate (%d) is invalid", req.SampleRate)
	}
	msgTimeout := c.msgTimeout
	mt := time.Duration(req.MsgTimeout) * time.Millisecond
	switch {
	case req.MsgTimeout == 0:
	case mt >= time.Second && mt <= opts.MaxMsgTimeout:
		msgTimeout = mt
	default:
		return nil, protocol.NewFatalError(protocol.ErrBadBody, "IDENTIFY msg timeout (%d) is invalid", req.MsgTimeout)
	}

	// Compression is negotiated only with feature negotiation, and the level is reported
	// as NSQ does: 6 unless the client asked for deflate with a level, never above the
	// server's maximum.
	deflate := req.FeatureNegotiation && req.Deflate && opts.DeflateEnabled
	snappyOn := req.FeatureNegotiation && req.Snappy && opts.SnappyEnabled
	deflateLevel := 6
	if deflate && req.DeflateLevel > 0 {
		deflateLevel = req.DeflateLevel
	}
	deflateLevel = min(deflateLevel, opts.MaxDeflateLevel)
	if deflate && snappyOn {
		return nil, protocol.NewFatalError(protocol.ErrIdentifyFailed, "cannot enable both deflate and snappy compression")
	}
	// TLS comes first, as in NSQ: a session under a compressor, never the reverse.
	tlsv1 := req.FeatureNegotiation && req.TLSv1 && p.n.tls != nil
	if tlsv1 && (c.tlsState.Load() != nil || c.compressed) {
		return nil, protocol.NewFatalError(protocol.ErrIdentifyFailed, "%s", errTLSAgain)
	}
	if (deflate || snappyOn) && c.compressed {
		// NSQ would wrap the compressed stream in a second compressor, which no client
		// reads; the connection cannot continue either way.
		return nil, protocol.NewFatalError(protocol.ErrIdentifyFailed, "IDENTIFY cannot negotiate compression again")
	}

	old := c.ident.Load()
	c.ident.Store(&identity{
		clientID:   req.ClientID,
		hostname:   req.Hostname,
		userAgent:  req.UserAgent,
		sampleRate: req.SampleRate,
		deflate:    old.deflate || deflate,
		snappy:     old.snappy || snappyOn,
	})
	c.heartbeatNs.Store(int64(heartbeat))
	c.outputBufferSize = bufSize
	c.outputBufferTimeout = bufTimeout
	c.msgTimeout = msgTimeout
	c.sampleRate = req.SampleRate
	if err := c.resizeOutput(); err != nil {
		return nil, err
	}
	select {
	case c.settingsCh <- struct{}{}:
	default:
	}

	if !req.FeatureNegotiation {
		return okBytes, nil
	}
	resp, err := json.Marshal(protocol.IdentifyResponse{
		MaxRdyCount:         opts.MaxRdyCount,
		Version:             version.Binary,
		MaxMsgTimeout:       opts.MaxMsgTimeout.Milliseconds(),
		MsgTimeout:          msgTimeout.Milliseconds(),
		TLSv1:               tlsv1,
		Deflate:             deflate,
		DeflateLevel:        deflateLevel,
		MaxDeflateLevel:     opts.MaxDeflateLevel,
		Snappy:              snappyOn,
		SampleRate:          req.SampleRate,
		AuthRequired:        p.n.auth != nil,
		OutputBufferSize:    bufSize,
		OutputBufferTimeout: bufTimeout.Milliseconds(),
	})
	if err != nil {
		return nil, fmt.Errorf("encode IDENTIFY response: %w", err)
	}
	if err := c.sendFrame(protocol.FrameTypeResponse, resp); err != nil {
		return nil, err
	}
	if tlsv1 {
		if err := c.upgradeTLS(p.n.tls.Server()); err != nil {
			p.n.logger.Info("TLS handshake failed", "client", c.remote, "error", err)
			return nil, protocol.NewFatalError(protocol.ErrIdentifyFailed, "IDENTIFY failed %s", err)
		}
		if err := c.sendFrame(protocol.FrameTypeResponse, okBytes); err != nil {
			return nil, err
		}
	}
	switch {
	case snappyOn:
		c.compressed = true
		c.upgradeSnappy()
		return okBytes, nil
	case deflate:
		c.compressed = true
		if err := c.upgradeDeflate(deflateLevel); err != nil {
			return nil, protocol.NewFatalError(protocol.ErrIdentifyFailed, "IDENTIFY failed %s", err)
		}
		return okBytes, nil
	}
	return nil, nil
}

// auth answers AUTH as NSQ does: the secret is checked with the auth servers, and the
// client's grants are kept for its later commands. A failure to reach them is E_AUTH_FAILED
// without the reason, which is logged: it is none of an untrusted client's business.
func (p *protocolV2) auth(ctx context.Context, c *client, params [][]byte) ([]byte, error) {
	if c.state.Load() != stateInit {
		return nil, protocol.NewFatalError(protocol.ErrInvalid, "cannot AUTH in current state")
	}
	if len(params) != 1 {
		return nil, protocol.NewFatalError(protocol.ErrInvalid, "AUTH invalid number of parameters")
	}
	body, err := protocol.ReadBody(c.r, nil, p.n.getOpts().MaxBodySize, protocol.ErrBadBody, "AUTH")
	if err != nil {
		return nil, err
	}
	if s := c.auth.Load(); s != nil && len(s.grants) > 0 {
		return nil, protocol.NewFatalError(protocol.ErrInvalid, "AUTH already set")
	}
	if p.n.auth == nil {
		return nil, protocol.NewFatalError(protocol.ErrAuthDisabled, "AUTH disabled")
	}
	c.authSecret = string(body)
	s, err := p.queryAuth(ctx, c)
	if err != nil {
		p.n.logger.Warn("AUTH failed", "client", c.remote, "error", err)
		return nil, protocol.NewFatalError(protocol.ErrAuthFailed, "AUTH failed")
	}
	c.auth.Store(s)
	if len(s.grants) == 0 {
		return nil, protocol.NewFatalError(protocol.ErrUnauthorized, "AUTH no authorizations found")
	}
	resp, err := json.Marshal(struct {
		Identity        string `json:"identity"`
		IdentityURL     string `json:"identity_url"`
		PermissionCount int    `json:"permission_count"`
	}{s.identity, s.identityURL, len(s.grants)})
	if err != nil {
		return nil, protocol.NewFatalError(protocol.ErrAuthError, "AUTH error %s", err)
	}
	return resp, nil
}

// queryAuth asks the auth servers about c's secret, with what nsqd knows of c: its address,
// whether it uses TLS, and its certificate's common name.
func (p *protocolV2) queryAuth(ctx context.Context, c *client) (*authState, error) {
	r := authRequest{secret: c.authSecret}
	if a, ok := c.conn.RemoteAddr().(*net.TCPAddr); ok {
		r.remoteIP = a.IP.String()
	}
	if ts := c.tlsState.Load(); ts != nil {
		r.tls = true
		if len(ts.PeerCertificates) > 0 {
			r.commonName = ts.PeerCertificates[0].Subject.CommonName
		}
	}
	return p.n.auth.query(ctx, r, rand.IntN(len(p.n.auth.addrs)))
}

// checkAuth lets cmd on topic (and channel, for SUB) through when auth is off, or when the
// client's grants allow it, asking the auth servers again once they have expired, as NSQ
// does. Every refusal is fatal, with NSQ's codes and texts.
func (p *protocolV2) checkAuth(ctx context.Context, c *client, cmd, topic, channel string) error {
	if p.n.auth == nil {
		return nil
	}
	s := c.auth.Load()
	if s == nil || len(s.grants) == 0 {
		return protocol.NewFatalError(protocol.ErrAuthFirst, "AUTH required before %s", cmd)
	}
	if time.Now().After(s.expires) {
		fresh, err := p.queryAuth(ctx, c)
		if err != nil {
			p.n.logger.Warn("AUTH failed", "client", c.remote, "error", err)
			return protocol.NewFatalError(protocol.ErrAuthFailed, "AUTH failed")
		}
		c.auth.Store(fresh)
		s = fresh
	}
	if !s.allows(topic, channel) {
		return protocol.NewFatalError(protocol.ErrUnauthorized, "AUTH failed for %s on %q %q", cmd, topic, channel)
	}
	return nil
}

func (p *protocolV2) sub(ctx context.Context, c *client, params [][]byte) ([]byte, error) {
	if c.state.Load() != stateInit {
		return nil, protocol.NewFatalError(protocol.ErrInvalid, "cannot SUB in current state")
	}
	if c.heartbeatInterval() <= 0 {
		return nil, protocol.NewFatalError(protocol.ErrInvalid, "cannot SUB with heartbeats disabled")
	}
	if len(params) < 3 {
		return nil, protocol.NewFatalError(protocol.ErrInvalid, "SUB insufficient number of parameters")
	}
	topicName, channelName := string(params[1]), string(params[2])
	if !protocol.IsValidTopicName(topicName) {
		return nil, protocol.NewFatalError(protocol.ErrBadTopic, "SUB topic name %q is not valid", topicName)
	}
	if !protocol.IsValidChannelName(channelName) {
		return nil, protocol.NewFatalError(protocol.ErrBadChannel, "SUB channel name %q is not valid", channelName)
	}
	if err := p.checkAuth(ctx, c, "SUB", topicName, channelName); err != nil {
		return nil, err
	}
	// An ephemeral topic or channel may be deleted between lookup and subscription when its
	// last client leaves at that moment; one retry gets a fresh one.
	var err error
	for range 2 {
		var t *Topic
		var ch *Channel
		if t, err = p.n.getOrCreateTopic(topicName); err != nil {
			continue
		}
		if ch, err = t.getOrCreateChannel(channelName); err != nil {
			continue
		}
		sub, err := ch.subscribe(c, c.msgTimeout, c.sampleRate, p.n.getOpts().MaxChannelConsumers)
		if err != nil {
			if errors.Is(err, errTooManyConsumers) {
				return nil, protocol.NewFatalError(protocol.ErrSubFailed, "SUB failed %s", err)
			}
			continue
		}
		c.topic, c.channel = t, ch
		c.sub.Store(sub)
		c.state.Store(stateSubscribed)
		c.wake()
		return okBytes, nil
	}
	return nil, protocol.NewFatalError(protocol.ErrSubFailed, "SUB failed %s", err)
}

func (p *protocolV2) rdy(c *client, params [][]byte) ([]byte, error) {
	state := c.state.Load()
	if state == stateClosing {
		return nil, nil // NSQ ignores RDY once CLS was sent
	}
	if state != stateSubscribed {
		return nil, protocol.NewFatalError(protocol.ErrInvalid, "cannot RDY in current state")
	}
	count := int64(1)
	if len(params) > 1 {
		n, err := protocol.ParseInt(params[1])
		if err != nil {
			return nil, protocol.NewFatalError(protocol.ErrInvalid, "RDY could not parse count %s", params[1])
		}
		count = n
	}
	if maxRdy := p.n.getOpts().MaxRdyCount; count < 0 || count > maxRdy {
		return nil, protocol.NewFatalError(protocol.ErrInvalid, "RDY count %d out of range 0-%d", count, maxRdy)
	}
	if old := c.rdy.Swap(count); count < old {
		// What the channel assigned beyond the new RDY goes to other subscribers.
		c.channel.rdyChanged(c.sub.Load())
	}
	c.wake()
	return nil, nil
}

func (p *protocolV2) parseID(c *client, cmd string, params [][]byte, n int) (uint64, error) {
	state := c.state.Load()
	if state != stateSubscribed && state != stateClosing {
		return 0, protocol.NewFatalError(protocol.ErrInvalid, "cannot %s in current state", cmd)
	}
	if len(params) < n {
		return 0, protocol.NewFatalError(protocol.ErrInvalid, "%s insufficient number of params", cmd)
	}
	if len(params[1]) != protocol.MsgIDLength {
		return 0, protocol.NewFatalError(protocol.ErrInvalid, "invalid message ID")
	}
	id, ok := protocol.ParseMessageID(params[1])
	if !ok {
		// Sixteen bytes that are not hex can never be in flight.
		return 0, errNotInFlight
	}
	return id, nil
}

func (p *protocolV2) fin(c *client, params [][]byte) ([]byte, error) {
	id, err := p.parseID(c, "FIN", params, 2)
	if err == nil {
		err = c.channel.finish(c.sub.Load(), id)
	}
	if err != nil {
		if isDeliveryError(err) {
			return nil, protocol.NewClientError(protocol.ErrFinFailed, "FIN %s failed %s", params[1], err)
		}
		return nil, err
	}
	c.finishCount.Add(1)
	c.wake()
	return nil, nil
}

func (p *protocolV2) req(c *client, params [][]byte) ([]byte, error) {
	id, err := p.parseID(c, "REQ", params, 3)
	if err != nil && !isDeliveryError(err) {
		return nil, err
	}
	ms, perr := protocol.ParseInt(params[2])
	if perr != nil {
		return nil, protocol.NewFatalError(protocol.ErrInvalid, "REQ could not parse timeout %s", params[2])
	}
	// NSQ clamps silently. Compare in milliseconds: converting first overflows int64 for
	// delays past 292 years and would requeue at once.
	delay := p.n.getOpts().MaxReqTimeout
	if ms < delay.Milliseconds() {
		delay = time.Duration(ms) * time.Millisecond
	}
	if err == nil {
		err = c.channel.requeue(c.sub.Load(), id, int64(delay), time.Now().UnixNano())
	}
	if err != nil {
		return nil, protocol.NewClientError(protocol.ErrReqFailed, "REQ %s failed %s", params[1], err)
	}
	c.requeueCount.Add(1)
	c.wake()
	return nil, nil
}

func (p *protocolV2) touch(c *client, params [][]byte) ([]byte, error) {
	id, err := p.parseID(c, "TOUCH", params, 2)
	if err == nil {
		err = c.channel.touch(c.sub.Load(), id, time.Now().UnixNano(), int64(p.n.getOpts().MaxMsgTimeout))
	}
	if err != nil {
		if isDeliveryError(err) {
			return nil, protocol.NewClientError(protocol.ErrTouchFailed, "TOUCH %s failed %s", params[1], err)
		}
		return nil, err
	}
	return nil, nil
}

func (p *protocolV2) cls(c *client) ([]byte, error) {
	if c.state.Load() != stateSubscribed {
		return nil, protocol.NewFatalError(protocol.ErrInvalid, "cannot CLS in current state")
	}
	c.state.Store(stateClosing)
	// Closing, the client takes nothing more: what it was assigned goes to the others.
	c.channel.rdyChanged(c.sub.Load())
	c.wake()
	return closeWaitBytes, nil
}

// publishTopic validates the topic parameter of a publish command and copies it out of the
// read buffer: params alias that buffer, which reading the body overwrites.
func (p *protocolV2) publishTopic(cmd string, params [][]byte, n int) (string, error) {
	if len(params) < n {
		return "", protocol.NewFatalError(protocol.ErrInvalid, "%s insufficient number of parameters", cmd)
	}
	name := string(params[1])
	if !protocol.IsValidTopicName(name) {
		return "", protocol.NewFatalError(protocol.ErrBadTopic, "%s topic name %q is not valid", cmd, name)
	}
	return name, nil
}

// publish appends bodies to the named topic, creating it if needed.
func (p *protocolV2) publish(c *client, name string, bodies [][]byte, deferNs int64) error {
	t, err := p.n.getOrCreateTopic(name)
	if err != nil {
		return err
	}
	if err := t.publish(bodies, deferNs); err != nil {
		return err
	}
	c.countPub(name, len(bodies))
	return nil
}

// pubFailed is NSQ's answer to a failed publish, fatal as NSQ's; a publish refused by a
// topic's quota (a Tern extension) is not fatal: the connection is fine and the client may
// publish again when the topic has room.
func pubFailed(code, cmd string, err error) error {
	if _, ok := isQuotaError(err); ok {
		return protocol.NewClientError(code, "%s failed %s", cmd, err)
	}
	return protocol.NewFatalError(code, "%s failed %s", cmd, err)
}

func (p *protocolV2) pub(ctx context.Context, c *client, params [][]byte) ([]byte, error) {
	name, err := p.publishTopic("PUB", params, 2)
	if err != nil {
		return nil, err
	}
	body, err := protocol.ReadBody(c.r, nil, p.n.getOpts().MaxMsgSize, protocol.ErrBadMessage, "PUB")
	if err != nil {
		return nil, err
	}
	if err := p.checkAuth(ctx, c, "PUB", name, ""); err != nil {
		return nil, err
	}
	if err := p.publish(c, name, [][]byte{body}, 0); err != nil {
		return nil, pubFailed(protocol.ErrPubFailed, "PUB", err)
	}
	return okBytes, nil
}

func (p *protocolV2) mpub(ctx context.Context, c *client, params [][]byte) ([]byte, error) {
	name, err := p.publishTopic("MPUB", params, 2)
	if err != nil {
		return nil, err
	}
	opts := p.n.getOpts()
	bodies, err := protocol.ParseMPUB(c.r, opts.MaxMsgSize, opts.MaxBodySize)
	if err != nil {
		return nil, err
	}
	if err := p.checkAuth(ctx, c, "MPUB", name, ""); err != nil {
		return nil, err
	}
	if err := p.publish(c, name, bodies, 0); err != nil {
		return nil, pubFailed(protocol.ErrMPubFailed, "MPUB", err)
	}
	return okBytes, nil
}

func (p *protocolV2) dpub(ctx context.Context, c *client, params [][]byte) ([]byte, error) {
	name, err := p.publishTopic("DPUB", params, 3)
	if err != nil {
		return nil, err
	}
	opts := p.n.getOpts()
	ms, err := protocol.ParseInt(params[2])
	if err != nil {
		return nil, protocol.NewFatalError(protocol.ErrInvalid, "DPUB could not parse timeout %s", params[2])
	}
	if maxMs := opts.MaxReqTimeout.Milliseconds(); ms < 0 || ms > maxMs {
		return nil, protocol.NewFatalError(protocol.ErrInvalid, "DPUB timeout %d out of range 0-%d", ms, maxMs)
	}
	body, err := protocol.ReadBody(c.r, nil, opts.MaxMsgSize, protocol.ErrBadMessage, "DPUB")
	if err != nil {
		return nil, err
	}
	if err := p.checkAuth(ctx, c, "DPUB", name, ""); err != nil {
		return nil, err
	}
	if err := p.publish(c, name, [][]byte{body}, int64(time.Duration(ms)*time.Millisecond)); err != nil {
		return nil, pubFailed(protocol.ErrDPubFailed, "DPUB", err)
	}
	return okBytes, nil
}

// pump delivers messages to a subscribed client while its in-flight count is below its RDY,
// sends heartbeats and flushes buffered output. It is the connection's second goroutine,
// started by ioLoop, and it exits when the client is closed.
//
// Messages are flushed as soon as the pump has nothing more to send, or the client can take
// no more: output_buffer_size and output_buffer_timeout only bound how long a busy stream is
// buffered, and never hold back a message the pump has no company for. (NSQ holds it until
// the timeout, 250 ms by default, whenever the client's RDY is above its in-flight count.)
func (p *protocolV2) pump(c *client) {
	var (
		batch      []delivery
		scratch    []byte
		heartbeat  *time.Ticker
		heartbeatC <-chan time.Time
		flush      = time.NewTimer(time.Hour)
		flushC     <-chan time.Time
		held       bool // messages written to the buffer and not flushed
	)
	flush.Stop()
	defer flush.Stop()
	resetHeartbeat := func() {
		if heartbeat != nil {
			heartbeat.Stop()
			heartbeat, heartbeatC = nil, nil
		}
		if hb := c.heartbeatInterval(); hb > 0 {
			heartbeat = time.NewTicker(hb)
			heartbeatC = heartbeat.C
		}
	}
	resetHeartbeat()
	defer func() {
		if heartbeat != nil {
			heartbeat.Stop()
		}
	}()
	flushHeld := func() error {
		held, flushC = false, nil
		flush.Stop()
		c.wmu.Lock()
		defer c.wmu.Unlock()
		_ = c.conn.SetWriteDeadline(c.writeDeadline())
		return c.flushLocked()
	}

	for {
		c.idle.Store(false)
		if c.state.Load() == stateSubscribed {
			// take even without room: a wake the client cannot use (its RDY lowered since)
			// is passed on to another consumer.
			sub := c.sub.Load()
			batch = c.channel.take(sub, batch[:0], time.Now().UnixNano())
			if len(batch) > 0 {
				c.wmu.Lock()
				_ = c.conn.SetWriteDeadline(c.writeDeadline())
				var err error
				scratch, err = c.writeMessagesLocked(batch, scratch)
				// Flush when the client can take no more (it is waiting for these) or
				// output is unbuffered; otherwise look for more first, for at most
				// output_buffer_timeout.
				if err == nil && (c.outputBufferSize <= 0 || c.outputBufferTimeout <= 0 || sub.inFlight.Load() >= c.rdy.Load()) {
					err = c.flushLocked()
					held = false
				} else if err == nil {
					held = true
					if flushC == nil {
						flush.Reset(c.outputBufferTimeout)
						flushC = flush.C
					}
				}
				c.wmu.Unlock()
				c.messageCount.Add(uint64(len(batch)))
				if err == nil {
					now := time.Now().UnixNano()
					for i := range batch {
						if due := batch[i].due; due > 0 {
							p.n.timerLateness.observe(time.Duration(now - due))
							c.channel.lateness.observe(time.Duration(now - due))
						}
					}
				}
				clear(batch)
				if err != nil {
					c.close()
					return
				}
				continue
			}
		}
		if held {
			// Nothing more to send now: what is buffered goes out before the pump sleeps.
			if err := flushHeld(); err != nil {
				c.close()
				return
			}
		}
		c.idle.Store(true)
		select {
		case <-c.exit:
			return
		case <-c.wakeCh:
		case <-c.settingsCh:
			resetHeartbeat()
		case <-heartbeatC:
			// Not parked while writing: a client that stopped reading holds the write up to
			// its deadline, and a wake sent meanwhile would wait with it.
			c.idle.Store(false)
			if err := c.sendFrame(protocol.FrameTypeResponse, heartbeatBytes); err != nil {
				c.close()
				return
			}
		case <-flushC:
			c.idle.Store(false)
			if err := flushHeld(); err != nil {
				c.close()
				return
			}
		}
	}
}
