package nsqd

// nsqd's side of discovery. Every configured nsqlookupd gets a lookupPeer: a goroutine with its
// own connection, its own queue of pending registrations and its own backoff, so a slow or
// dead lookupd holds up neither the other lookupds nor anything on the publish path, which only
// ever marks a topic or channel as changed (registrationChanged) and returns.
//
// A peer's life: dial, send "  V1" and IDENTIFY, then bring the lookupd up to date with a full
// sync (REGISTER every topic without channels and every channel), then wait for changes,
// answering each with REGISTER or UNREGISTER, and PING on a timer. Any failure (a refused
// dial, an error answer, a missed deadline, the lookupd closing the connection) drops the
// connection, which makes the lookupd forget this node; the peer reconnects after a jittered
// exponential backoff and syncs everything again.
//
// The queue holds names, not actions: a queued topic or channel is registered if it exists
// when its turn comes and unregistered if it does not. A create and a delete that race each
// other (their notifications may arrive in either order) therefore always end in the state
// the daemon is really in, and a burst of changes to one name costs one command at most.

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ternmq/tern/internal/backoff"
	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/version"
)

const (
	// defaultLookupPingInterval is NSQ's; lookupd's inactive timeout (300 s by default) must
	// stay well above it.
	defaultLookupPingInterval = 15 * time.Second
	// defaultLookupIOTimeout bounds a dial (when --http-client-connect-timeout is not set), the
	// write of a batch of commands and the wait for their answers.
	defaultLookupIOTimeout = 2 * time.Second
	// defaultLookupBackoffMin and defaultLookupBackoffMax bound the wait before reconnecting.
	// The cap keeps a restarted lookupd without this node's registrations for at most about
	// 4 s plus one sync.
	defaultLookupBackoffMin = 100 * time.Millisecond
	defaultLookupBackoffMax = 4 * time.Second
	// defaultLookupMaxPending bounds a peer's queue; past it the peer forgets the queue and
	// does a full sync instead, so memory stays bounded and nothing is lost.
	defaultLookupMaxPending = 4096

	// lookupBatch is how many commands are written before their answers are read. An answer
	// is 6 bytes, so a batch's answers always fit in the socket buffers and pipelining
	// cannot deadlock with a lookupd that writes before it reads on.
	lookupBatch = 128
	// lookupMaxResponse bounds an answer's size field; the largest answer is IDENTIFY's JSON.
	lookupMaxResponse = 64 << 10
	// lookupErrLogInterval is how often a peer that keeps failing logs its error.
	lookupErrLogInterval = 30 * time.Second
)

// registration is a topic or channel (channel "" for the topic itself) that appeared or went
// away, to be registered with or unregistered from every lookupd. The peers act on what
// exists when they get to it, so added only says which way the change went.
type registration struct {
	topic, channel string
	added          bool
}

// regKey names a topic (channel "") or a channel.
type regKey struct{ topic, channel string }

func compareRegKeys(a, b regKey) int {
	return cmp.Or(strings.Compare(a.topic, b.topic), strings.Compare(a.channel, b.channel))
}

// registrationChanged queues r for every lookupd connection. It never blocks: it takes two
// short locks and signals the peers without waiting for them.
func (n *NSQD) registrationChanged(r registration) {
	n.lookupState().changed(regKey{topic: r.topic, channel: r.channel})
}

// lookupLoop keeps a connection to every configured nsqlookupd until ctx ends, then closes
// them and returns once every peer goroutine has. Run owns it and cancels ctx after the
// clients are gone; closing the connections is what unregisters this node.
func (n *NSQD) lookupLoop(ctx context.Context) {
	n.lookupState().run(ctx, n, n.logger.With("component", "lookup"))
}

// lookupdAddressesChanged starts peers for lookupd addresses added to the options and stops
// the peers of addresses removed. PUT /config/nsqlookupd_tcp_addresses calls it after storing
// the new options.
func (n *NSQD) lookupdAddressesChanged() { n.lookupState().addressesChanged() }

// lookupState returns the daemon's lookupd peers.
func (n *NSQD) lookupState() *lookupPeers { return &n.lookup }

