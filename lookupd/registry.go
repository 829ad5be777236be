package lookupd

import (
	"cmp"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/tern/internal/protocol"
)

// The registration categories, NSQ's names: they appear in /debug's keys.
const (
	categoryClient  = "client"  // every identified nsqd; key and subkey are empty
	categoryTopic   = "topic"   // key is the topic; subkey is empty
	categoryChannel = "channel" // key is the topic, subkey the channel
)

// registration names one entry of the registry, NSQ's Registration{Category, Key, SubKey}.
type registration struct {
	category, key, subKey string
}

// String is the form /debug uses as a key, "category:key:subkey".
func (r registration) String() string { return r.category + ":" + r.key + ":" + r.subKey }

// peerInfo is what an nsqd says about itself in IDENTIFY, plus the address its connection
// comes from. It is the producer shape of GET /lookup; the field names are NSQ's.
type peerInfo struct {
	RemoteAddress    string `json:"remote_address"`
	Hostname         string `json:"hostname"`
	BroadcastAddress string `json:"broadcast_address"`
	TCPPort          int    `json:"tcp_port"`
	HTTPPort         int    `json:"http_port"`
	Version          string `json:"version"`
	TopologyZone     string `json:"topology_zone"`
	TopologyRegion   string `json:"topology_region"`
}

// node is the "broadcast_address:http_port" that POST /topic/tombstone names a producer by.
func (pi *peerInfo) node() string {
	return pi.BroadcastAddress + ":" + strconv.Itoa(pi.HTTPPort)
}

// peer is one identified nsqd connection. Its id is unique for the life of the Lookupd (NSQ
// uses the remote address, which a new connection can reuse while the old one is still
// being cleaned up, and then the cleanup removes the newcomer's registrations).
type peer struct {
	id   uint64
	info peerInfo // set at IDENTIFY, never changed
	// lastUpdate is the time of the last IDENTIFY or PING in Unix nanoseconds. It is atomic
	// so that PING touches it without the registry's lock.
	lastUpdate atomic.Int64
}

func newPeer(id uint64, info peerInfo, now time.Time) *peer {
	p := &peer{id: id, info: info}
	p.lastUpdate.Store(now.UnixNano())
	return p
}

func (p *peer) touch(now time.Time) { p.lastUpdate.Store(now.UnixNano()) }

// active reports whether the peer's last IDENTIFY or PING is at most timeout old.
func (p *peer) active(now time.Time, timeout time.Duration) bool {
	return now.Sub(time.Unix(0, p.lastUpdate.Load())) <= timeout
}

// producer is a peer's membership of one registration. The tombstone is per registration: it
// hides the peer for one topic only.
type producer struct {
	peer         *peer
	tombstonedAt time.Time // zero while not tombstoned
}

// tombstoned reports whether a tombstone set on the producer is younger than lifetime.
func (p *producer) tombstoned(now time.Time, lifetime time.Duration) bool {
	return !p.tombstonedAt.IsZero() && now.Sub(p.tombstonedAt) < lifetime
}

// producerSet is a registration's producers by peer id.
type producerSet map[uint64]*producer

// registrationDB is lookupd's registry, NSQ's RegistrationDB: for every registration, the
// peers registered under it. A registration (a "key") can exist with no producer at all:
// POST /topic/create makes one, and one stays behind when its last nsqd disconnects, so that
// /topics goes on listing the topic until it is deleted over HTTP (NSQ does the same). The
// exception is ephemeral names, whose keys go with their last producer (see dropIfEphemeral).
//
// Where NSQ keeps one flat map and scans all of it for wildcard lookups, the registry keeps a
// map per category, channels grouped by topic, and an index of each peer's registrations, so
// that a lookup, a disconnect and /nodes cost what they touch rather than the whole registry.
//
// Every method is safe for concurrent use; mu guards everything but peer.lastUpdate. Methods
// that filter by activity or tombstones take the time as a parameter, so tests control it.
type registrationDB struct {
	mu       sync.RWMutex
	clients  producerSet
	topics   map[string]producerSet
	channels map[string]map[string]producerSet // topic -> channel -> producers
	byPeer   map[uint64]map[registration]struct{}
}

func newRegistrationDB() *registrationDB {
	return &registrationDB{
		clients:  make(producerSet),
		topics:   make(map[string]producerSet),
		channels: make(map[string]map[string]producerSet),
		byPeer:   make(map[uint64]map[registration]struct{}),
	}
}

// set returns the producers of r, or nil when r does not exist. It needs mu.
func (db *registrationDB) set(r registration) producerSet {
	switch r.category {
	case categoryClient:
		return db.clients
	case categoryTopic:
		return db.topics[r.key]
	case categoryChannel:
		return db.channels[r.key][r.subKey]
	}
	return nil
}

