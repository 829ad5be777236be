package lookupd

import (
	"cmp"
	"context"
	"encoding/binary"
	"net"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/internal/version"
)

func TestV1RegisterAndUnregister(t *testing.T) {
	l := startLookupd(t, nil)
	p := connect(t, l)

	// PING is allowed before IDENTIFY.
	p.expectOK(protocol.Ping())

	resp := p.identify(identity(4150, 4151))
	want := identifyResponse{
		BroadcastAddress: "127.0.0.1",
		Hostname:         l.hostname,
		HTTPPort:         protocol.ListenPort(l.HTTPAddr()),
		TCPPort:          protocol.ListenPort(l.TCPAddr()),
		Version:          version.Binary,
	}
	if resp != want {
		t.Fatalf("IDENTIFY answered %+v, want %+v", resp, want)
	}

	p.expectOK(protocol.Register("orders", ""))
	p.expectOK(protocol.Register("events", "archive"))
	p.expectOK(protocol.Ping())

	var topics struct{ Topics []string }
	getJSON(t, l, "/topics", &topics)
	if !slices.Equal(topics.Topics, []string{"events", "orders"}) {
		t.Fatalf("/topics = %q", topics.Topics)
	}
	var lookup lookupResponse
	getJSON(t, l, "/lookup?topic=events", &lookup)
	if !slices.Equal(lookup.Channels, []string{"archive"}) || len(lookup.Producers) != 1 {
		t.Fatalf("/lookup?topic=events = %+v", lookup)
	}
	got := lookup.Producers[0]
	if got.BroadcastAddress != "127.0.0.1" || got.TCPPort != 4150 || got.HTTPPort != 4151 ||
		got.Version != "1.3.0" || got.Hostname != "test-host" || got.TopologyZone != "z1" ||
		got.TopologyRegion != "r1" || got.RemoteAddress != p.conn.LocalAddr().String() {
		t.Fatalf("producer = %+v", got)
	}

	// UNREGISTER of a channel leaves the peer on the topic, and the channel's key in place.
	p.expectOK(protocol.UnRegister("events", "archive"))
	getJSON(t, l, "/lookup?topic=events", &lookup)
	if !slices.Equal(lookup.Channels, []string{"archive"}) || len(lookup.Producers) != 1 {
		t.Fatalf("after UNREGISTER events archive: /lookup = %+v", lookup)
	}
	// UNREGISTER of a topic takes the peer off it; the key stays.
	p.expectOK(protocol.UnRegister("events", ""))
	if ports, _ := lookupPorts(t, l, "events"); len(ports) != 0 {
		t.Fatalf("after UNREGISTER events: producers %v, want none", ports)
	}
	getJSON(t, l, "/topics", &topics)
	if !slices.Equal(topics.Topics, []string{"events", "orders"}) {
		t.Fatalf("/topics after UNREGISTER = %q", topics.Topics)
	}
	// Registering twice is harmless, and unregistering what is not registered too.
	p.expectOK(protocol.Register("orders", ""))
	p.expectOK(protocol.UnRegister("nothing", "here"))
	if ports, _ := lookupPorts(t, l, "orders"); !slices.Equal(ports, []int{4150}) {
		t.Fatalf("/lookup?topic=orders ports = %v", ports)
	}
}