// lookupIdentity is the IDENTIFY body nsqd sends to nsqlookupd; the JSON names are NSQ's.
type lookupIdentity struct {
	Version          string `json:"version"`
	TCPPort          int    `json:"tcp_port"`
	HTTPPort         int    `json:"http_port"`
	Hostname         string `json:"hostname"`
	BroadcastAddress string `json:"broadcast_address"`
	TopologyZone     string `json:"topology_zone"`
	TopologyRegion   string `json:"topology_region"`
}

// lookupdInfo is the part of nsqlookupd's IDENTIFY answer worth logging.
type lookupdInfo struct {
	Version          string `json:"version"`
	BroadcastAddress string `json:"broadcast_address"`
	Hostname         string `json:"hostname"`
	TCPPort          int    `json:"tcp_port"`
	HTTPPort         int    `json:"http_port"`
}

// topicRegistrations is a topic and the names of its channels, as a full sync sees them.
type topicRegistrations struct {
	topic    string
	channels []string
}

// lookupSource is what the peers need from the daemon, and no more: where the lookupds are,
// who this node is, and which topics and channels exist. *NSQD implements it; the command
// planning tests use a fake.
type lookupSource interface {
	// lookupdAddresses returns the configured lookupd TCP addresses.
	lookupdAddresses() []string
	// lookupdDialTimeout bounds a dial; 0 means the peer's I/O timeout.
	lookupdDialTimeout() time.Duration
	// lookupdTLS is the TLS configuration to register over, or nil for plain text.
	lookupdTLS() *tls.Config
	// lookupIdentity returns the IDENTIFY body.
	lookupIdentity() lookupIdentity
	// registrationSnapshot returns every topic with its channels.
	registrationSnapshot() []topicRegistrations
	// registrationExists reports whether the topic (channel "") or channel exists now.
	registrationExists(topic, channel string) bool
}

func (n *NSQD) lookupdAddresses() []string { return n.getOpts().LookupdTCPAddresses }

func (n *NSQD) lookupdDialTimeout() time.Duration { return n.getOpts().HTTPClientConnectTimeout }

func (n *NSQD) lookupdTLS() *tls.Config { return n.lookupdTLSConfig }

// lookupIdentity describes this node to lookupd. Broadcast ports from the options win over
// the real listener ports, so a node behind NAT or a container port mapping is reachable.
func (n *NSQD) lookupIdentity() lookupIdentity {
	o := n.getOpts()
	tcpPort := o.BroadcastTCPPort
	if tcpPort == 0 {
		tcpPort = protocol.ListenPort(n.TCPAddr())
	}
	httpPort := o.BroadcastHTTPPort
	if httpPort == 0 {
		httpPort = protocol.ListenPort(n.HTTPAddr())
	}
	// A host without a name still registers: lookupd identifies it by its broadcast address.
	hostname, _ := os.Hostname()
	return lookupIdentity{
		Version:          version.Binary,
		TCPPort:          tcpPort,
		HTTPPort:         httpPort,
		Hostname:         hostname,
		BroadcastAddress: o.BroadcastAddress,
		TopologyZone:     o.TopologyZone,
		TopologyRegion:   o.TopologyRegion,
	}
}

func (n *NSQD) registrationSnapshot() []topicRegistrations {
	topics := n.Topics()
	regs := make([]topicRegistrations, 0, len(topics))
	for _, t := range topics {
		chans := t.Channels()
		names := make([]string, len(chans))
		for i, ch := range chans {
			names[i] = ch.name
		}
		regs = append(regs, topicRegistrations{topic: t.name, channels: names})
	}
	return regs
}

func (n *NSQD) registrationExists(topic, channel string) bool {
	t := n.Topic(topic)
	if t == nil {
		return false
	}
	return channel == "" || t.Channel(channel) != nil
}

// lookupTuning holds the peers' timings and bounds; a zero field takes its default. Tests
// shorten them.
type lookupTuning struct {
	pingInterval time.Duration
	ioTimeout    time.Duration
	backoffMin   time.Duration
	backoffMax   time.Duration
	maxPending   int
}

// withDefaults returns t with every zero field set to its default.
func (t lookupTuning) withDefaults() lookupTuning {
	if t.pingInterval <= 0 {
		t.pingInterval = defaultLookupPingInterval
	}
	if t.ioTimeout <= 0 {
		t.ioTimeout = defaultLookupIOTimeout
	}
	if t.backoffMin <= 0 {
		t.backoffMin = defaultLookupBackoffMin
	}
	if t.backoffMax <= 0 {
		t.backoffMax = defaultLookupBackoffMax
	}
	t.backoffMax = max(t.backoffMax, t.backoffMin)
	if t.maxPending <= 0 {
		t.maxPending = defaultLookupMaxPending
	}
	return t
}

