package lookupd

import (
	"maps"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"
)

// t0 is the registry tests' clock: every peer identifies at t0.
var t0 = time.Unix(1_700_000_000, 0)

const (
	testInactive = 300 * time.Second
	testLifetime = 45 * time.Second
)

// testPeerInfo is a peer whose TCP port is 4000+id and HTTP port 5000+id.
func testPeerInfo(id uint64) *peer {
	return newPeer(id, peerInfo{
		RemoteAddress:    "127.0.0.1:1",
		BroadcastAddress: "10.0.0.1",
		TCPPort:          4000 + int(id),
		HTTPPort:         5000 + int(id),
		Version:          "1.3.0",
	}, t0)
}

// dbState is what the HTTP API would show of a registry: topics, each topic's channels, and
// each topic's /lookup producers (by peer id; nil for 404).
type dbState struct {
	topics   []string
	channels map[string][]string
	lookup   map[string][]uint64
}

// snapshot reads the state of the topics named (and of every registered topic) at now.
func snapshot(db *registrationDB, now time.Time, also ...string) dbState {
	st := dbState{topics: db.topicNames(), channels: map[string][]string{}, lookup: map[string][]uint64{}}
	for _, topic := range slices.Concat(st.topics, also) {
		if chans := db.channelNames(topic); len(chans) > 0 {
			st.channels[topic] = chans
		}
		_, producers, ok := db.lookup(topic, now, testInactive, testLifetime)
		if !ok {
			continue
		}
		ids := []uint64{}
		for _, p := range producers {
			ids = append(ids, uint64(p.TCPPort-4000))
		}
		st.lookup[topic] = ids
	}
	return st
}