// TestV1Errors sends every kind of bad input, each on its own connection, and checks that the
// connection gets NSQ's error and is closed while a well-behaved nsqd keeps being served.
func TestV1Errors(t *testing.T) {
	l := startLookupd(t, nil)
	good := registerPeer(t, l, 4150, 4151, "good/ch")

	size := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	identifyWith := func(body string) []byte {
		return protocol.AppendV1Response([]byte("IDENTIFY\n"), []byte(body))
	}
	longTopic := strings.Repeat("t", protocol.MaxNameLength+1)
	tests := []struct {
		name string
		// magic is sent first; empty means the V1 magic.
		magic    string
		identify bool   // IDENTIFY correctly before sending input
		input    []byte // sent in one write
		// closeWrite shuts the test's side for writing after input, for truncated input.
		closeWrite bool
		want       string
	}{
		{name: "bad magic", magic: "  V2", want: "E_BAD_PROTOCOL"},
		{name: "HTTP on the TCP port", magic: "GET / HTTP/1.1\r\nHost: x\r\n\r\n", want: "E_BAD_PROTOCOL"},
		{name: "binary magic", magic: "\x00\xff\x00\xff", want: "E_BAD_PROTOCOL"},
		{name: "unknown command", input: []byte("FOO bar\n"), want: "E_INVALID invalid command FOO"},
		{name: "commands are case sensitive", input: []byte("ping\n"), want: "E_INVALID invalid command ping"},
		{name: "empty line", input: []byte("\n"), want: "E_INVALID invalid command "},
		{name: "garbage bytes", input: []byte("\x00\x01\xfe\n"), want: "E_INVALID invalid command \x00\x01\xfe"},
		{name: "line too long", input: []byte(strings.Repeat("A", 2000)), want: "E_INVALID command line longer than 1024 bytes"},
		{name: "REGISTER before IDENTIFY", input: []byte("REGISTER t\n"), want: "E_INVALID client must IDENTIFY"},
		{name: "UNREGISTER before IDENTIFY", input: []byte("UNREGISTER t c\n"), want: "E_INVALID client must IDENTIFY"},
		{name: "second IDENTIFY", identify: true, input: identifyWith(`{}`), want: "E_INVALID cannot IDENTIFY again"},
		{name: "REGISTER without topic", identify: true, input: []byte("REGISTER\n"), want: "E_INVALID REGISTER insufficient number of params"},
		{name: "UNREGISTER without topic", identify: true, input: []byte("UNREGISTER \n"), want: "E_INVALID UNREGISTER insufficient number of params"},
		{name: "REGISTER bad topic", identify: true, input: []byte("REGISTER bad!topic\n"), want: "E_BAD_TOPIC REGISTER topic name 'bad!topic' is not valid"},
		{name: "REGISTER topic too long", identify: true, input: []byte("REGISTER " + longTopic + "\n"), want: "E_BAD_TOPIC REGISTER topic name '" + longTopic + "' is not valid"},
		{name: "REGISTER empty topic", identify: true, input: []byte("REGISTER  ch\n"), want: "E_BAD_TOPIC REGISTER topic name '' is not valid"},
		{name: "REGISTER bad channel", identify: true, input: []byte("REGISTER t bad*ch\n"), want: "E_BAD_CHANNEL REGISTER channel name 'bad*ch' is not valid"},
		{name: "UNREGISTER bad topic", identify: true, input: []byte("UNREGISTER a#b\n"), want: "E_BAD_TOPIC UNREGISTER topic name 'a#b' is not valid"},
		{name: "UNREGISTER bad channel", identify: true, input: []byte("UNREGISTER t #ephemeral\n"), want: "E_BAD_CHANNEL UNREGISTER channel name '#ephemeral' is not valid"},
		{name: "IDENTIFY huge size", input: append([]byte("IDENTIFY\n"), size(0x7fffffff)...), want: "E_BAD_BODY IDENTIFY body too big 2147483647 > 65536"},
		{name: "IDENTIFY negative size", input: append([]byte("IDENTIFY\n"), size(0xffffffff)...), want: "E_BAD_BODY IDENTIFY invalid body size -1"},
		{name: "IDENTIFY most negative size", input: append([]byte("IDENTIFY\n"), size(0x80000000)...), want: "E_BAD_BODY IDENTIFY invalid body size -2147483648"},
		{name: "IDENTIFY zero size", input: append([]byte("IDENTIFY\n"), size(0)...), want: "E_BAD_BODY IDENTIFY invalid body size 0"},
		{name: "IDENTIFY truncated size", input: []byte("IDENTIFY\n\x00\x00"), closeWrite: true, want: "E_BAD_BODY IDENTIFY failed to read body size"},
		{name: "IDENTIFY truncated body", input: append(append([]byte("IDENTIFY\n"), size(100)...), "{}"...), closeWrite: true, want: "E_BAD_BODY IDENTIFY failed to read body"},
		{name: "IDENTIFY not JSON", input: identifyWith("hello"), want: "E_BAD_BODY IDENTIFY failed to decode JSON body"},
		{name: "IDENTIFY wrong field type", input: identifyWith(`{"broadcast_address":"h","tcp_port":"4150","http_port":4151,"version":"1"}`), want: "E_BAD_BODY IDENTIFY failed to decode JSON body"},
		{name: "IDENTIFY missing version", input: identifyWith(`{"broadcast_address":"h","tcp_port":4150,"http_port":4151}`), want: "E_BAD_BODY IDENTIFY missing fields"},
		{name: "IDENTIFY missing address", input: identifyWith(`{"tcp_port":4150,"http_port":4151,"version":"1"}`), want: "E_BAD_BODY IDENTIFY missing fields"},
		{name: "IDENTIFY null", input: identifyWith(`null`), want: "E_BAD_BODY IDENTIFY missing fields"},
		{name: "IDENTIFY negative port", input: identifyWith(`{"broadcast_address":"h","tcp_port":-1,"http_port":4151,"version":"1"}`), want: "E_BAD_BODY IDENTIFY invalid port"},
		{name: "IDENTIFY port too big", input: identifyWith(`{"broadcast_address":"h","tcp_port":4150,"http_port":70000,"version":"1"}`), want: "E_BAD_BODY IDENTIFY invalid port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := dial(t, l)
			magic := cmp.Or(tt.magic, protocol.MagicV1)
			p.write([]byte(magic))
			if tt.identify {
				p.identify(identity(5150, 5151))
			}
			if len(tt.input) > 0 {
				p.write(tt.input)
			}
			if tt.closeWrite {
				if err := p.conn.(*net.TCPConn).CloseWrite(); err != nil {
					t.Fatal(err)
				}
			}
			if got := p.mustRead(); got != tt.want {
				t.Fatalf("answer = %q, want %q", got, tt.want)
			}
			p.expectClosed()

			// The bad peer is gone from the registry; the good one is served as before.
			good.expectOK(protocol.Ping())
			if ports, _ := lookupPorts(t, l, "good"); !slices.Equal(ports, []int{4150}) {
				t.Fatalf("/lookup?topic=good ports = %v, want [4150]", ports)
			}
			testutil.Eventually(t, ioTimeout, func() bool {
				var nodes struct{ Producers []nodeInfo }
				getJSON(t, l, "/nodes", &nodes)
				return len(nodes.Producers) == 1
			}, "the bad peer is still in /nodes")
		})
	}
}