// lookupPeers is the set of lookupd peers, one per configured address.
//
// Lock order: lookupPeers.mu before lookupPeer.mu. A peer goroutine takes only its own mu.
type lookupPeers struct {
	// tuning is set before Run (tests do) and completed with defaults when run starts.
	tuning lookupTuning

	mu      sync.Mutex
	peers   map[string]*lookupPeer // by address
	running bool                   // between run's start and ctx's end; peers start only then
	// ctx, src and logger are run's, kept for the peers addressesChanged starts later.
	ctx    context.Context
	src    lookupSource
	logger *slog.Logger
	wg     sync.WaitGroup // every peer goroutine, removed ones included
}

// run starts a peer for every configured address, waits for ctx to end, then stops every
// peer and returns once all their goroutines have.
func (l *lookupPeers) run(ctx context.Context, src lookupSource, logger *slog.Logger) {
	l.mu.Lock()
	l.tuning = l.tuning.withDefaults()
	l.ctx, l.src, l.logger = ctx, src, logger
	if l.peers == nil {
		l.peers = make(map[string]*lookupPeer)
	}
	l.running = true
	l.mu.Unlock()
	l.addressesChanged()

	<-ctx.Done()
	l.mu.Lock()
	l.running = false
	for addr, p := range l.peers {
		p.cancel()
		delete(l.peers, addr)
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// addressesChanged brings the peers in line with the configured addresses: it starts one
// for each new address and stops those of removed ones. Duplicates and empty addresses are
// ignored. Before run and after shutdown it does nothing.
func (l *lookupPeers) addressesChanged() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.running {
		return
	}
	want := make(map[string]struct{})
	for _, addr := range l.src.lookupdAddresses() {
		if addr = strings.TrimSpace(addr); addr != "" {
			want[addr] = struct{}{}
		}
	}
	for _, addr := range slices.Sorted(maps.Keys(l.peers)) {
		if _, ok := want[addr]; !ok {
			l.peers[addr].cancel()
			delete(l.peers, addr)
			l.logger.Info("nsqlookupd removed", "lookupd", addr)
		}
	}
	for _, addr := range slices.Sorted(maps.Keys(want)) {
		if _, ok := l.peers[addr]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(l.ctx)
		p := &lookupPeer{
			addr:   addr,
			src:    l.src,
			tuning: l.tuning,
			logger: l.logger.With("lookupd", addr),
			cancel: cancel,
			wake:   make(chan struct{}, 1),
		}
		l.peers[addr] = p
		l.logger.Info("nsqlookupd added", "lookupd", addr)
		l.wg.Go(func() { p.run(ctx) })
	}
}

// changed queues k on every peer without blocking.
func (l *lookupPeers) changed(k regKey) {
	l.mu.Lock()
	for _, p := range l.peers {
		p.note(k)
	}
	l.mu.Unlock()
}

// lookupPeer keeps this node registered with one lookupd. Its goroutine (run, started by
// lookupPeers and ended by cancel) owns the connection and registered; mu guards the queue,
// which the daemon's goroutines fill through note.
type lookupPeer struct {
	addr   string
	src    lookupSource
	tuning lookupTuning
	logger *slog.Logger
	cancel context.CancelFunc

	// wake holds a signal (capacity 1) when the queue may have something.
	wake chan struct{}

	mu       sync.Mutex
	pending  map[regKey]struct{}
	overflow bool // the queue outgrew maxPending and was dropped: do a full sync

	// registered is what the lookupd holds on the current connection: topic -> channels.
	// A topic present with no channels is registered by itself.
	registered map[string]map[string]struct{}

	// Connection error logging, so a long-dead lookupd does not flood the log.
	lastErrLog time.Time
	unlogged   int
}

// note queues k and signals the peer; it never blocks. A name already queued takes no more
// room; past maxPending the queue is dropped in favour of a full sync.
func (p *lookupPeer) note(k regKey) {
	p.mu.Lock()
	if !p.overflow {
		if _, ok := p.pending[k]; !ok {
			if len(p.pending) >= p.tuning.maxPending {
				p.overflow = true
				clear(p.pending)
			} else {
				if p.pending == nil {
					p.pending = make(map[regKey]struct{})
				}
				p.pending[k] = struct{}{}
			}
		}
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// take empties the queue: either the queued names, sorted (a topic before its channels), or
// resync true when the queue overflowed and only a full sync will do.
func (p *lookupPeer) take() (keys []regKey, resync bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.overflow {
		p.overflow = false
		clear(p.pending)
		return nil, true
	}
	if len(p.pending) == 0 {
		return nil, false
	}
	keys = make([]regKey, 0, len(p.pending))
	for k := range p.pending {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareRegKeys)
	// clear keeps the map's room for the next burst.
	clear(p.pending)
	return keys, false
}

// run connects, serves and reconnects with backoff until ctx ends. Owned by lookupPeers;
// it returns after the connection and its reader are gone.
func (p *lookupPeer) run(ctx context.Context) {
	// The jitter keeps many nodes from reconnecting to a restarted lookupd in step.
	wait := backoff.Backoff{Min: p.tuning.backoffMin, Max: p.tuning.backoffMax}
	for {
		connected, err := p.connect(ctx)
		if ctx.Err() != nil {
			return
		}
		if connected {
			wait.Reset()
			p.logger.Info("nsqlookupd disconnected", "error", err)
		} else {
			p.logError(err)
		}
		timer := time.NewTimer(wait.Next())
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

// logError logs a connection error at most once per lookupErrLogInterval, with the number
// of errors since the last one logged.
func (p *lookupPeer) logError(err error) {
	now := time.Now()
	if !p.lastErrLog.IsZero() && now.Sub(p.lastErrLog) < lookupErrLogInterval {
		p.unlogged++
		return
	}
	p.logger.Warn("nsqlookupd connection failed", "error", err, "errors_not_logged", p.unlogged)
	p.lastErrLog, p.unlogged = now, 0
}

// connect runs one connection: dial, IDENTIFY, full sync, then changes and PINGs until
// something fails or ctx ends. connected says whether the lookupd was brought up to date;
// err says why the connection ended (nil when ctx ended).
func (p *lookupPeer) connect(ctx context.Context) (connected bool, err error) {
	dialTimeout := p.src.lookupdDialTimeout()
	if dialTimeout <= 0 {
		dialTimeout = p.tuning.ioTimeout
	}
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, protocol.Network(p.addr), p.addr)
	if err != nil {
		return false, fmt.Errorf("dial: %w", err)
	}
	if cfg := p.src.lookupdTLS(); cfg != nil {
		cfg = cfg.Clone()
		if host, _, err := net.SplitHostPort(p.addr); err == nil && cfg.ServerName == "" {
			cfg.ServerName = host
		}
		sess := tls.Client(conn, cfg)
		hctx, cancel := context.WithTimeout(ctx, dialTimeout)
		err := sess.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = conn.Close()
			return false, fmt.Errorf("TLS handshake: %w", err)
		}
		conn = sess
	}
	s := startLookupSession(conn, p.tuning.ioTimeout)
	// Closing the connection at once when ctx ends unblocks any write or wait, so a hung
	// lookupd cannot hold up shutdown.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer func() {
		stop()
		s.close()
	}()

	info, err := s.identify(ctx, p.src.lookupIdentity())
	if err != nil {
		return false, err
	}
	// A new connection holds nothing: start from scratch. The queue is dropped before the
	// snapshot is taken, so a change made after it is queued again, never lost.
	p.registered = make(map[string]map[string]struct{})
	p.take()
	if err := s.roundTrip(ctx, p.syncCommands()); err != nil {
		return false, fmt.Errorf("full sync: %w", err)
	}
	p.logger.Info("nsqlookupd connected", "lookupd_version", info.Version,
		"lookupd_broadcast_address", info.BroadcastAddress)

	ping := time.NewTimer(p.tuning.pingInterval)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return true, nil
		case r := <-s.responses:
			// Nothing is outstanding, so this is the lookupd closing the connection or
			// breaking the protocol.
			if r.err != nil {
				return true, fmt.Errorf("connection: %w", r.err)
			}
			return true, fmt.Errorf("unexpected answer %q", r.data)
		case <-p.wake:
			keys, resync := p.take()
			var cmds []*protocol.Command
			if resync {
				p.logger.Info("nsqlookupd queue overflowed, syncing everything")
				cmds = p.syncCommands()
			} else {
				cmds = p.changeCommands(keys)
			}
			if err := s.roundTrip(ctx, cmds); err != nil {
				return true, err
			}
		case <-ping.C:
			if err := s.roundTrip(ctx, []*protocol.Command{protocol.Ping()}); err != nil {
				return true, err
			}
			ping.Reset(p.tuning.pingInterval)
		}
	}
}