// ensure returns the producers of r, creating the registration if needed. It needs mu held
// for writing.
func (db *registrationDB) ensure(r registration) producerSet {
	switch r.category {
	case categoryTopic:
		s, ok := db.topics[r.key]
		if !ok {
			s = make(producerSet)
			db.topics[r.key] = s
		}
		return s
	case categoryChannel:
		chans, ok := db.channels[r.key]
		if !ok {
			chans = make(map[string]producerSet)
			db.channels[r.key] = chans
		}
		s, ok := chans[r.subKey]
		if !ok {
			s = make(producerSet)
			chans[r.subKey] = s
		}
		return s
	}
	return db.clients
}

// addProducer adds p to r, creating r if needed, and reports whether p was not there yet. A
// peer already registered keeps its producer, and with it any tombstone, as in NSQ.
func (db *registrationDB) addProducer(r registration, p *peer) bool {
	s := db.ensure(r)
	if _, ok := s[p.id]; ok {
		return false
	}
	s[p.id] = &producer{peer: p}
	regs, ok := db.byPeer[p.id]
	if !ok {
		regs = make(map[registration]struct{})
		db.byPeer[p.id] = regs
	}
	regs[r] = struct{}{}
	return true
}

// removeProducer removes the peer from r and reports whether it was there and how many
// producers r has left. r itself stays.
func (db *registrationDB) removeProducer(r registration, peerID uint64) (removed bool, left int) {
	s := db.set(r)
	if s == nil {
		return false, 0
	}
	if _, ok := s[peerID]; ok {
		delete(s, peerID)
		removed = true
		if regs := db.byPeer[peerID]; regs != nil {
			delete(regs, r)
			if len(regs) == 0 {
				delete(db.byPeer, peerID)
			}
		}
	}
	return removed, len(s)
}

// removeRegistration deletes r and its producers' memberships of it.
func (db *registrationDB) removeRegistration(r registration) {
	for id := range db.set(r) {
		if regs := db.byPeer[id]; regs != nil {
			delete(regs, r)
			if len(regs) == 0 {
				delete(db.byPeer, id)
			}
		}
	}
	switch r.category {
	case categoryTopic:
		delete(db.topics, r.key)
	case categoryChannel:
		if chans := db.channels[r.key]; chans != nil {
			delete(chans, r.subKey)
			if len(chans) == 0 {
				delete(db.channels, r.key)
			}
		}
	case categoryClient:
		clear(db.clients)
	}
}

// dropIfEphemeral deletes r if it names an ephemeral topic or channel and has no producer
// left: an ephemeral topic or channel exists only while some nsqd has it, so its key would
// only ever be stale. When an ephemeral topic goes, so do its channel keys that have no
// producer. NSQ drops ephemeral keys only on UNREGISTER; here a disconnect drops them too,
// which keeps /topics from listing ephemeral topics that no longer exist anywhere (reference
// §10 item 21). It reports the registrations deleted.
func (db *registrationDB) dropIfEphemeral(r registration) []registration {
	s := db.set(r)
	if s == nil || len(s) > 0 {
		return nil
	}
	switch {
	case r.category == categoryChannel && protocol.IsEphemeral(r.subKey):
		db.removeRegistration(r)
		return []registration{r}
	case r.category == categoryTopic && protocol.IsEphemeral(r.key):
		var dropped []registration
		for ch, cs := range db.channels[r.key] {
			if len(cs) == 0 {
				cr := registration{categoryChannel, r.key, ch}
				db.removeRegistration(cr)
				dropped = append(dropped, cr)
			}
		}
		db.removeRegistration(r)
		return append(dropped, r)
	}
	return nil
}

// identify registers an identified peer under the client category.
func (db *registrationDB) identify(p *peer) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.addProducer(registration{category: categoryClient}, p)
}

// register adds the peer to the topic and, when channel is not empty, to the channel, as
// REGISTER does. It returns the registrations the peer was not in before.
func (db *registrationDB) register(p *peer, topic, channel string) []registration {
	db.mu.Lock()
	defer db.mu.Unlock()
	var added []registration
	if channel != "" {
		r := registration{categoryChannel, topic, channel}
		if db.addProducer(r, p) {
			added = append(added, r)
		}
	}
	r := registration{categoryTopic, topic, ""}
	if db.addProducer(r, p) {
		added = append(added, r)
	}
	return added
}