// TestSilentPeers checks that a connection that never sends the magic, one that sends only
// the magic and an nsqd that stops pinging are all dropped after the inactive timeout, the
// last with its registrations, and that lookupd goes on serving.
func TestSilentPeers(t *testing.T) {
	const timeout = 300 * time.Millisecond
	l := startLookupd(t, func(o *Options) { o.InactiveProducerTimeout = timeout })

	mute := dial(t, l)
	magicOnly := connect(t, l)
	stopped := registerPeer(t, l, 4150, 4151, "orders/archive")
	start := time.Now()
	for name, p := range map[string]*testPeer{"no magic": mute, "magic only": magicOnly, "stopped pinging": stopped} {
		p.expectClosed()
		if elapsed := time.Since(start); elapsed > timeout+3*time.Second {
			t.Errorf("%s: closed after %v, want about %v", name, elapsed, timeout)
		}
	}
	if ports, status := lookupPorts(t, l, "orders"); status != 200 || len(ports) != 0 {
		t.Fatalf("/lookup?topic=orders after the nsqd went silent: %d %v, want 200 and no producers", status, ports)
	}

	// lookupd still serves a new nsqd.
	fresh := registerPeer(t, l, 4250, 4251, "orders")
	if ports, _ := lookupPorts(t, l, "orders"); !slices.Equal(ports, []int{4250}) {
		t.Fatalf("/lookup?topic=orders ports = %v, want [4250]", ports)
	}
	fresh.expectOK(protocol.Ping())
}

// TestPingKeepsPeerConnected checks that an nsqd that pings within the timeout stays
// connected and listed well past the timeout.
func TestPingKeepsPeerConnected(t *testing.T) {
	const timeout = 400 * time.Millisecond
	l := startLookupd(t, func(o *Options) { o.InactiveProducerTimeout = timeout })
	p := registerPeer(t, l, 4150, 4151, "orders")
	deadline := time.Now().Add(3 * timeout)
	for time.Now().Before(deadline) {
		p.expectOK(protocol.Ping())
		if ports, _ := lookupPorts(t, l, "orders"); !slices.Equal(ports, []int{4150}) {
			t.Fatalf("/lookup?topic=orders ports = %v while pinging", ports)
		}
		// Pace the pings well inside the timeout; this waits for time to pass, it does not
		// synchronise with anything.
		<-time.After(timeout / 4)
	}
}