// syncCommands plans a full sync: UNREGISTER what the lookupd holds that no longer exists,
// then REGISTER every channel and every topic without channels it does not hold yet. It
// records the result as what the lookupd holds.
func (p *lookupPeer) syncCommands() []*protocol.Command {
	snap := p.src.registrationSnapshot()
	slices.SortFunc(snap, func(a, b topicRegistrations) int { return strings.Compare(a.topic, b.topic) })
	want := make(map[string]map[string]struct{}, len(snap))
	for _, tr := range snap {
		chans := make(map[string]struct{}, len(tr.channels))
		for _, ch := range tr.channels {
			chans[ch] = struct{}{}
		}
		want[tr.topic] = chans
	}
	var cmds []*protocol.Command
	for _, topic := range slices.Sorted(maps.Keys(p.registered)) {
		chans, ok := want[topic]
		if !ok {
			// lookupd drops a topic's channels with it.
			cmds = append(cmds, protocol.UnRegister(topic, ""))
			continue
		}
		for _, ch := range slices.Sorted(maps.Keys(p.registered[topic])) {
			if _, ok := chans[ch]; !ok {
				cmds = append(cmds, protocol.UnRegister(topic, ch))
			}
		}
	}
	for _, tr := range snap {
		held, ok := p.registered[tr.topic]
		if len(tr.channels) == 0 {
			if !ok {
				cmds = append(cmds, protocol.Register(tr.topic, ""))
			}
			continue
		}
		// REGISTER topic channel registers the topic too.
		for _, ch := range slices.Sorted(slices.Values(tr.channels)) {
			if _, ok := held[ch]; !ok {
				cmds = append(cmds, protocol.Register(tr.topic, ch))
			}
		}
	}
	p.registered = want
	return cmds
}