// unregister removes the peer as UNREGISTER does: from the channel when channel is not
// empty, and otherwise from the topic and every channel of the topic. Ephemeral keys left
// without producers are deleted. It returns the registrations the peer was removed from and
// those deleted.
func (db *registrationDB) unregister(peerID uint64, topic, channel string) (removed, dropped []registration) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if channel != "" {
		r := registration{categoryChannel, topic, channel}
		if ok, _ := db.removeProducer(r, peerID); ok {
			removed = append(removed, r)
		}
		return removed, db.dropIfEphemeral(r)
	}
	for _, ch := range sortedKeys(db.channels[topic]) {
		r := registration{categoryChannel, topic, ch}
		if ok, _ := db.removeProducer(r, peerID); ok {
			removed = append(removed, r)
		}
		dropped = append(dropped, db.dropIfEphemeral(r)...)
	}
	r := registration{categoryTopic, topic, ""}
	if ok, _ := db.removeProducer(r, peerID); ok {
		removed = append(removed, r)
	}
	return removed, append(dropped, db.dropIfEphemeral(r)...)
}

// removePeer removes a disconnected peer from every registration. The keys stay, except
// ephemeral ones left without producers. It returns the registrations the peer was removed
// from and those deleted.
func (db *registrationDB) removePeer(peerID uint64) (removed, dropped []registration) {
	db.mu.Lock()
	defer db.mu.Unlock()
	regs := slices.SortedFunc(maps.Keys(db.byPeer[peerID]), compareRegistrations)
	for _, r := range regs {
		if ok, _ := db.removeProducer(r, peerID); ok {
			removed = append(removed, r)
		}
	}
	// Channels before topics (the order above), so that an ephemeral topic's channels are
	// judged before the topic takes its empty channels with it.
	for _, r := range regs {
		dropped = append(dropped, db.dropIfEphemeral(r)...)
	}
	return removed, dropped
}

// compareRegistrations orders channel registrations first, then topics, then the client one,
// each by key and subkey.
func compareRegistrations(a, b registration) int {
	rank := func(c string) int {
		switch c {
		case categoryChannel:
			return 0
		case categoryTopic:
			return 1
		}
		return 2
	}
	return cmp.Or(cmp.Compare(rank(a.category), rank(b.category)),
		cmp.Compare(a.key, b.key), cmp.Compare(a.subKey, b.subKey))
}

// addTopic creates the topic's registration, with no producer, as POST /topic/create does.
func (db *registrationDB) addTopic(topic string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.ensure(registration{categoryTopic, topic, ""})
}

// addChannel creates the channel's and its topic's registrations, as POST /channel/create
// does.
func (db *registrationDB) addChannel(topic, channel string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.ensure(registration{categoryChannel, topic, channel})
	db.ensure(registration{categoryTopic, topic, ""})
}

// deleteTopic deletes the topic's registration and all its channels', producers and all, as
// POST /topic/delete does. A topic that does not exist is no error.
func (db *registrationDB) deleteTopic(topic string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	for ch := range db.channels[topic] {
		db.removeRegistration(registration{categoryChannel, topic, ch})
	}
	db.removeRegistration(registration{categoryTopic, topic, ""})
}

// deleteChannel deletes the channel's registration and reports whether it existed.
func (db *registrationDB) deleteChannel(topic, channel string) bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	r := registration{categoryChannel, topic, channel}
	if db.set(r) == nil {
		return false
	}
	db.removeRegistration(r)
	return true
}

// tombstone marks the producers of topic whose "broadcast_address:http_port" is node, and
// returns how many it marked. The port may also be joined the way net.JoinHostPort does,
// which differs for IPv6 addresses ("[::1]:4151" as well as NSQ's "::1:4151").
func (db *registrationDB) tombstone(topic, node string, now time.Time) int {
	db.mu.Lock()
	defer db.mu.Unlock()
	n := 0
	for _, p := range db.topics[topic] {
		info := &p.peer.info
		if node == info.node() || node == net.JoinHostPort(info.BroadcastAddress, strconv.Itoa(info.HTTPPort)) {
			p.tombstonedAt = now
			n++
		}
	}
	return n
}

// topicNames returns every topic registration's name, sorted.
func (db *registrationDB) topicNames() []string {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return sortedKeys(db.topics)
}

// channelNames returns the names of the topic's channel registrations, sorted.
func (db *registrationDB) channelNames(topic string) []string {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return sortedKeys(db.channels[topic])
}

// lookup answers GET /lookup: the topic's channels and its producers that are active and not
// tombstoned. ok is false when the topic has no registration at all.
func (db *registrationDB) lookup(topic string, now time.Time, inactive, lifetime time.Duration) (channels []string, producers []peerInfo, ok bool) {
	db.mu.RLock()
	defer db.mu.RUnlock()
	s, ok := db.topics[topic]
	if !ok {
		return nil, nil, false
	}
	producers = []peerInfo{}
	for _, p := range sortedProducers(s) {
		if p.peer.active(now, inactive) && !p.tombstoned(now, lifetime) {
			producers = append(producers, p.peer.info)
		}
	}
	return sortedKeys(db.channels[topic]), producers, true
}