func TestDisconnectRemovesProducerKeepsKeys(t *testing.T) {
	l := startLookupd(t, nil)
	a := registerPeer(t, l, 4150, 4151, "orders/archive", "orders/billing")
	registerPeer(t, l, 4250, 4251, "orders/archive")
	if ports, _ := lookupPorts(t, l, "orders"); !slices.Equal(ports, []int{4150, 4250}) {
		t.Fatalf("/lookup ports = %v, want [4150 4250]", ports)
	}
	_ = a.conn.Close()
	testutil.Eventually(t, ioTimeout, func() bool {
		ports, _ := lookupPorts(t, l, "orders")
		return slices.Equal(ports, []int{4250})
	}, "the disconnected nsqd is still listed")

	var channels struct{ Channels []string }
	getJSON(t, l, "/channels?topic=orders", &channels)
	if !slices.Equal(channels.Channels, []string{"archive", "billing"}) {
		t.Fatalf("/channels = %q, want both channels kept", channels.Channels)
	}
	var nodes struct{ Producers []nodeInfo }
	getJSON(t, l, "/nodes", &nodes)
	if len(nodes.Producers) != 1 || nodes.Producers[0].TCPPort != 4250 {
		t.Fatalf("/nodes = %+v", nodes.Producers)
	}
}

func TestEphemeralRegistrations(t *testing.T) {
	l := startLookupd(t, nil)
	p := registerPeer(t, l, 4150, 4151, "eph#ephemeral/ch#ephemeral", "eph#ephemeral/durable", "orders/tmp#ephemeral")
	channels := func(topic string) []string {
		var c struct{ Channels []string }
		getJSON(t, l, "/channels?topic="+strings.ReplaceAll(topic, "#", "%23"), &c)
		return c.Channels
	}
	topics := func() []string {
		var tp struct{ Topics []string }
		getJSON(t, l, "/topics", &tp)
		return tp.Topics
	}

	// UNREGISTER of the last producer of an ephemeral channel removes its key.
	p.expectOK(protocol.UnRegister("eph#ephemeral", "ch#ephemeral"))
	if got := channels("eph#ephemeral"); !slices.Equal(got, []string{"durable"}) {
		t.Fatalf("channels of eph#ephemeral = %q, want [durable]", got)
	}
	// UNREGISTER of the last producer of an ephemeral topic removes it and its empty
	// channels.
	p.expectOK(protocol.UnRegister("eph#ephemeral", ""))
	if got := topics(); !slices.Equal(got, []string{"orders"}) {
		t.Fatalf("/topics = %q, want [orders]", got)
	}
	if got := channels("eph#ephemeral"); len(got) != 0 {
		t.Fatalf("channels of the removed ephemeral topic = %q", got)
	}

	// A disconnect removes ephemeral keys too (NSQ keeps them until deleted over HTTP) and
	// keeps the others.
	p.expectOK(protocol.Register("eph#ephemeral", "ch"))
	_ = p.conn.Close()
	testutil.Eventually(t, ioTimeout, func() bool {
		return slices.Equal(topics(), []string{"orders"}) && len(channels("orders")) == 0
	}, "ephemeral keys not removed on disconnect: topics %q, channels of orders %q", topics, func() []string { return channels("orders") })
}

func TestShutdownClosesPeers(t *testing.T) {
	opts := NewOptions()
	opts.TCPAddress, opts.HTTPAddress = "127.0.0.1:0", "127.0.0.1:0"
	l, err := New(opts, testutil.Logger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()

	p := registerPeer(t, l, 4150, 4151, "orders")
	idle := connect(t, l)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s")
	}
	// Nothing the daemon started outlives Run.
	if stacks := daemonGoroutines(); stacks != "" {
		t.Errorf("goroutines left after Run returned:\n%s", stacks)
	}
	p.expectClosed()
	idle.expectClosed()
	if _, err := net.DialTimeout("tcp", l.TCPAddr().String(), time.Second); err == nil {
		t.Error("the TCP listener still accepts after Run returned")
	}
	if err := l.Run(context.Background()); err != ErrAlreadyRun {
		t.Errorf("second Run = %v, want ErrAlreadyRun", err)
	}
}

// daemonGoroutines returns the stacks of running goroutines that are in a Lookupd method, or
// "" when there are none. The test's own goroutine is excluded.
func daemonGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "lookupd.(*Lookupd)") && !strings.Contains(g, "daemonGoroutines") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}