// changeCommands plans the commands for queued names: each is registered if it exists and
// the lookupd does not hold it, unregistered if it is gone and the lookupd holds it, and
// otherwise left alone. It updates the record of what the lookupd holds.
func (p *lookupPeer) changeCommands(keys []regKey) []*protocol.Command {
	// A topic before its channels: unregistering a topic drops its channels, so theirs
	// then need no command.
	slices.SortFunc(keys, compareRegKeys)
	var cmds []*protocol.Command
	for _, k := range keys {
		exists := p.src.registrationExists(k.topic, k.channel)
		held, topicHeld := p.registered[k.topic]
		if k.channel == "" {
			switch {
			case exists && !topicHeld:
				cmds = append(cmds, protocol.Register(k.topic, ""))
				p.registered[k.topic] = make(map[string]struct{})
			case exists:
				// Deleted and recreated before its turn: channels of the old topic that
				// the new one lacks must go.
				for _, ch := range slices.Sorted(maps.Keys(held)) {
					if !p.src.registrationExists(k.topic, ch) {
						cmds = append(cmds, protocol.UnRegister(k.topic, ch))
						delete(held, ch)
					}
				}
			case topicHeld:
				cmds = append(cmds, protocol.UnRegister(k.topic, ""))
				delete(p.registered, k.topic)
			}
			continue
		}
		_, chanHeld := held[k.channel]
		switch {
		case exists && !chanHeld:
			cmds = append(cmds, protocol.Register(k.topic, k.channel))
			if held == nil {
				held = make(map[string]struct{})
				p.registered[k.topic] = held
			}
			held[k.channel] = struct{}{}
		case !exists && chanHeld:
			cmds = append(cmds, protocol.UnRegister(k.topic, k.channel))
			delete(held, k.channel)
		}
	}
	return cmds
}

// lookupResponse is one answer read from a lookupd, or the error that ended reading.
type lookupResponse struct {
	data []byte
	err  error
}

// lookupSession is one connection to a lookupd. Commands are written by the peer goroutine;
// a reader goroutine (readLoop) turns answers into lookupResponses, so the peer notices a
// connection the lookupd closed even while it has nothing to send.
type lookupSession struct {
	conn      net.Conn
	w         *bufio.Writer
	responses chan lookupResponse
	done      chan struct{} // closed by close: readLoop stops sending
	ioTimeout time.Duration

	closeOnce  sync.Once
	readerDone chan struct{} // closed when readLoop returns; nil without one
}