func TestRegistrationDB(t *testing.T) {
	p1, p2 := testPeerInfo(1), testPeerInfo(2)
	tests := []struct {
		name string
		ops  func(t *testing.T, db *registrationDB)
		want dbState
	}{
		{
			name: "empty",
			ops:  func(*testing.T, *registrationDB) {},
			want: dbState{topics: []string{}},
		},
		{
			name: "register a topic",
			ops:  func(_ *testing.T, db *registrationDB) { db.register(p1, "orders", "") },
			want: dbState{topics: []string{"orders"}, lookup: map[string][]uint64{"orders": {1}}},
		},
		{
			name: "register a channel registers its topic",
			ops:  func(_ *testing.T, db *registrationDB) { db.register(p1, "orders", "archive") },
			want: dbState{
				topics:   []string{"orders"},
				channels: map[string][]string{"orders": {"archive"}},
				lookup:   map[string][]uint64{"orders": {1}},
			},
		},
		{
			name: "two producers, listed in connection order",
			ops: func(_ *testing.T, db *registrationDB) {
				db.register(p2, "orders", "")
				db.register(p1, "orders", "")
				db.register(p1, "orders", "") // again: no duplicate
			},
			want: dbState{topics: []string{"orders"}, lookup: map[string][]uint64{"orders": {1, 2}}},
		},
		{
			name: "unregister a channel keeps the topic and the channel key",
			ops: func(_ *testing.T, db *registrationDB) {
				db.register(p1, "orders", "archive")
				db.unregister(p1.id, "orders", "archive")
			},
			want: dbState{
				topics:   []string{"orders"},
				channels: map[string][]string{"orders": {"archive"}},
				lookup:   map[string][]uint64{"orders": {1}},
			},
		},
		{
			name: "unregister a topic removes the producer, keeps the keys",
			ops: func(_ *testing.T, db *registrationDB) {
				db.register(p1, "orders", "archive")
				db.register(p2, "orders", "")
				db.unregister(p1.id, "orders", "")
			},
			want: dbState{
				topics:   []string{"orders"},
				channels: map[string][]string{"orders": {"archive"}},
				lookup:   map[string][]uint64{"orders": {2}},
			},
		},
		{
			name: "unregister the last producer of an ephemeral channel removes it",
			ops: func(_ *testing.T, db *registrationDB) {
				db.register(p1, "orders", "tmp#ephemeral")
				db.register(p1, "orders", "durable")
				db.unregister(p1.id, "orders", "tmp#ephemeral")
			},
			want: dbState{
				topics:   []string{"orders"},
				channels: map[string][]string{"orders": {"durable"}},
				lookup:   map[string][]uint64{"orders": {1}},
			},
		},
		{
			name: "an ephemeral channel with producers left stays",
			ops: func(_ *testing.T, db *registrationDB) {
				db.register(p1, "orders", "tmp#ephemeral")
				db.register(p2, "orders", "tmp#ephemeral")
				db.unregister(p1.id, "orders", "tmp#ephemeral")
			},
			want: dbState{
				topics:   []string{"orders"},
				channels: map[string][]string{"orders": {"tmp#ephemeral"}},
				lookup:   map[string][]uint64{"orders": {1, 2}},
			},
		},
		{
			name: "unregister the last producer of an ephemeral topic removes it and its empty channels",
			ops: func(_ *testing.T, db *registrationDB) {
				db.register(p1, "e#ephemeral", "a")
				db.register(p1, "e#ephemeral", "b#ephemeral")
				db.unregister(p1.id, "e#ephemeral", "")
			},
			want: dbState{topics: []string{}},
		},
		{
			name: "disconnect removes the peer everywhere and keeps durable keys",
			ops: func(_ *testing.T, db *registrationDB) {
				db.identify(p1)
				db.register(p1, "orders", "archive")
				db.register(p1, "events", "")
				db.register(p2, "events", "")
				db.removePeer(p1.id)
			},
			want: dbState{
				topics:   []string{"events", "orders"},
				channels: map[string][]string{"orders": {"archive"}},
				lookup:   map[string][]uint64{"events": {2}, "orders": {}},
			},
		},
		{
			name: "disconnect removes ephemeral keys left without producers",
			ops: func(_ *testing.T, db *registrationDB) {
				db.register(p1, "e#ephemeral", "c")
				db.register(p1, "orders", "tmp#ephemeral")
				db.register(p1, "shared#ephemeral", "")
				db.register(p2, "shared#ephemeral", "")
				db.removePeer(p1.id)
			},
			want: dbState{
				topics: []string{"orders", "shared#ephemeral"},
				lookup: map[string][]uint64{"orders": {}, "shared#ephemeral": {2}},
			},
		},
		{
			name: "created topics and channels have no producers",
			ops: func(_ *testing.T, db *registrationDB) {
				db.addTopic("orders")
				db.addChannel("events", "archive")
			},
			want: dbState{
				topics:   []string{"events", "orders"},
				channels: map[string][]string{"events": {"archive"}},
				lookup:   map[string][]uint64{"events": {}, "orders": {}},
			},
		},
		{
			name: "creating an existing topic keeps its producers",
			ops: func(_ *testing.T, db *registrationDB) {
				db.register(p1, "orders", "")
				db.addTopic("orders")
				db.addChannel("orders", "archive")
			},
			want: dbState{
				topics:   []string{"orders"},
				channels: map[string][]string{"orders": {"archive"}},
				lookup:   map[string][]uint64{"orders": {1}},
			},
		},
		{
			name: "delete a topic removes its channels and producers",
			ops: func(_ *testing.T, db *registrationDB) {
				db.register(p1, "orders", "archive")
				db.register(p1, "events", "")
				db.deleteTopic("orders")
				db.deleteTopic("never-existed")
			},
			want: dbState{topics: []string{"events"}, lookup: map[string][]uint64{"events": {1}}},
		},
		{
			name: "delete a channel",
			ops: func(t *testing.T, db *registrationDB) {
				db.register(p1, "orders", "archive")
				db.register(p1, "orders", "billing")
				if !db.deleteChannel("orders", "archive") {
					t.Error("deleteChannel of an existing channel reported false")
				}
				if db.deleteChannel("orders", "nope") {
					t.Error("deleteChannel of a missing channel reported true")
				}
			},
			want: dbState{
				topics:   []string{"orders"},
				channels: map[string][]string{"orders": {"billing"}},
				lookup:   map[string][]uint64{"orders": {1}},
			},
		},
		{
			name: "channel keys without a topic key: not found in lookup, listed by channels",
			ops: func(_ *testing.T, db *registrationDB) {
				db.register(p1, "t", "c")
				db.removeRegistration(registration{categoryTopic, "t", ""})
			},
			want: dbState{topics: []string{}, channels: map[string][]string{"t": {"c"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := newRegistrationDB()
			tt.ops(t, db)
			got := snapshot(db, t0, "t", "never-existed")
			if tt.want.channels == nil {
				tt.want.channels = map[string][]string{}
			}
			if tt.want.lookup == nil {
				tt.want.lookup = map[string][]uint64{}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("state:\n got  %+v\n want %+v", got, tt.want)
			}
			assertIndexConsistent(t, db)
		})
	}
}

// assertIndexConsistent checks that byPeer lists exactly the registrations each peer is in.
func assertIndexConsistent(t *testing.T, db *registrationDB) {
	t.Helper()
	want := map[uint64]map[registration]struct{}{}
	note := func(r registration, s producerSet) {
		for id := range s {
			if want[id] == nil {
				want[id] = map[registration]struct{}{}
			}
			want[id][r] = struct{}{}
		}
	}
	note(registration{category: categoryClient}, db.clients)
	for topic, s := range db.topics {
		note(registration{categoryTopic, topic, ""}, s)
	}
	for topic, chans := range db.channels {
		if len(chans) == 0 {
			t.Errorf("topic %q has an empty channel map", topic)
		}
		for ch, s := range chans {
			note(registration{categoryChannel, topic, ch}, s)
		}
	}
	if !maps.EqualFunc(db.byPeer, want, func(a, b map[registration]struct{}) bool { return maps.Equal(a, b) }) {
		t.Errorf("byPeer index = %v, want %v", db.byPeer, want)
	}
}

func TestRegistrationDBActivityAndTombstones(t *testing.T) {
	type want struct {
		lookup     []uint64 // /lookup?topic=orders producers
		nodes      []uint64 // /nodes producers
		tombstones [][]bool // /nodes tombstones, per node
		tombstoned int      // the metric: tombstoned producers
	}
	tests := []struct {
		name string
		ops  func(t *testing.T, db *registrationDB, p1, p2 *peer)
		at   time.Duration // when to read, after t0
		want want
	}{
		{
			name: "all active",
			ops:  func(*testing.T, *registrationDB, *peer, *peer) {},
			want: want{lookup: []uint64{1, 2}, nodes: []uint64{1, 2}, tombstones: [][]bool{{false, false}, {false}}},
		},
		{
			name: "inactive at exactly the timeout is still listed",
			ops:  func(*testing.T, *registrationDB, *peer, *peer) {},
			at:   testInactive,
			want: want{lookup: []uint64{1, 2}, nodes: []uint64{1, 2}, tombstones: [][]bool{{false, false}, {false}}},
		},
		{
			name: "inactive past the timeout is hidden from lookup and nodes",
			ops:  func(_ *testing.T, _ *registrationDB, _, p2 *peer) { p2.touch(t0.Add(testInactive)) },
			at:   testInactive + time.Nanosecond,
			want: want{lookup: []uint64{2}, nodes: []uint64{2}, tombstones: [][]bool{{false}}},
		},
		{
			name: "tombstone hides the node from lookup for that topic only",
			ops: func(t *testing.T, db *registrationDB, _, _ *peer) {
				if n := db.tombstone("orders", "10.0.0.1:5001", t0); n != 1 {
					t.Errorf("tombstone matched %d producers, want 1", n)
				}
			},
			at:   testLifetime - time.Nanosecond,
			want: want{lookup: []uint64{2}, nodes: []uint64{1, 2}, tombstones: [][]bool{{false, true}, {false}}, tombstoned: 1},
		},
		{
			name: "tombstone expires after the lifetime",
			ops:  func(_ *testing.T, db *registrationDB, _, _ *peer) { db.tombstone("orders", "10.0.0.1:5001", t0) },
			at:   testLifetime,
			want: want{lookup: []uint64{1, 2}, nodes: []uint64{1, 2}, tombstones: [][]bool{{false, false}, {false}}},
		},
		{
			name: "re-registering keeps the tombstone",
			ops: func(_ *testing.T, db *registrationDB, p1, _ *peer) {
				db.tombstone("orders", "10.0.0.1:5001", t0)
				db.register(p1, "orders", "")
			},
			want: want{lookup: []uint64{2}, nodes: []uint64{1, 2}, tombstones: [][]bool{{false, true}, {false}}, tombstoned: 1},
		},
		{
			name: "unregistering and registering again clears the tombstone",
			ops: func(_ *testing.T, db *registrationDB, p1, _ *peer) {
				db.tombstone("orders", "10.0.0.1:5001", t0)
				db.unregister(p1.id, "orders", "")
				db.register(p1, "orders", "")
			},
			want: want{lookup: []uint64{1, 2}, nodes: []uint64{1, 2}, tombstones: [][]bool{{false, false}, {false}}},
		},
		{
			name: "a node that matches nothing tombstones nothing",
			ops: func(t *testing.T, db *registrationDB, _, _ *peer) {
				for _, node := range []string{"10.0.0.1:4001", "10.0.0.2:5001", "10.0.0.1", ""} {
					if db.tombstone("orders", node, t0) != 0 {
						t.Errorf("tombstone matched %q", node)
					}
				}
				db.tombstone("absent", "10.0.0.1:5001", t0)
			},
			want: want{lookup: []uint64{1, 2}, nodes: []uint64{1, 2}, tombstones: [][]bool{{false, false}, {false}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := newRegistrationDB()
			p1, p2 := testPeerInfo(1), testPeerInfo(2)
			for _, p := range []*peer{p1, p2} {
				db.identify(p)
				db.register(p, "orders", "")
			}
			db.register(p1, "archive", "")
			tt.ops(t, db, p1, p2)
			now := t0.Add(tt.at)

			_, producers, ok := db.lookup("orders", now, testInactive, testLifetime)
			if !ok {
				t.Fatal("orders not found")
			}
			var got want
			got.lookup = []uint64{}
			for _, p := range producers {
				got.lookup = append(got.lookup, uint64(p.TCPPort-4000))
			}
			for _, n := range db.nodes(now, testInactive, testLifetime) {
				got.nodes = append(got.nodes, uint64(n.TCPPort-4000))
				got.tombstones = append(got.tombstones, n.Tombstones)
			}
			got.tombstoned = db.stats(now, testInactive, testLifetime).tombstones
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("\n got  %+v\n want %+v", got, tt.want)
			}
		})
	}
}

func TestTombstoneNodeForms(t *testing.T) {
	tests := []struct {
		broadcast string
		node      string
		match     bool
	}{
		{"10.0.0.1", "10.0.0.1:4151", true},
		{"host.example", "host.example:4151", true},
		{"::1", "::1:4151", true},   // NSQ's form
		{"::1", "[::1]:4151", true}, // net.JoinHostPort's
		{"::1", "[::1]:4150", false},
		{"10.0.0.1", "10.0.0.1:04151", false},
	}
	for _, tt := range tests {
		t.Run(tt.node, func(t *testing.T) {
			db := newRegistrationDB()
			db.register(newPeer(1, peerInfo{BroadcastAddress: tt.broadcast, TCPPort: 4150, HTTPPort: 4151}, t0), "orders", "")
			if got := db.tombstone("orders", tt.node, t0) == 1; got != tt.match {
				t.Errorf("tombstone(%q) on %q matched = %v, want %v", tt.node, tt.broadcast, got, tt.match)
			}
		})
	}
}

func TestRegistrationDBDebug(t *testing.T) {
	db := newRegistrationDB()
	p1 := testPeerInfo(1)
	db.identify(p1)
	db.register(p1, "orders", "archive")
	db.addTopic("empty")
	db.tombstone("orders", "10.0.0.1:5001", t0.Add(time.Second))

	got := db.debug()
	keys := slices.Sorted(maps.Keys(got))
	// Registrations without producers are not listed, as in NSQ.
	if want := []string{"channel:orders:archive", "client::", "topic:orders:"}; !slices.Equal(keys, want) {
		t.Fatalf("keys = %q, want %q", keys, want)
	}
	want := debugProducer{
		ID: "127.0.0.1:1", BroadcastAddress: "10.0.0.1", TCPPort: 4001, HTTPPort: 5001,
		Version: "1.3.0", LastUpdate: t0.UnixNano(),
	}
	if got["client::"][0] != want {
		t.Errorf("client:: = %+v, want %+v", got["client::"][0], want)
	}
	want.Tombstoned, want.TombstonedAt = true, t0.Add(time.Second).UnixNano()
	if got["topic:orders:"][0] != want {
		t.Errorf("topic:orders: = %+v, want %+v", got["topic:orders:"][0], want)
	}
}

// BenchmarkRegistrationDB measures the operations that run per request at scale: a /lookup,
// a REGISTER and a disconnect, with 100 nsqd peers each carrying 100 topics of 10 channels.
func BenchmarkRegistrationDB(b *testing.B) {
	const peers, topics, channels = 100, 100, 10
	db := newRegistrationDB()
	var all []*peer
	for i := range peers {
		p := testPeerInfo(uint64(i + 1))
		all = append(all, p)
		db.identify(p)
		for tp := range topics {
			for ch := range channels {
				db.register(p, topicName(tp), topicName(ch))
			}
		}
	}
	b.Run("lookup", func(b *testing.B) {
		for b.Loop() {
			db.lookup("t42", t0, testInactive, testLifetime)
		}
	})
	b.Run("register existing", func(b *testing.B) {
		for b.Loop() {
			db.register(all[7], "t42", "t3")
		}
	})
	b.Run("disconnect and re-register", func(b *testing.B) {
		p := all[0]
		for b.Loop() {
			db.removePeer(p.id)
			for tp := range topics {
				db.register(p, topicName(tp), "t0")
			}
		}
	})
	b.Run("nodes", func(b *testing.B) {
		for b.Loop() {
			db.nodes(t0, testInactive, testLifetime)
		}
	})
}

func topicName(i int) string { return "t" + strconv.Itoa(i) }
