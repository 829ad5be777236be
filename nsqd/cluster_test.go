package nsqd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	gonsq "github.com/nsqio/go-nsq"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/lookupd"
)

// The cluster's timings: short enough to watch expiry happen, long enough that 100 ms pings
// keep every live node well inside the inactive timeout on a loaded machine.
const (
	clusterInactiveTimeout = 3 * time.Second
	clusterTombstone       = 1500 * time.Millisecond
	clusterPingInterval    = 100 * time.Millisecond
)

// clusterLookupd is a lookupd run in the test that can be stopped and started again on the
// same TCP address.
type clusterLookupd struct {
	t       testing.TB
	tcpAddr string
	http    string // "http://host:port" of the running instance
	stop    func()
}

// startClusterLookupd runs a lookupd with TCP on tcpAddr ("127.0.0.1:0" for any port) until
// stop is called or the test ends.
func startClusterLookupd(t testing.TB, tcpAddr string) *clusterLookupd {
	t.Helper()
	cl := &clusterLookupd{t: t}
	cl.start(tcpAddr)
	t.Cleanup(func() { cl.stop() })
	return cl
}

func (cl *clusterLookupd) start(tcpAddr string) {
	cl.t.Helper()
	opts := lookupd.NewOptions()
	opts.TCPAddress = tcpAddr
	opts.HTTPAddress = "127.0.0.1:0"
	opts.BroadcastAddress = "127.0.0.1"
	opts.InactiveProducerTimeout = clusterInactiveTimeout
	opts.TombstoneLifetime = clusterTombstone
	l, err := lookupd.New(opts, testutil.Logger(cl.t), nil)
	if err != nil {
		cl.t.Fatalf("lookupd.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	cl.tcpAddr, cl.http = l.TCPAddr().String(), "http://"+l.HTTPAddr().String()
	cl.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					cl.t.Errorf("lookupd Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				cl.t.Errorf("lookupd did not stop within 10s")
			}
		})
	}
}

// restart stops the lookupd and starts a fresh one, with an empty registry, on the same TCP
// address.
func (cl *clusterLookupd) restart() {
	cl.t.Helper()
	cl.stop()
	cl.start(cl.tcpAddr)
}

var clusterHTTP = &http.Client{Timeout: 5 * time.Second}

// get fetches path and decodes its JSON into v. It returns the status; a 404 leaves v alone.
func (cl *clusterLookupd) get(t testing.TB, path string, v any) int {
	t.Helper()
	res, err := clusterHTTP.Get(cl.http + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if res.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v in %s", path, err, body)
		}
	}
	return res.StatusCode
}

type clusterPeer struct {
	BroadcastAddress string   `json:"broadcast_address"`
	TCPPort          int      `json:"tcp_port"`
	HTTPPort         int      `json:"http_port"`
	Tombstones       []bool   `json:"tombstones"`
	Topics           []string `json:"topics"`
}

func (p clusterPeer) addr() string {
	return net.JoinHostPort(p.BroadcastAddress, strconv.Itoa(p.TCPPort))
}

// lookup returns the TCP addresses /lookup lists for topic, sorted (none for a 404).
func (cl *clusterLookupd) lookup(t testing.TB, topic string) []string {
	t.Helper()
	var res struct {
		Producers []clusterPeer `json:"producers"`
	}
	cl.get(t, "/lookup?topic="+url.QueryEscape(topic), &res)
	var addrs []string
	for _, p := range res.Producers {
		addrs = append(addrs, p.addr())
	}
	slices.Sort(addrs)
	return addrs
}

// nodes returns /nodes by TCP address.
func (cl *clusterLookupd) nodes(t testing.TB) map[string]clusterPeer {
	t.Helper()
	var res struct {
		Producers []clusterPeer `json:"producers"`
	}
	cl.get(t, "/nodes", &res)
	m := make(map[string]clusterPeer)
	for _, p := range res.Producers {
		m[p.addr()] = p
	}
	return m
}

func (cl *clusterLookupd) channels(t testing.TB, topic string) []string {
	t.Helper()
	var res struct {
		Channels []string `json:"channels"`
	}
	cl.get(t, "/channels?topic="+url.QueryEscape(topic), &res)
	slices.Sort(res.Channels)
	return res.Channels
}

// lookupIs polls until /lookup?topic lists exactly want.
func (cl *clusterLookupd) lookupIs(t testing.TB, timeout time.Duration, topic string, want ...string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	testutil.Eventually(t, timeout, func() bool { return slices.Equal(cl.lookup(t, topic), want) },
		"%s /lookup?topic=%s = %v, want %v", cl.http, topic, func() []string { return cl.lookup(t, topic) }, want)
}

