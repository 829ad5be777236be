package nsqd

import (
	"context"
	"log/slog"
	"net"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/quantile"
	"github.com/ternmq/tern/internal/testutil"
)

// statsdSink is a UDP listener standing in for statsd; it keeps every datagram.
type statsdSink struct {
	addr    string
	mu      sync.Mutex
	packets [][]byte
}

func newStatsdSink(t *testing.T) *statsdSink {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &statsdSink{addr: pc.LocalAddr().String()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64*1024)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.packets = append(s.packets, append([]byte(nil), buf[:n]...))
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return s
}

func (s *statsdSink) received() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.packets...)
}

// statsdLine is one parsed line: key (prefix removed), value and type ("c" or "g").
type statsdLine struct {
	key   string
	value int64
	typ   string
}

var statsdLineRE = regexp.MustCompile(`^([^:\s]+):(-?\d+)\|(c|g)$`)

// parseStatsdLines checks that every packet ends at a line boundary and every line is
// prefix + key:value|type, and returns the lines in order.
func parseStatsdLines(t *testing.T, packets [][]byte, prefix string) []statsdLine {
	t.Helper()
	var out []statsdLine
	for _, p := range packets {
		if len(p) == 0 || p[len(p)-1] != '\n' {
			t.Fatalf("packet %q does not end with a newline", p)
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(p), "\n"), "\n") {
			m := statsdLineRE.FindStringSubmatch(l)
			if m == nil || !strings.HasPrefix(m[1], prefix) {
				t.Fatalf("line %q is not %skey:value|type", l, prefix)
			}
			v, err := strconv.ParseInt(m[2], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, statsdLine{key: strings.TrimPrefix(m[1], prefix), value: v, typ: m[3]})
		}
	}
	return out
}

func TestStatsdHostPrefix(t *testing.T) {
	tests := []struct {
		name, prefix, host string
		port               int
		want               string
	}{
		{"default", "nsq.%s", "host.example.com", 4151, "nsq.host_example_com_4151."},
		{"ip", "nsq.%s", "10.0.0.7", 4151, "nsq.10_0_0_7_4151."},
		{"ipv6 as nsq", "nsq.%s", "::1", 4151, "nsq.[__1]_4151."},
		{"empty", "", "host", 4151, ""},
		{"no host key", "stats", "host", 4151, "stats."},
		{"dot kept", "nsq.%s.", "h", 1, "nsq.h_1."},
		{"twice", "%s.nsq.%s", "h", 2, "h_2.nsq.h_2."},
		{"http disabled", "nsq.%s", "h", 0, "nsq.h_0."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := statsdHostPrefix(tt.prefix, tt.host, tt.port); got != tt.want {
				t.Errorf("statsdHostPrefix(%q, %q, %d) = %q, want %q", tt.prefix, tt.host, tt.port, got, tt.want)
			}
		})
	}
}

func TestStatsdPackets(t *testing.T) {
	tests := []struct {
		name        string
		lines       []string
		size        int
		want        []string
		wantDropped int
	}{
		{"none", nil, 10, nil, 0},
		{"one packet", []string{"a:1|c", "b:2|g"}, 12, []string{"a:1|c\nb:2|g\n"}, 0},
		{"split at line", []string{"a:1|c", "b:2|g"}, 11, []string{"a:1|c\n", "b:2|g\n"}, 0},
		{"exact fit", []string{"abc:1|c"}, 8, []string{"abc:1|c\n"}, 0},
		{"too long dropped", []string{"a:1|c", "long:12345|g", "b:2|g"}, 8, []string{"a:1|c\n", "b:2|g\n"}, 1},
		{"packs greedily", []string{"a:1|c", "b:2|c", "c:3|c", "d:4|c", "e:5|c"}, 13,
			[]string{"a:1|c\nb:2|c\n", "c:3|c\nd:4|c\n", "e:5|c\n"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			packets, dropped := statsdPackets(tt.lines, tt.size)
			var got []string
			for _, p := range packets {
				if len(p) > tt.size {
					t.Errorf("packet of %d bytes over the %d limit", len(p), tt.size)
				}
				got = append(got, string(p))
			}
			if !reflect.DeepEqual(got, tt.want) || dropped != tt.wantDropped {
				t.Errorf("got %q dropped %d, want %q dropped %d", got, dropped, tt.want, tt.wantDropped)
			}
		})
	}
}