// startLookupSession wraps conn and starts its reader.
func startLookupSession(conn net.Conn, ioTimeout time.Duration) *lookupSession {
	s := &lookupSession{
		conn:       conn,
		w:          bufio.NewWriter(conn),
		responses:  make(chan lookupResponse, lookupBatch),
		done:       make(chan struct{}),
		ioTimeout:  ioTimeout,
		readerDone: make(chan struct{}),
	}
	go s.readLoop(bufio.NewReader(conn))
	return s
}

// readLoop reads answers until the connection fails or closes, which it reports as a last
// response. Owned by the session; close waits for it.
func (s *lookupSession) readLoop(r *bufio.Reader) {
	defer close(s.readerDone)
	for {
		data, err := protocol.ReadV1Response(r, lookupMaxResponse)
		select {
		case s.responses <- lookupResponse{data: data, err: err}:
		case <-s.done:
			return
		}
		if err != nil {
			return
		}
	}
}

// close closes the connection, which makes the lookupd forget this node's registrations,
// and waits for the reader.
func (s *lookupSession) close() {
	s.closeOnce.Do(func() {
		close(s.done)
		_ = s.conn.Close()
	})
	if s.readerDone != nil {
		<-s.readerDone
	}
}

// identify sends the magic and IDENTIFY and returns the lookupd's answer. An error answer
// is an error: the lookupd will not take this node's registrations.
func (s *lookupSession) identify(ctx context.Context, id lookupIdentity) (lookupdInfo, error) {
	cmd, err := protocol.Identify(id)
	if err != nil {
		return lookupdInfo{}, err
	}
	answers, err := s.exchange(ctx, protocol.MagicV1, []*protocol.Command{cmd})
	if err != nil {
		return lookupdInfo{}, err
	}
	var info lookupdInfo
	if string(answers) == protocol.OK {
		// NSQ answers a bare OK when it cannot encode its identity.
		return info, nil
	}
	if err := json.Unmarshal(answers, &info); err != nil {
		return lookupdInfo{}, fmt.Errorf("IDENTIFY answer %q: %w", answers, err)
	}
	return info, nil
}

// roundTrip sends cmds in batches of lookupBatch, reading each batch's answers before
// writing the next. An error names the command it concerns.
func (s *lookupSession) roundTrip(ctx context.Context, cmds []*protocol.Command) error {
	for batch := range slices.Chunk(cmds, lookupBatch) {
		if _, err := s.exchange(ctx, "", batch); err != nil {
			return err
		}
	}
	return nil
}

// exchange writes prefix and cmds, then reads one answer per command within ioTimeout. It
// returns the last answer.
func (s *lookupSession) exchange(ctx context.Context, prefix string, cmds []*protocol.Command) ([]byte, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	if err := s.conn.SetWriteDeadline(time.Now().Add(s.ioTimeout)); err != nil {
		return nil, fmt.Errorf("%s: %w", cmds[0], err)
	}
	if _, err := s.w.WriteString(prefix); err != nil {
		return nil, fmt.Errorf("%s: write magic: %w", cmds[0], err)
	}
	for _, c := range cmds {
		if _, err := c.WriteTo(s.w); err != nil {
			return nil, fmt.Errorf("%s: %w", c, err)
		}
	}
	if err := s.w.Flush(); err != nil {
		return nil, fmt.Errorf("%s: %w", cmds[len(cmds)-1], err)
	}
	timer := time.NewTimer(s.ioTimeout)
	defer timer.Stop()
	var last []byte
	for _, c := range cmds {
		select {
		case r := <-s.responses:
			if r.err != nil {
				return nil, fmt.Errorf("%s: %w", c, r.err)
			}
			if strings.HasPrefix(string(r.data), "E_") {
				return nil, fmt.Errorf("%s: %w", c, protocol.ParseError(r.data))
			}
			last = r.data
		case <-timer.C:
			return nil, fmt.Errorf("%s: no answer within %v: %w", c, s.ioTimeout, os.ErrDeadlineExceeded)
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: %w", c, ctx.Err())
		case <-s.done:
			return nil, fmt.Errorf("%s: %w", c, net.ErrClosed)
		}
	}
	return last, nil
}