// nodeInfo is one producer of GET /nodes: an active nsqd, its topics and, for each topic,
// whether it is tombstoned there.
type nodeInfo struct {
	peerInfo
	Tombstones []bool   `json:"tombstones"`
	Topics     []string `json:"topics"`
}

// nodes answers GET /nodes: every active identified nsqd, tombstoned or not.
func (db *registrationDB) nodes(now time.Time, inactive, lifetime time.Duration) []nodeInfo {
	db.mu.RLock()
	defer db.mu.RUnlock()
	out := []nodeInfo{}
	for _, p := range sortedProducers(db.clients) {
		if !p.peer.active(now, inactive) {
			continue
		}
		n := nodeInfo{peerInfo: p.peer.info, Tombstones: []bool{}, Topics: []string{}}
		for r := range db.byPeer[p.peer.id] {
			if r.category == categoryTopic {
				n.Topics = append(n.Topics, r.key)
			}
		}
		slices.Sort(n.Topics)
		for _, t := range n.Topics {
			n.Tombstones = append(n.Tombstones, db.topics[t][p.peer.id].tombstoned(now, lifetime))
		}
		out = append(out, n)
	}
	return out
}

// debugProducer is one producer of GET /debug, NSQ's shape.
type debugProducer struct {
	ID               string `json:"id"`
	Hostname         string `json:"hostname"`
	BroadcastAddress string `json:"broadcast_address"`
	TCPPort          int    `json:"tcp_port"`
	HTTPPort         int    `json:"http_port"`
	Version          string `json:"version"`
	TopologyZone     string `json:"topology_zone"`
	TopologyRegion   string `json:"topology_region"`
	LastUpdate       int64  `json:"last_update"`
	Tombstoned       bool   `json:"tombstoned"`
	// TombstonedAt is Unix nanoseconds, 0 when never tombstoned (NSQ sends the nanoseconds of
	// Go's zero time, a large negative number).
	TombstonedAt int64 `json:"tombstoned_at"`
}

// debug answers GET /debug: every registration that has producers, keyed
// "category:key:subkey", with every producer, inactive and tombstoned ones included. "id" is
// the connection's remote address, as in NSQ.
func (db *registrationDB) debug() map[string][]debugProducer {
	db.mu.RLock()
	defer db.mu.RUnlock()
	out := make(map[string][]debugProducer)
	add := func(r registration, s producerSet) {
		for _, p := range sortedProducers(s) {
			d := debugProducer{
				ID:               p.peer.info.RemoteAddress,
				Hostname:         p.peer.info.Hostname,
				BroadcastAddress: p.peer.info.BroadcastAddress,
				TCPPort:          p.peer.info.TCPPort,
				HTTPPort:         p.peer.info.HTTPPort,
				Version:          p.peer.info.Version,
				TopologyZone:     p.peer.info.TopologyZone,
				TopologyRegion:   p.peer.info.TopologyRegion,
				LastUpdate:       p.peer.lastUpdate.Load(),
				Tombstoned:       !p.tombstonedAt.IsZero(),
			}
			if d.Tombstoned {
				d.TombstonedAt = p.tombstonedAt.UnixNano()
			}
			out[r.String()] = append(out[r.String()], d)
		}
	}
	add(registration{category: categoryClient}, db.clients)
	for t, s := range db.topics {
		add(registration{categoryTopic, t, ""}, s)
	}
	for t, chans := range db.channels {
		for ch, s := range chans {
			add(registration{categoryChannel, t, ch}, s)
		}
	}
	return out
}

// dbStats is what the metrics report, read in one pass under the lock.
type dbStats struct {
	peers, activePeers int
	topics, channels   int
	tombstones         int
	// topicProducers counts each topic's active, non-tombstoned producers: what /lookup
	// would return.
	topicProducers map[string]int
}

func (db *registrationDB) stats(now time.Time, inactive, lifetime time.Duration) dbStats {
	db.mu.RLock()
	defer db.mu.RUnlock()
	st := dbStats{peers: len(db.clients), topics: len(db.topics), topicProducers: make(map[string]int, len(db.topics))}
	for _, p := range db.clients {
		if p.peer.active(now, inactive) {
			st.activePeers++
		}
	}
	for _, chans := range db.channels {
		st.channels += len(chans)
	}
	for t, s := range db.topics {
		n := 0
		for _, p := range s {
			if p.tombstoned(now, lifetime) {
				st.tombstones++
			} else if p.peer.active(now, inactive) {
				n++
			}
		}
		st.topicProducers[t] = n
	}
	return st
}

// sortedProducers returns a set's producers in the order the peers connected, so that answers
// are stable.
func sortedProducers(s producerSet) []*producer {
	return slices.SortedFunc(maps.Values(s), func(a, b *producer) int { return cmp.Compare(a.peer.id, b.peer.id) })
}

// sortedKeys returns a map's keys sorted; never nil, so that JSON answers say [] rather than
// null.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