// statsdTestReport is a snapshot with one durable and one ephemeral channel on a durable topic,
// an ephemeral topic, latency percentiles and memory stats.
func statsdTestReport(msgs, reqs uint64, gcRuns uint32) StatsReport {
	lat := &quantile.Result{Count: 4, Percentiles: []map[string]float64{{"quantile": 0.99, "value": 1500}}}
	return StatsReport{
		Topics: []TopicStats{
			{
				Name: "t", MessageCount: msgs, MessageBytes: msgs * 10, Depth: 7, BackendDepth: 2,
				E2eProcessingLatency: lat,
				Channels: []ChannelStats{
					{Name: "c", MessageCount: msgs, Depth: 3, BackendDepth: 1, InFlightCount: 4, DeferredCount: 5,
						RequeueCount: reqs, TimeoutCount: 6, ClientCount: 8, E2eProcessingLatency: lat},
					{Name: "e#ephemeral", Depth: 9, Ephemeral: true},
				},
			},
			{Name: "x#ephemeral", Depth: 11, Ephemeral: true},
		},
		Memory: &MemStats{HeapObjects: 12, HeapIdleBytes: 13, HeapInUseBytes: 14, HeapReleasedBytes: 15,
			GCPauseUsec100: 16, GCPauseUsec99: 17, GCPauseUsec95: 18, NextGCBytes: 19, GCTotalRuns: gcRuns},
	}
}

func TestStatsdLines(t *testing.T) {
	first, second := statsdTestReport(10, 2, 3), statsdTestReport(25, 2, 5)
	noMem := statsdTestReport(10, 2, 3)
	noMem.Memory = nil
	reset := statsdTestReport(4, 2, 5) // topic re-created: its counters start again

	tests := []struct {
		name             string
		excludeEphemeral bool
		reports          []StatsReport // the last one is checked
		want             map[string]string
		absent           []string
	}{
		{
			name:    "first push sends every count",
			reports: []StatsReport{first},
			want: map[string]string{
				"topic.t.message_count": "10|c", "topic.t.message_bytes": "100|c",
				"topic.t.depth": "7|g", "topic.t.backend_depth": "2|g",
				"topic.t.e2e_processing_latency_99":           "1500|g",
				"topic.t.channel.c.message_count":             "10|c",
				"topic.t.channel.c.depth":                     "3|g",
				"topic.t.channel.c.backend_depth":             "1|g",
				"topic.t.channel.c.in_flight_count":           "4|g",
				"topic.t.channel.c.deferred_count":            "5|g",
				"topic.t.channel.c.requeue_count":             "2|c",
				"topic.t.channel.c.timeout_count":             "6|c",
				"topic.t.channel.c.clients":                   "8|g",
				"topic.t.channel.c.e2e_processing_latency_99": "1500|g",
				"topic.t.channel.e#ephemeral.depth":           "9|g",
				"topic.x#ephemeral.depth":                     "11|g",
				"mem.heap_objects":                            "12|g", "mem.heap_idle_bytes": "13|g",
				"mem.heap_in_use_bytes": "14|g", "mem.heap_released_bytes": "15|g",
				"mem.gc_pause_usec_100": "16|g", "mem.gc_pause_usec_99": "17|g", "mem.gc_pause_usec_95": "18|g",
				"mem.next_gc_bytes": "19|g", "mem.gc_runs": "3|c",
			},
		},
		{
			name:    "counters are deltas, gauges values",
			reports: []StatsReport{first, second},
			want: map[string]string{
				"topic.t.message_count": "15|c", "topic.t.message_bytes": "150|c", "topic.t.depth": "7|g",
				"topic.t.channel.c.message_count": "15|c", "topic.t.channel.c.requeue_count": "0|c",
				"topic.t.channel.c.timeout_count": "0|c", "mem.gc_runs": "2|c", "mem.heap_objects": "12|g",
			},
		},
		{
			name:    "a counter that went back starts again",
			reports: []StatsReport{second, reset},
			want:    map[string]string{"topic.t.message_count": "4|c", "topic.t.message_bytes": "40|c"},
		},
		{
			name:             "ephemeral excluded",
			excludeEphemeral: true,
			reports:          []StatsReport{first},
			want:             map[string]string{"topic.t.depth": "7|g", "topic.t.channel.c.depth": "3|g"},
			absent:           []string{"#ephemeral"},
		},
		{
			name:    "no memory stats",
			reports: []StatsReport{noMem},
			want:    map[string]string{"topic.t.depth": "7|g"},
			absent:  []string{"mem."},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newStatsdPusher(testutil.Logger(t))
			cfg := statsdConfig{prefix: "nsq.h_1.", excludeEphemeral: tt.excludeEphemeral}
			var lines []string
			for _, r := range tt.reports {
				var counters map[string]uint64
				lines, counters = p.lines(cfg, r)
				p.last = counters
			}
			got := map[string]string{}
			for _, l := range lines {
				key, value, ok := strings.Cut(strings.TrimPrefix(l, cfg.prefix), ":")
				if !ok || !strings.HasPrefix(l, cfg.prefix) {
					t.Fatalf("line %q", l)
				}
				if _, dup := got[key]; dup {
					t.Errorf("%s sent twice", key)
				}
				got[key] = value
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
			for k := range got {
				for _, a := range tt.absent {
					if strings.Contains(k, a) {
						t.Errorf("%s sent, want no key with %q", k, a)
					}
				}
			}
		})
	}
}