// freezableProxy forwards TCP connections to a target. Frozen, it forwards nothing in either
// direction and closes nothing, new connections included, as a network partition or a
// stopped process does; thawed, it drops the connections of the frozen time and forwards
// again.
type freezableProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	frozen bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func startFreezableProxy(t testing.TB, target string) *freezableProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezableProxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.closeAll()
		p.wg.Wait()
	})
	return p
}

func (p *freezableProxy) addr() string { return p.ln.Addr().String() }

func (p *freezableProxy) isFrozen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.frozen
}

func (p *freezableProxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns[c] = struct{}{}
	p.mu.Unlock()
}

func (p *freezableProxy) closeAll() {
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
	p.mu.Unlock()
}

func (p *freezableProxy) freeze() {
	p.mu.Lock()
	p.frozen = true
	p.mu.Unlock()
}

func (p *freezableProxy) thaw() {
	p.mu.Lock()
	p.frozen = false
	p.mu.Unlock()
	p.closeAll()
}

func (p *freezableProxy) accept() {
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.track(down)
		if p.isFrozen() {
			p.wg.Go(func() { _, _ = io.Copy(io.Discard, down) })
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			down.Close()
			continue
		}
		p.track(up)
		p.wg.Go(func() { p.pipe(up, down) })
		p.wg.Go(func() { p.pipe(down, up) })
	}
}

// pipe copies src to dst while the proxy is not frozen. When src ends it closes both sides,
// unless frozen: then the other side is left hanging.
func (p *freezableProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.isFrozen() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	if !p.isFrozen() {
		src.Close()
		dst.Close()
	}
}

// clusterNode is one nsqd of the cluster.
type clusterNode struct {
	n    *NSQD
	addr string // broadcast TCP address, as lookupd lists it
	http string // broadcast_address:http_port, as tombstones name it
	stop func()
}

func startClusterNode(t testing.TB, id int64, lookupds ...string) *clusterNode {
	t.Helper()
	n, stop := startLookupNSQD(t, lookupTuning{pingInterval: clusterPingInterval}, func(o *Options) {
		o.NodeID = id
		o.BroadcastAddress = "127.0.0.1"
		o.LookupdTCPAddresses = lookupds
	}, nil)
	return &clusterNode{
		n:    n,
		addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(protocol.ListenPort(n.TCPAddr()))),
		http: net.JoinHostPort("127.0.0.1", strconv.Itoa(protocol.ListenPort(n.HTTPAddr()))),
		stop: stop,
	}
}