// statsdLogRecords collects slog records; statsdLogCapture writes into one.
type statsdLogRecords struct {
	mu      sync.Mutex
	records []slog.Record
}

type statsdLogCapture struct {
	sink  *statsdLogRecords
	attrs []slog.Attr
}

func (h statsdLogCapture) Enabled(context.Context, slog.Level) bool { return true }

func (h statsdLogCapture) Handle(_ context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(h.attrs...)
	h.sink.mu.Lock()
	h.sink.records = append(h.sink.records, r)
	h.sink.mu.Unlock()
	return nil
}

func (h statsdLogCapture) WithAttrs(as []slog.Attr) slog.Handler {
	return statsdLogCapture{sink: h.sink, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h statsdLogCapture) WithGroup(string) slog.Handler { return h }

// at returns the records at level, with their attributes as strings.
func (s *statsdLogRecords) at(level slog.Level) []map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]string
	for _, r := range s.records {
		if r.Level != level {
			continue
		}
		m := map[string]string{"msg": r.Message}
		r.Attrs(func(a slog.Attr) bool {
			m[a.Key] = a.Value.String()
			return true
		})
		out = append(out, m)
	}
	return out
}

func TestStatsdPushFailureIsRateLimitedAndLosesNoCounts(t *testing.T) {
	logs := &statsdLogRecords{}
	p := newStatsdPusher(slog.New(statsdLogCapture{sink: logs}))
	bad := statsdConfig{address: "127.0.0.1", prefix: "p.", packetSize: 508} // no port: dial fails
	t0 := time.Now()
	ctx := context.Background()
	for i := range 5 {
		p.push(ctx, bad, statsdTestReport(uint64(10*(i+1)), 0, 0), t0.Add(time.Duration(i)*time.Second))
	}
	if errs := logs.at(slog.LevelError); len(errs) != 1 {
		t.Fatalf("5 failures within a minute logged %d errors, want 1: %v", len(errs), errs)
	}
	p.push(ctx, bad, statsdTestReport(60, 0, 0), t0.Add(statsdErrorLogInterval+time.Second))
	errs := logs.at(slog.LevelError)
	if len(errs) != 2 || errs[1]["suppressed_failures"] != "4" {
		t.Fatalf("after the interval want a second error counting 4 suppressed, got %v", errs)
	}

	sink := newStatsdSink(t)
	good := bad
	good.address = sink.addr
	p.push(ctx, good, statsdTestReport(70, 0, 0), t0.Add(2*statsdErrorLogInterval))
	testutil.Eventually(t, 5*time.Second, func() bool { return len(sink.received()) > 0 }, "packets to arrive")
	var count int64 = -1
	for _, l := range parseStatsdLines(t, sink.received(), "p.") {
		if l.key == "topic.t.message_count" {
			count = l.value
		}
	}
	if count != 70 {
		t.Errorf("first push after failures sent message_count %d, want the whole 70", count)
	}
	if infos := logs.at(slog.LevelInfo); len(infos) != 1 || !strings.Contains(infos[0]["msg"], "working again") {
		t.Errorf("want one recovery record, got %v", infos)
	}
}