// TestCluster runs two lookupds and three nsqd in-process. nsqd 0 and 1 register with both
// lookupds directly; nsqd 2 reaches each through a proxy that can freeze it.
func TestCluster(t *testing.T) {
	lookupds := []*clusterLookupd{startClusterLookupd(t, "127.0.0.1:0"), startClusterLookupd(t, "127.0.0.1:0")}
	proxies := []*freezableProxy{startFreezableProxy(t, lookupds[0].tcpAddr), startFreezableProxy(t, lookupds[1].tcpAddr)}
	nodes := []*clusterNode{
		startClusterNode(t, 10, lookupds[0].tcpAddr, lookupds[1].tcpAddr),
		startClusterNode(t, 11, lookupds[0].tcpAddr, lookupds[1].tcpAddr),
		startClusterNode(t, 12, proxies[0].addr(), proxies[1].addr()),
	}
	addrs := func(idx ...int) []string {
		var s []string
		for _, i := range idx {
			s = append(s, nodes[i].addr)
		}
		slices.Sort(s)
		return s
	}
	eachLookupd := func(t *testing.T, check func(t *testing.T, cl *clusterLookupd)) {
		t.Helper()
		for _, cl := range lookupds {
			check(t, cl)
		}
	}

	createChannels(t, nodes[0].n, "shared", "c0")
	createChannels(t, nodes[1].n, "shared", "c1")
	createChannels(t, nodes[1].n, "only1")
	createChannels(t, nodes[2].n, "only2", "c2")
	// picture is what every lookupd must show while all nodes are up.
	picture := func(t *testing.T, cl *clusterLookupd, timeout time.Duration) {
		t.Helper()
		cl.lookupIs(t, timeout, "shared", addrs(0, 1)...)
		cl.lookupIs(t, timeout, "only1", addrs(1)...)
		cl.lookupIs(t, timeout, "only2", addrs(2)...)
		testutil.Eventually(t, timeout, func() bool { return len(cl.nodes(t)) == 3 }, "%s lists 3 nodes", cl.http)
	}

	t.Run("topics and channels show up on both lookupds", func(t *testing.T) {
		eachLookupd(t, func(t *testing.T, cl *clusterLookupd) {
			picture(t, cl, 5*time.Second)
			if got := cl.channels(t, "shared"); !slices.Equal(got, []string{"c0", "c1"}) {
				t.Errorf("%s /channels?topic=shared = %v", cl.http, got)
			}
			for i, want := range [][]string{{"shared"}, {"only1", "shared"}, {"only2"}} {
				node := cl.nodes(t)[nodes[i].addr]
				if got := slices.Sorted(slices.Values(node.Topics)); !slices.Equal(got, want) {
					t.Errorf("%s /nodes: node %d has topics %v, want %v", cl.http, i, got, want)
				}
				if node.HTTPPort != protocol.ListenPort(nodes[i].n.HTTPAddr()) {
					t.Errorf("%s /nodes: node %d http_port %d, want %d", cl.http, i, node.HTTPPort, protocol.ListenPort(nodes[i].n.HTTPAddr()))
				}
			}
		})
	})

	t.Run("lookup lists exactly the nodes that have the topic", func(t *testing.T) {
		createChannels(t, nodes[2].n, "shared", "c2")
		eachLookupd(t, func(t *testing.T, cl *clusterLookupd) { cl.lookupIs(t, 5*time.Second, "shared", addrs(0, 1, 2)...) })
		mustDo(t, nodes[1].n.DeleteTopic("shared"))
		eachLookupd(t, func(t *testing.T, cl *clusterLookupd) { cl.lookupIs(t, 5*time.Second, "shared", addrs(0, 2)...) })
		mustDo(t, nodes[2].n.DeleteTopic("shared"))
		createChannels(t, nodes[1].n, "shared", "c1")
		eachLookupd(t, func(t *testing.T, cl *clusterLookupd) {
			cl.lookupIs(t, 5*time.Second, "shared", addrs(0, 1)...)
			if got := cl.lookup(t, "never-created"); len(got) != 0 {
				t.Errorf("%s /lookup of an unknown topic lists %v", cl.http, got)
			}
		})
	})

	t.Run("go-nsq consumer finds and consumes from every nsqd", func(t *testing.T) {
		const topic, perNode = "fanout", 50
		var want []string
		publish := func(round string) {
			for i, node := range nodes {
				p, err := gonsq.NewProducer(node.addr, gonsq.NewConfig())
				mustDo(t, err)
				p.SetLogger(nil, gonsq.LogLevelError)
				for j := range perNode {
					body := fmt.Sprintf("%s-node%d-%d", round, i, j)
					mustDo(t, p.Publish(topic, []byte(body)))
					want = append(want, body)
				}
				p.Stop()
			}
		}
		publish("before") // the topic exists on every node before the consumer looks
		eachLookupd(t, func(t *testing.T, cl *clusterLookupd) { cl.lookupIs(t, 5*time.Second, topic, addrs(0, 1, 2)...) })

		cfg := gonsq.NewConfig()
		cfg.LookupdPollInterval = 100 * time.Millisecond
		cfg.MaxInFlight = 10
		c, err := gonsq.NewConsumer(topic, "consumer", cfg)
		mustDo(t, err)
		c.SetLogger(nil, gonsq.LogLevelError)
		var mu sync.Mutex
		got := make(map[string]int)
		c.AddHandler(gonsq.HandlerFunc(func(m *gonsq.Message) error {
			mu.Lock()
			got[string(m.Body)]++
			mu.Unlock()
			return nil
		}))
		mustDo(t, c.ConnectToNSQLookupds([]string{lookupds[0].http[len("http://"):], lookupds[1].http[len("http://"):]}))
		t.Cleanup(func() {
			c.Stop()
			<-c.StopChan
		})
		testutil.Eventually(t, 10*time.Second, func() bool { return c.Stats().Connections == 3 },
			"consumer connected to 3 nsqd, has %d", func() int { return c.Stats().Connections })
		publish("after")
		received := func() int {
			mu.Lock()
			defer mu.Unlock()
			return len(got)
		}
		// go-nsq can leave a connection that arrives after the others took the whole
		// max_in_flight at RDY 0 for its 5 s retry (go-nsq #179), hence the long wait.
		testutil.Eventually(t, 20*time.Second, func() bool { return received() == len(want) },
			"consumer received %d distinct messages of %d", received, len(want))
		mu.Lock()
		defer mu.Unlock()
		for _, body := range want {
			if got[body] == 0 {
				t.Errorf("message %q never delivered", body)
			}
		}
	})

	t.Run("tombstone hides a node for a topic for the lifetime", func(t *testing.T) {
		cl, other := lookupds[0], lookupds[1]
		// Taken before the request: the lookupd's lifetime starts while it handles it.
		tombstoned := time.Now()
		res, err := clusterHTTP.Post(cl.http+"/topic/tombstone?topic=shared&node="+url.QueryEscape(nodes[0].http), "", nil)
		mustDo(t, err)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("POST /topic/tombstone: %d", res.StatusCode)
		}
		if got := cl.lookup(t, "shared"); !slices.Equal(got, addrs(1)) {
			t.Fatalf("after the tombstone /lookup?topic=shared = %v, want %v", got, addrs(1))
		}
		node := cl.nodes(t)[nodes[0].addr]
		if len(node.Tombstones) != len(node.Topics) {
			t.Fatalf("/nodes: topics %v with tombstones %v", node.Topics, node.Tombstones)
		}
		for i, topic := range node.Topics {
			if node.Tombstones[i] != (topic == "shared") {
				t.Errorf("/nodes: topic %s tombstoned %v", topic, node.Tombstones[i])
			}
		}
		// The other lookupd, and other topics of the node, are untouched.
		if got := other.lookup(t, "shared"); !slices.Equal(got, addrs(0, 1)) {
			t.Errorf("other lookupd's /lookup?topic=shared = %v, want %v", got, addrs(0, 1))
		}
		createChannels(t, nodes[0].n, "untouched")
		cl.lookupIs(t, 5*time.Second, "untouched", addrs(0)...)

		cl.lookupIs(t, clusterTombstone+5*time.Second, "shared", addrs(0, 1)...)
		if d := time.Since(tombstoned); d < clusterTombstone {
			t.Errorf("the node came back %v after the tombstone, before the %v lifetime", d, clusterTombstone)
		}
	})

	t.Run("a restarted lookupd has the full picture within 5s", func(t *testing.T) {
		cl := lookupds[0]
		cl.restart()
		restarted := time.Now()
		picture(t, cl, 5*time.Second)
		t.Logf("full picture %v after the restart", time.Since(restarted))
		cl.lookupIs(t, time.Second, "untouched", addrs(0)...)
	})

	t.Run("a frozen nsqd is gone after the inactive timeout", func(t *testing.T) {
		for _, p := range proxies {
			p.freeze()
		}
		frozen := time.Now()
		eachLookupd(t, func(t *testing.T, cl *clusterLookupd) {
			cl.lookupIs(t, clusterInactiveTimeout+5*time.Second, "only2")
			testutil.Eventually(t, time.Second, func() bool { _, ok := cl.nodes(t)[nodes[2].addr]; return !ok },
				"%s /nodes still lists the frozen node", cl.http)
		})
		// Its last PING may have come just before the freeze.
		if d := time.Since(frozen); d < clusterInactiveTimeout-2*clusterPingInterval {
			t.Errorf("the frozen node was gone %v after the freeze, before the %v inactive timeout", d, clusterInactiveTimeout)
		}
		// The live nodes stay.
		eachLookupd(t, func(t *testing.T, cl *clusterLookupd) { cl.lookupIs(t, time.Second, "shared", addrs(0, 1)...) })

		for _, p := range proxies {
			p.thaw()
		}
		eachLookupd(t, func(t *testing.T, cl *clusterLookupd) { picture(t, cl, 10*time.Second) })
	})

	t.Run("a stopped nsqd is gone at once", func(t *testing.T) {
		nodes[1].stop()
		stopped := time.Now()
		eachLookupd(t, func(t *testing.T, cl *clusterLookupd) {
			cl.lookupIs(t, 5*time.Second, "only1")
			cl.lookupIs(t, 5*time.Second, "shared", addrs(0)...)
		})
		// Closing the connection unregisters; the inactive timeout plays no part.
		if d := time.Since(stopped); d >= clusterInactiveTimeout {
			t.Errorf("the stopped node was listed for %v", d)
		}
	})
}

// TestRegistrationOverUnixSocket has an nsqd register with a lookupd whose TCP side is a unix
// socket, as NSQ 1.2+ allows.
func TestRegistrationOverUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "tern-lk") // short: a socket path is limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cl := startClusterLookupd(t, filepath.Join(dir, "lookupd.sock"))
	node := startClusterNode(t, 1, cl.tcpAddr)
	if _, err := node.n.CreateTopic("unix_reg"); err != nil {
		t.Fatal(err)
	}
	cl.lookupIs(t, 10*time.Second, "unix_reg", node.addr)
}