func TestStatsdDaemonPushes(t *testing.T) {
	tests := []struct {
		name             string
		memStats         bool
		excludeEphemeral bool
	}{
		{"mem stats, ephemeral included", true, false},
		{"no mem stats, ephemeral excluded", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const packetSize = 128
			sink := newStatsdSink(t)
			n := metricsDaemon(t, nil, func(o *Options) {
				o.StatsdAddress = sink.addr
				o.StatsdInterval = 50 * time.Millisecond
				o.StatsdUDPPacketSize = packetSize
				o.StatsdMemStats = tt.memStats
				o.StatsdExcludeEphemeral = tt.excludeEphemeral
			})
			prefix := "nsq.127_0_0_1_" + strconv.Itoa(n.HTTPAddr().(*net.TCPAddr).Port) + "."
			if _, err := n.CreateTopic("sd"); err != nil {
				t.Fatal(err)
			}
			if _, err := n.CreateChannel("sd", "ch"); err != nil {
				t.Fatal(err)
			}
			sub := dialRaw(t, n.TCPAddr().String())
			sub.send(protocol.Subscribe("sd_eph#ephemeral", "e#ephemeral"))
			sub.expectOK()
			pub := dialRaw(t, n.TCPAddr().String())
			publish := func(k int) {
				t.Helper()
				for range k {
					pub.send(protocol.Publish("sd", []byte("0123456789")))
					pub.expectOK()
				}
			}

			// lines parses everything received so far; sum adds a counter's deltas, last is a
			// gauge's latest value and pushes counts the pushes seen.
			lines := func() []statsdLine {
				packets := sink.received()
				for _, p := range packets {
					if len(p) > packetSize {
						t.Fatalf("packet of %d bytes over the %d limit", len(p), packetSize)
					}
				}
				return parseStatsdLines(t, packets, prefix)
			}
			sum := func(key string) (s int64) {
				for _, l := range lines() {
					if l.key == key {
						if l.typ != "c" {
							t.Fatalf("%s sent as %s, want a counter", key, l.typ)
						}
						s += l.value
					}
				}
				return s
			}
			pushes := func() (k int) {
				for _, l := range lines() {
					if l.key == "topic.sd.depth" {
						k++
					}
				}
				return k
			}
			waitPushes := func(more int) {
				t.Helper()
				want := pushes() + more
				testutil.Eventually(t, 10*time.Second, func() bool { return pushes() >= want }, "%d more pushes", more)
			}

			publish(3)
			testutil.Eventually(t, 10*time.Second, func() bool { return sum("topic.sd.message_count") == 3 },
				"message_count deltas to add up to 3")
			publish(2)
			testutil.Eventually(t, 10*time.Second, func() bool { return sum("topic.sd.message_count") == 5 },
				"message_count deltas to add up to 5")
			waitPushes(2)
			// Cumulative values sent as counters would keep adding up.
			for key, want := range map[string]int64{
				"topic.sd.message_count":            5,
				"topic.sd.message_bytes":            50,
				"topic.sd.channel.ch.message_count": 5, // routed into the channel, consumed or not
			} {
				if got := sum(key); got != want {
					t.Errorf("%s deltas add up to %d, want %d", key, got, want)
				}
			}
			got := map[string]statsdLine{}
			for _, l := range lines() {
				got[l.key] = l
			}
			if l := got["topic.sd.channel.ch.depth"]; l.typ != "g" || l.value != 5 {
				t.Errorf("topic.sd.channel.ch.depth = %+v, want gauge 5", l)
			}
			if l := got["topic.sd.channel.ch.clients"]; l.typ != "g" || l.value != 0 {
				t.Errorf("topic.sd.channel.ch.clients = %+v, want gauge 0", l)
			}
			_, mem := got["mem.heap_objects"]
			_, gcRuns := got["mem.gc_runs"]
			if mem != tt.memStats || gcRuns != tt.memStats {
				t.Errorf("mem.heap_objects sent %v, mem.gc_runs sent %v, want %v", mem, gcRuns, tt.memStats)
			}
			for _, key := range []string{"topic.sd_eph#ephemeral.depth", "topic.sd_eph#ephemeral.channel.e#ephemeral.clients"} {
				if _, ok := got[key]; ok == tt.excludeEphemeral {
					t.Errorf("%s sent %v with --statsd-exclude-ephemeral=%v", key, ok, tt.excludeEphemeral)
				}
			}
			if len(sink.received()) < 2*pushes() {
				t.Errorf("%d packets for %d pushes: the %d-byte limit should split each push", len(sink.received()), pushes(), packetSize)
			}
		})
	}
}
