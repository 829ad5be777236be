package nsqd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/julienschmidt/httprouter"
	gonsq "github.com/nsqio/go-nsq"

	"github.com/ternmq/tern/internal/httpapi"
	"github.com/ternmq/tern/internal/testutil"
)

// httpDaemon is an nsqd running in-process with its TCP and HTTP listeners on 127.0.0.1:0,
// and an HTTP client that keeps its connections alive.
type httpDaemon struct {
	n      *NSQD
	base   string // "http://127.0.0.1:port"
	tcp    string
	client *http.Client
}

// startHTTPDaemon starts an nsqd with a fresh data path. It is stopped when the test ends;
// Run must return nil within 15 seconds.
func startHTTPDaemon(t testing.TB, mutate func(*Options)) *httpDaemon {
	t.Helper()
	n, _ := startTestDaemon(t, t.TempDir(), withHTTP(false, mutate))
	// Registered after the daemon's cleanup, so it runs first: idle keep-alive connections
	// are closed before the daemon shuts down, as a client going away would.
	transport := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(transport.CloseIdleConnections)
	return &httpDaemon{
		n:      n,
		base:   "http://" + n.HTTPAddr().String(),
		tcp:    n.TCPAddr().String(),
		client: &http.Client{Transport: transport, Timeout: 30 * time.Second},
	}
}

// httpResult is an answer, its body read.
type httpResult struct {
	status int
	body   string
	header http.Header
}

// chunked hides a reader's length from net/http, so the request body is sent chunked, with
// no Content-Length, as a streaming client sends it.
type chunked struct{ r io.Reader }

func (c chunked) Read(p []byte) (int, error) { return c.r.Read(p) }

// do sends a request to the daemon and checks that the answer carries NSQ's header, which
// every answer must.
func (d *httpDaemon) do(t testing.TB, method, path string, body io.Reader) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, d.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	if got := res.Header.Get("X-NSQ-Content-Type"); got != "nsq; version=1.0" {
		t.Errorf("%s %s: X-NSQ-Content-Type %q, want %q", method, path, got, "nsq; version=1.0")
	}
	return httpResult{status: res.StatusCode, body: string(b), header: res.Header}
}

// ok sends a request that must answer 200 and returns the body.
func (d *httpDaemon) ok(t testing.TB, method, path string, body io.Reader) string {
	t.Helper()
	r := d.do(t, method, path, body)
	if r.status != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, path, r.status, r.body)
	}
	return r.body
}

// statsJSON fetches /stats?format=json with extra query parameters.
func (d *httpDaemon) statsJSON(t testing.TB, params string) []byte {
	t.Helper()
	return []byte(d.ok(t, "GET", "/stats?format=json"+params, nil))
}

// binaryMPUB is the body of /mpub?binary=true: a count, then size-prefixed messages.
func binaryMPUB(msgs ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(msgs)))
	for _, m := range msgs {
		b = binary.BigEndian.AppendUint32(b, uint32(len(m)))
		b = append(b, m...)
	}
	return b
}

// smallHTTPLimits gives limits small enough to cross in a test.
func smallHTTPLimits(o *Options) {
	o.MaxMsgSize = 100
	o.MaxBodySize = 1000
}

// TestHTTPErrors checks every error answer of every endpoint: status, exact body and
// Content-Type.
func TestHTTPErrors(t *testing.T) {
	d := startHTTPDaemon(t, smallHTTPLimits)
	d.ok(t, "POST", "/topic/create?topic=exists", nil)
	big := strings.Repeat("x", 101)
	bigBody := strings.Repeat("y", 1001)
	tests := []struct {
		name, method, path string
		body               io.Reader
		status             int
		message            string // the {"message":...} expected
	}{
		{"unknown path", "GET", "/nowhere", nil, 404, "NOT_FOUND"},
		{"wrong method", "PUT", "/ping", nil, 405, "METHOD_NOT_ALLOWED"},
		{"pub GET", "GET", "/pub?topic=t", nil, 405, "METHOD_NOT_ALLOWED"},

		{"pub empty", "POST", "/pub?topic=t", strings.NewReader(""), 400, "MSG_EMPTY"},
		{"pub no topic", "POST", "/pub", strings.NewReader("m"), 400, "MISSING_ARG_TOPIC"},
		{"pub bad topic", "POST", "/pub?topic=bad!", strings.NewReader("m"), 400, "INVALID_TOPIC"},
		{"pub empty topic", "POST", "/pub?topic=", strings.NewReader("m"), 400, "INVALID_TOPIC"},
		{"pub bad query", "POST", "/pub?topic=t&x=%zz", strings.NewReader("m"), 400, "INVALID_REQUEST"},
		{"pub defer not a number", "POST", "/pub?topic=t&defer=soon", strings.NewReader("m"), 400, "INVALID_DEFER"},
		{"pub defer negative", "POST", "/pub?topic=t&defer=-1", strings.NewReader("m"), 400, "INVALID_DEFER"},
		{"pub defer over max-req-timeout", "POST", "/pub?topic=t&defer=3600001", strings.NewReader("m"), 400, "INVALID_DEFER"},
		{"pub defer overflowing", "POST", "/pub?topic=t&defer=9223372036854775", strings.NewReader("m"), 400, "INVALID_DEFER"},
		{"pub too big", "POST", "/pub?topic=t", strings.NewReader(big), 413, "MSG_TOO_BIG"},
		{"pub too big chunked", "POST", "/pub?topic=t", chunked{strings.NewReader(big)}, 413, "MSG_TOO_BIG"},
		{"pub too big before topic check", "POST", "/pub", strings.NewReader(big), 413, "MSG_TOO_BIG"},

		{"mpub no topic", "POST", "/mpub", strings.NewReader("a\nb"), 400, "MISSING_ARG_TOPIC"},
		{"mpub bad topic", "POST", "/mpub?topic=a/b", strings.NewReader("a\nb"), 400, "INVALID_TOPIC"},
		{"mpub bad query", "POST", "/mpub?topic=%", strings.NewReader("a\nb"), 400, "INVALID_REQUEST"},
		{"mpub body too big", "POST", "/mpub?topic=t", strings.NewReader(bigBody), 413, "BODY_TOO_BIG"},
		{"mpub body too big chunked", "POST", "/mpub?topic=t", chunked{strings.NewReader(bigBody)}, 413, "BODY_TOO_BIG"},
		{"mpub line too big", "POST", "/mpub?topic=t", strings.NewReader("ok\n" + big + "\nok"), 413, "MSG_TOO_BIG"},
		{"mpub binary short", "POST", "/mpub?topic=t&binary=true", bytes.NewReader([]byte{0, 0, 1}), 413, "BAD_BODY"},
		{"mpub binary zero count", "POST", "/mpub?topic=t&binary=1", bytes.NewReader(binaryMPUB()), 413, "BAD_BODY"},
		{"mpub binary message too big", "POST", "/mpub?topic=t&binary=true", bytes.NewReader(binaryMPUB("a", big)), 413, "BAD_MESSAGE"},
		{"mpub binary count beyond body", "POST", "/mpub?topic=t&binary=true", bytes.NewReader(binaryMPUB("abc", "def")[:12]), 413, "BAD_MESSAGE"},
		{"mpub binary count beyond max body", "POST", "/mpub?topic=t&binary=true", bytes.NewReader(append([]byte{0, 1, 0, 0}, binaryMPUB("abc")[4:]...)), 413, "BAD_BODY"},
		{"mpub binary truncated", "POST", "/mpub?topic=t&binary=true", bytes.NewReader(binaryMPUB("abcdefgh", "x")[:20]), 413, "BAD_MESSAGE"},
		{"mpub binary trailing bytes", "POST", "/mpub?topic=t&binary=true", bytes.NewReader(append(binaryMPUB("abc"), 'z')), 413, "BAD_BODY"},
		{"mpub binary=false is text", "POST", "/mpub?topic=t&binary=false", bytes.NewReader(append(binaryMPUB("abc"), []byte("\n"+big)...)), 413, "MSG_TOO_BIG"},

		{"stats bad query", "GET", "/stats?topic=%zz", nil, 400, "INVALID_REQUEST"},

		{"topic create no topic", "POST", "/topic/create", nil, 400, "MISSING_ARG_TOPIC"},
		{"topic create bad topic", "POST", "/topic/create?topic=no%20spaces", nil, 400, "INVALID_TOPIC"},
		{"topic create bad query", "POST", "/topic/create?topic=%", nil, 400, "INVALID_REQUEST"},
		{"topic delete no topic", "POST", "/topic/delete", nil, 400, "MISSING_ARG_TOPIC"},
		{"topic delete unknown", "POST", "/topic/delete?topic=nope", nil, 404, "TOPIC_NOT_FOUND"},
		{"topic empty no topic", "POST", "/topic/empty", nil, 400, "MISSING_ARG_TOPIC"},
		{"topic empty bad topic", "POST", "/topic/empty?topic=x*", nil, 400, "INVALID_TOPIC"},
		{"topic empty unknown", "POST", "/topic/empty?topic=nope", nil, 404, "TOPIC_NOT_FOUND"},
		{"topic pause no topic", "POST", "/topic/pause", nil, 400, "MISSING_ARG_TOPIC"},
		{"topic pause unknown", "POST", "/topic/pause?topic=nope", nil, 404, "TOPIC_NOT_FOUND"},
		{"topic unpause unknown", "POST", "/topic/unpause?topic=nope", nil, 404, "TOPIC_NOT_FOUND"},
		{"topic create GET", "GET", "/topic/create?topic=t", nil, 405, "METHOD_NOT_ALLOWED"},

		{"channel create no topic", "POST", "/channel/create?channel=c", nil, 400, "MISSING_ARG_TOPIC"},
		{"channel create bad topic", "POST", "/channel/create?topic=x*&channel=c", nil, 400, "INVALID_ARG_TOPIC"},
		{"channel create no channel", "POST", "/channel/create?topic=exists", nil, 400, "MISSING_ARG_CHANNEL"},
		{"channel create bad channel", "POST", "/channel/create?topic=exists&channel=c*", nil, 400, "INVALID_ARG_CHANNEL"},
		{"channel create unknown topic", "POST", "/channel/create?topic=nope&channel=c", nil, 404, "TOPIC_NOT_FOUND"},
		{"channel create bad query", "POST", "/channel/create?topic=%", nil, 400, "INVALID_REQUEST"},
		{"channel delete unknown topic", "POST", "/channel/delete?topic=nope&channel=c", nil, 404, "TOPIC_NOT_FOUND"},
		{"channel delete unknown channel", "POST", "/channel/delete?topic=exists&channel=c", nil, 404, "CHANNEL_NOT_FOUND"},
		{"channel delete no channel", "POST", "/channel/delete?topic=exists", nil, 400, "MISSING_ARG_CHANNEL"},
		{"channel empty unknown topic", "POST", "/channel/empty?topic=nope&channel=c", nil, 404, "TOPIC_NOT_FOUND"},
		{"channel empty unknown channel", "POST", "/channel/empty?topic=exists&channel=c", nil, 404, "CHANNEL_NOT_FOUND"},
		{"channel pause unknown channel", "POST", "/channel/pause?topic=exists&channel=c", nil, 404, "CHANNEL_NOT_FOUND"},
		{"channel unpause unknown channel", "POST", "/channel/unpause?topic=exists&channel=c", nil, 404, "CHANNEL_NOT_FOUND"},
		{"channel unpause bad channel", "POST", "/channel/unpause?topic=exists&channel=", nil, 400, "INVALID_ARG_CHANNEL"},

		{"config unknown option", "GET", "/config/no_such_option", nil, 400, "INVALID_OPTION"},
		{"config flag name is not the key", "GET", "/config/node-id", nil, 400, "INVALID_OPTION"},
		{"config read-only option", "PUT", "/config/mem_queue_size", strings.NewReader("1"), 400, "INVALID_OPTION"},
		{"config empty value", "PUT", "/config/log_level", strings.NewReader(""), 413, "INVALID_VALUE"},
		{"config value too big", "PUT", "/config/log_level", strings.NewReader(big), 413, "INVALID_VALUE"},
		{"config bad level", "PUT", "/config/log_level", strings.NewReader("loud"), 400, "INVALID_VALUE"},
		{"config lookupd not json", "PUT", "/config/nsqlookupd_tcp_addresses", strings.NewReader("127.0.0.1:4160"), 400, "INVALID_VALUE"},
		{"config lookupd not host:port", "PUT", "/config/nsqlookupd_tcp_addresses", strings.NewReader(`["lookupd"]`), 400, "INVALID_VALUE"},
		{"config DELETE", "DELETE", "/config/log_level", nil, 405, "METHOD_NOT_ALLOWED"},

		{"setblockrate no rate", "PUT", "/debug/setblockrate", nil, 400, "INVALID_BLOCK_RATE"},
		{"setblockrate bad rate", "PUT", "/debug/setblockrate?rate=often", nil, 400, "INVALID_BLOCK_RATE"},
		{"freememory GET", "GET", "/debug/freememory", nil, 405, "METHOD_NOT_ALLOWED"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := d.do(t, tc.method, tc.path, tc.body)
			want := `{"message":"` + tc.message + `"}`
			if r.status != tc.status || r.body != want {
				t.Errorf("got %d %s, want %d %s", r.status, r.body, tc.status, want)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
	// None of the refused publishes reached a topic.
	if n := d.n.Topic("t"); n != nil {
		t.Errorf("a refused publish created or filled topic t (depth %d)", n.Depth())
	}
	if got := d.n.getOpts().LogLevel; got != "info" {
		t.Errorf("a refused PUT changed log_level to %q", got)
	}
}

// TestHTTPPingInfoAndStateErrors covers /ping's answers, /info, the 503 while exiting and the
// 403 while TLS is required.
func TestHTTPPingInfoAndStateErrors(t *testing.T) {
	d := startHTTPDaemon(t, nil)
	r := d.do(t, "GET", "/ping", nil)
	if r.status != 200 || r.body != "OK" || r.header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("/ping: %d %q %q", r.status, r.body, r.header.Get("Content-Type"))
	}

	d.n.storageResult(errors.New("write topic log: no space left on device"))
	r = d.do(t, "GET", "/ping", nil)
	if r.status != 500 || r.body != "NOK - write topic log: no space left on device" {
		t.Errorf("/ping while storage fails: %d %q", r.status, r.body)
	}
	d.n.storageResult(nil)
	if body := d.ok(t, "GET", "/ping", nil); body != "OK" {
		t.Errorf("/ping after recovery: %q", body)
	}

	// Shutting down: publishing to a new topic and /ping answer as NSQ does while exiting.
	d.n.exiting.Store(true)
	r = d.do(t, "POST", "/pub?topic=late", strings.NewReader("m"))
	if r.status != 503 || r.body != `{"message":"EXITING"}` {
		t.Errorf("/pub while exiting: %d %s", r.status, r.body)
	}
	r = d.do(t, "POST", "/topic/create?topic=late", nil)
	if r.status != 503 || r.body != `{"message":"EXITING"}` {
		t.Errorf("/topic/create while exiting: %d %s", r.status, r.body)
	}
	if r = d.do(t, "GET", "/ping", nil); r.status != 500 || r.body != "NOK - exiting" {
		t.Errorf("/ping while exiting: %d %q", r.status, r.body)
	}
	d.n.exiting.Store(false)

	// --tls-required=true: the plain listener refuses everything, naming the HTTPS port.
	o := *d.n.getOpts()
	o.TLSRequired = "true"
	o.HTTPSAddress = "0.0.0.0:4152"
	d.n.opts.Store(&o)
	for _, path := range []string{"/ping", "/stats", "/nowhere"} {
		r = d.do(t, "GET", path, nil)
		if r.status != 403 || r.body != `{"message":"TLS_REQUIRED","https_port":4152}` {
			t.Errorf("GET %s with TLS required: %d %s", path, r.status, r.body)
		}
	}
	o.TLSRequired = "tcp-https" // TCP and HTTPS only: plain HTTP stays open
	d.n.opts.Store(&o)
	d.ok(t, "GET", "/ping", nil)
}

func TestHTTPInfo(t *testing.T) {
	tests := []struct {
		name               string
		mutate             func(*Options)
		tcpPort, httpPort  int // 0: the real listener's
		zone, region, addr string
	}{
		{"real ports", nil, 0, 0, "", "", "bcast.example"},
		{"broadcast ports", func(o *Options) {
			o.BroadcastTCPPort, o.BroadcastHTTPPort = 14150, 14151
			o.TopologyZone, o.TopologyRegion = "z1", "r1"
		}, 14150, 14151, "z1", "r1", "bcast.example"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := startHTTPDaemon(t, func(o *Options) {
				o.BroadcastAddress = "bcast.example"
				o.MaxHeartbeatInterval = 45 * time.Second
				if tc.mutate != nil {
					tc.mutate(o)
				}
			})
			body := d.ok(t, "GET", "/info", nil)
			var keys map[string]any
			if err := json.Unmarshal([]byte(body), &keys); err != nil {
				t.Fatal(err)
			}
			checkKeys(t, "/info", keys, "version", "broadcast_address", "hostname", "http_port", "tcp_port",
				"start_time", "max_heartbeat_interval", "max_output_buffer_size", "max_output_buffer_timeout",
				"max_deflate_level", "topology_zone", "topology_region")
			var info struct {
				Version                string `json:"version"`
				BroadcastAddress       string `json:"broadcast_address"`
				Hostname               string `json:"hostname"`
				HTTPPort               int    `json:"http_port"`
				TCPPort                int    `json:"tcp_port"`
				StartTime              int64  `json:"start_time"`
				MaxHeartbeatInterval   int64  `json:"max_heartbeat_interval"`
				MaxOutputBufferSize    int64  `json:"max_output_buffer_size"`
				MaxOutputBufferTimeout int64  `json:"max_output_buffer_timeout"`
				MaxDeflateLevel        int    `json:"max_deflate_level"`
				TopologyZone           string `json:"topology_zone"`
				TopologyRegion         string `json:"topology_region"`
			}
			dec := json.NewDecoder(strings.NewReader(body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&info); err != nil {
				t.Fatal(err)
			}
			wantTCP, wantHTTP := tc.tcpPort, tc.httpPort
			if wantTCP == 0 {
				wantTCP = d.n.TCPAddr().(*net.TCPAddr).Port
			}
			if wantHTTP == 0 {
				wantHTTP = d.n.HTTPAddr().(*net.TCPAddr).Port
			}
			if info.Version != "1.3.0" || info.BroadcastAddress != tc.addr || info.Hostname == "" ||
				info.TCPPort != wantTCP || info.HTTPPort != wantHTTP ||
				info.StartTime != d.n.startTime.Unix() ||
				info.MaxHeartbeatInterval != int64(45*time.Second) ||
				info.MaxOutputBufferSize != 64*1024 ||
				info.MaxOutputBufferTimeout != int64(30*time.Second) ||
				info.MaxDeflateLevel != 6 || info.TopologyZone != tc.zone || info.TopologyRegion != tc.region {
				t.Errorf("/info = %+v (tcp %d, http %d wanted)", info, wantTCP, wantHTTP)
			}
		})
	}
}

// checkKeys fails unless m has exactly the keys want.
func checkKeys(t *testing.T, what string, m any, want ...string) {
	t.Helper()
	obj, ok := m.(map[string]any)
	if !ok {
		t.Errorf("%s is %T, not an object", what, m)
		return
	}
	var got []string
	for k := range obj {
		got = append(got, k)
	}
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Errorf("%s keys:\n got  %v\n want %v", what, got, want)
	}
}

// The /stats JSON of NSQ 1.3, field for field, for decoding with DisallowUnknownFields.
type (
	nsqStats struct {
		Version   string       `json:"version"`
		Health    string       `json:"health"`
		StartTime int64        `json:"start_time"`
		Topics    []nsqTopic   `json:"topics"`
		Memory    *nsqMemStats `json:"memory,omitempty"`
		Producers []nsqClient  `json:"producers"`
	}
	nsqTopic struct {
		TopicName            string       `json:"topic_name"`
		Channels             []nsqChannel `json:"channels"`
		Depth                int64        `json:"depth"`
		BackendDepth         int64        `json:"backend_depth"`
		MessageCount         uint64       `json:"message_count"`
		MessageBytes         uint64       `json:"message_bytes"`
		Paused               bool         `json:"paused"`
		E2eProcessingLatency *nsqLatency  `json:"e2e_processing_latency"`
	}
	nsqChannel struct {
		ChannelName          string      `json:"channel_name"`
		Depth                int64       `json:"depth"`
		BackendDepth         int64       `json:"backend_depth"`
		InFlightCount        int         `json:"in_flight_count"`
		DeferredCount        int         `json:"deferred_count"`
		MessageCount         uint64      `json:"message_count"`
		RequeueCount         uint64      `json:"requeue_count"`
		TimeoutCount         uint64      `json:"timeout_count"`
		ClientCount          int         `json:"client_count"`
		Clients              []nsqClient `json:"clients"`
		Paused               bool        `json:"paused"`
		E2eProcessingLatency *nsqLatency `json:"e2e_processing_latency"`
		ZoneLocalMsgCount    uint64      `json:"zone_local_msg_count,omitempty"`
		RegionLocalMsgCount  uint64      `json:"region_local_msg_count,omitempty"`
		GlobalMsgCount       uint64      `json:"global_msg_count,omitempty"`
	}
	nsqLatency struct {
		Count       int                  `json:"count"`
		Percentiles []map[string]float64 `json:"percentiles"`
	}
	nsqClient struct {
		ClientID                      string        `json:"client_id"`
		Hostname                      string        `json:"hostname"`
		Version                       string        `json:"version"`
		RemoteAddress                 string        `json:"remote_address"`
		State                         int32         `json:"state"`
		ReadyCount                    int64         `json:"ready_count"`
		InFlightCount                 int64         `json:"in_flight_count"`
		MessageCount                  uint64        `json:"message_count"`
		FinishCount                   uint64        `json:"finish_count"`
		RequeueCount                  uint64        `json:"requeue_count"`
		ConnectTime                   int64         `json:"connect_ts"`
		SampleRate                    int32         `json:"sample_rate"`
		Deflate                       bool          `json:"deflate"`
		Snappy                        bool          `json:"snappy"`
		UserAgent                     string        `json:"user_agent"`
		Authed                        bool          `json:"authed,omitempty"`
		AuthIdentity                  string        `json:"auth_identity,omitempty"`
		AuthIdentityURL               string        `json:"auth_identity_url,omitempty"`
		TopologyZone                  string        `json:"topology_zone"`
		TopologyRegion                string        `json:"topology_region"`
		PubCounts                     []nsqPubCount `json:"pub_counts,omitempty"`
		TLS                           bool          `json:"tls"`
		CipherSuite                   string        `json:"tls_cipher_suite"`
		TLSVersion                    string        `json:"tls_version"`
		TLSNegotiatedProtocol         string        `json:"tls_negotiated_protocol"`
		TLSNegotiatedProtocolIsMutual bool          `json:"tls_negotiated_protocol_is_mutual"`
	}
	nsqPubCount struct {
		Topic string `json:"topic"`
		Count uint64 `json:"count"`
	}
	nsqMemStats struct {
		HeapObjects       uint64 `json:"heap_objects"`
		HeapIdleBytes     uint64 `json:"heap_idle_bytes"`
		HeapInUseBytes    uint64 `json:"heap_in_use_bytes"`
		HeapReleasedBytes uint64 `json:"heap_released_bytes"`
		GCPauseUsec100    uint64 `json:"gc_pause_usec_100"`
		GCPauseUsec99     uint64 `json:"gc_pause_usec_99"`
		GCPauseUsec95     uint64 `json:"gc_pause_usec_95"`
		NextGCBytes       uint64 `json:"next_gc_bytes"`
		GCTotalRuns       uint32 `json:"gc_total_runs"`
	}
)

// The keys NSQ's /stats objects have (reference §3.2), omitempty ones aside.
var (
	statsKeys   = []string{"version", "health", "start_time", "topics", "memory", "producers"}
	topicKeys   = []string{"topic_name", "channels", "depth", "backend_depth", "message_count", "message_bytes", "paused", "e2e_processing_latency"}
	channelKeys = []string{"channel_name", "depth", "backend_depth", "in_flight_count", "deferred_count", "message_count",
		"requeue_count", "timeout_count", "client_count", "clients", "paused", "e2e_processing_latency"}
	clientKeys = []string{"client_id", "hostname", "version", "remote_address", "state", "ready_count", "in_flight_count",
		"message_count", "finish_count", "requeue_count", "connect_ts", "sample_rate", "deflate", "snappy", "user_agent",
		"topology_zone", "topology_region", "tls", "tls_cipher_suite", "tls_version", "tls_negotiated_protocol",
		"tls_negotiated_protocol_is_mutual"}
	memoryKeys = []string{"heap_objects", "heap_idle_bytes", "heap_in_use_bytes", "heap_released_bytes",
		"gc_pause_usec_100", "gc_pause_usec_99", "gc_pause_usec_95", "next_gc_bytes", "gc_total_runs"}
	latencyKeys = []string{"count", "percentiles"}
)

func decodeStrict(t *testing.T, raw []byte) nsqStats {
	t.Helper()
	var s nsqStats
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("decode /stats into NSQ's shape: %v\n%s", err, raw)
	}
	return s
}

// checkStatsKeys checks the key set of every object in a /stats document against NSQ's.
func checkStatsKeys(t *testing.T, raw []byte, withMemory bool) {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	want := statsKeys
	if !withMemory {
		want = slices.DeleteFunc(slices.Clone(statsKeys), func(k string) bool { return k == "memory" })
	}
	checkKeys(t, "stats", doc, want...)
	if withMemory {
		checkKeys(t, "memory", doc["memory"], memoryKeys...)
	}
	for _, p := range doc["producers"].([]any) {
		checkKeys(t, "producer", p, append(slices.Clone(clientKeys), "pub_counts")...)
	}
	for _, tv := range doc["topics"].([]any) {
		topic := tv.(map[string]any)
		checkKeys(t, "topic", topic, topicKeys...)
		checkKeys(t, "topic latency", topic["e2e_processing_latency"], latencyKeys...)
		for _, cv := range topic["channels"].([]any) {
			ch := cv.(map[string]any)
			checkKeys(t, "channel", ch, channelKeys...)
			checkKeys(t, "channel latency", ch["e2e_processing_latency"], latencyKeys...)
			for _, cl := range ch["clients"].([]any) {
				checkKeys(t, "client", cl, clientKeys...)
			}
		}
	}
}

// collector is a go-nsq handler that keeps what it receives, with arrival times.
type collector struct {
	mu    sync.Mutex
	got   []string
	times []time.Time
}

func (c *collector) HandleMessage(m *gonsq.Message) error {
	c.mu.Lock()
	c.got = append(c.got, string(m.Body))
	c.times = append(c.times, time.Now())
	c.mu.Unlock()
	return nil
}

func (c *collector) bodies() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

// consumeGoNSQ subscribes a go-nsq consumer to topic/channel on the daemon's TCP port.
func consumeGoNSQ(t testing.TB, addr, topic, channel string) *collector {
	t.Helper()
	cfg := quietConfig()
	cfg.MaxInFlight = 100
	c, err := gonsq.NewConsumer(topic, channel, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetLogger(log.New(io.Discard, "", 0), gonsq.LogLevelError)
	col := &collector{}
	c.AddHandler(col)
	if err := c.ConnectToNSQD(addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop()
		<-c.StopChan
	})
	return col
}

// TestHTTPPublishConsumedByGoNSQ publishes with /pub and both /mpub modes to topics that do not
// exist yet and checks go-nsq consumes exactly what was published.
func TestHTTPPublishConsumedByGoNSQ(t *testing.T) {
	d := startHTTPDaemon(t, nil)
	var want []string
	for i := range 10 {
		m := fmt.Sprintf("pub-%d", i)
		if body := d.ok(t, "POST", "/pub?topic=http_pub", strings.NewReader(m)); body != "OK" {
			t.Fatalf("/pub answered %q", body)
		}
		want = append(want, m)
	}
	if d.n.Topic("http_pub") == nil {
		t.Fatal("/pub did not create its topic")
	}
	// Text mode: empty lines and a trailing newline are skipped; a message may hold any byte
	// but a newline.
	text := "text-0\ntext-1\n\n\ntext-2 with spaces\ttabs\r\n\x00bin\xff\n"
	want = append(want, "text-0", "text-1", "text-2 with spaces\ttabs\r", "\x00bin\xff")
	if body := d.ok(t, "POST", "/mpub?topic=http_pub", strings.NewReader(text)); body != "OK" {
		t.Fatalf("/mpub answered %q", body)
	}
	// Binary mode in each spelling NSQ accepts, the deprecated one included; bodies may hold
	// newlines.
	for _, flag := range []string{"true", "1", "yes"} {
		msgs := []string{"bin-" + flag + "-a\nline", "bin-" + flag + "-b"}
		d.ok(t, "POST", "/mpub?topic=http_pub&binary="+flag, bytes.NewReader(binaryMPUB(msgs...)))
		want = append(want, msgs...)
	}
	// A chunked body, as a streaming client sends it.
	d.ok(t, "POST", "/mpub?topic=http_pub", chunked{strings.NewReader("chunk-0\nchunk-1")})
	d.ok(t, "POST", "/pub?topic=http_pub", chunked{strings.NewReader("chunk-2")})
	want = append(want, "chunk-0", "chunk-1", "chunk-2")
	// An empty text /mpub is accepted and creates its topic.
	d.ok(t, "POST", "/mpub?topic=http_empty", strings.NewReader("\n\n"))
	if d.n.Topic("http_empty") == nil {
		t.Error("/mpub with no message did not create its topic")
	}

	col := consumeGoNSQ(t, d.tcp, "http_pub", "ch")
	testutil.Eventually(t, 10*time.Second, func() bool { return len(col.bodies()) >= len(want) },
		"go-nsq received %d messages", len(want))
	got := col.bodies()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("consumed:\n %q\nwant:\n %q", got, want)
	}
}

// TestHTTPPubDefer checks that /pub?defer=ms is delivered no earlier than the delay, and is
// delivered.
func TestHTTPPubDefer(t *testing.T) {
	d := startHTTPDaemon(t, nil)
	col := consumeGoNSQ(t, d.tcp, "deferred", "ch")
	testutil.Eventually(t, 5*time.Second, func() bool {
		cs, ok := d.n.ChannelStats("deferred", "ch")
		return ok && cs.ClientCount == 1
	}, "consumer subscribed")

	const delay = 400 * time.Millisecond
	start := time.Now()
	d.ok(t, "POST", "/pub?topic=deferred&defer="+strconv.Itoa(int(delay.Milliseconds())), strings.NewReader("later"))
	d.ok(t, "POST", "/pub?topic=deferred", strings.NewReader("now"))
	testutil.Eventually(t, 10*time.Second, func() bool { return len(col.bodies()) == 2 }, "both messages delivered")
	col.mu.Lock()
	defer col.mu.Unlock()
	for i, body := range col.got {
		waited := col.times[i].Sub(start)
		switch body {
		case "later":
			if waited < delay {
				t.Errorf("deferred message delivered after %v, before its %v delay", waited, delay)
			}
		case "now":
			if waited >= delay {
				t.Errorf("undeferred message waited %v", waited)
			}
		}
	}
	if col.got[0] != "now" {
		t.Errorf("delivery order %q: the deferred message overtook", col.got)
	}
}

// TestHTTPStats checks /stats JSON against NSQ's shape and contents, its filters, and the text
// format.
func TestHTTPStats(t *testing.T) {
	d := startHTTPDaemon(t, func(o *Options) {
		o.E2EProcessingLatencyPercentiles = []float64{0.5, 0.99}
	})
	// c1 exists before anything is published, so it, not c2, receives the backlog.
	d.ok(t, "POST", "/topic/create?topic=stats_t", nil)
	d.ok(t, "POST", "/channel/create?topic=stats_t&channel=c1", nil)
	// A TCP producer (listed in producers) and HTTP publishes (not listed).
	p, err := gonsq.NewProducer(d.tcp, quietConfig())
	if err != nil {
		t.Fatal(err)
	}
	p.SetLogger(log.New(io.Discard, "", 0), gonsq.LogLevelError)
	t.Cleanup(p.Stop)
	for i := range 3 {
		if err := p.Publish("stats_t", fmt.Appendf(nil, "tcp-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	d.ok(t, "POST", "/mpub?topic=stats_t", strings.NewReader("http-0\nhttp-1"))
	col := consumeGoNSQ(t, d.tcp, "stats_t", "c1")
	d.ok(t, "POST", "/channel/create?topic=stats_t&channel=c2", nil)
	d.ok(t, "POST", "/channel/pause?topic=stats_t&channel=c2", nil)
	d.ok(t, "POST", "/topic/create?topic=stats_u", nil)

	// Wait until every message was finished, so the latency summaries have counts.
	var stats nsqStats
	testutil.Eventually(t, 10*time.Second, func() bool {
		stats = decodeStrict(t, d.statsJSON(t, ""))
		return len(col.bodies()) == 5 && len(stats.Topics) == 2 && len(stats.Topics[0].Channels) == 2 &&
			stats.Topics[0].Channels[0].E2eProcessingLatency.Count == 5
	}, "5 messages consumed and finished")
	raw := d.statsJSON(t, "")
	checkStatsKeys(t, raw, true)
	stats = decodeStrict(t, raw)

	if stats.Version != "1.3.0" || stats.Health != "OK" || stats.StartTime != d.n.startTime.Unix() || stats.Memory == nil {
		t.Errorf("header: version %q health %q start %d memory %v", stats.Version, stats.Health, stats.StartTime, stats.Memory)
	}
	if len(stats.Producers) != 1 || len(stats.Producers[0].PubCounts) != 1 ||
		stats.Producers[0].PubCounts[0] != (nsqPubCount{Topic: "stats_t", Count: 3}) {
		t.Errorf("producers: %+v (want the TCP producer alone, 3 messages)", stats.Producers)
	}
	ts := stats.Topics[0]
	if ts.TopicName != "stats_t" || ts.MessageCount != 5 || ts.Paused || ts.Depth != 0 {
		t.Errorf("topic: %+v", ts)
	}
	c1, c2 := ts.Channels[0], ts.Channels[1]
	if c1.ChannelName != "c1" || c1.MessageCount != 5 || c1.ClientCount != 1 || len(c1.Clients) != 1 || c1.Paused {
		t.Errorf("channel c1: %+v", c1)
	}
	if c2.ChannelName != "c2" || !c2.Paused || c2.ClientCount != 0 || c2.Clients == nil {
		t.Errorf("channel c2: %+v", c2)
	}
	if cl := c1.Clients[0]; cl.Version != "V2" || cl.FinishCount != 5 || cl.MessageCount != 5 || cl.ReadyCount == 0 {
		t.Errorf("client: %+v", cl)
	}
	for _, lat := range []*nsqLatency{ts.E2eProcessingLatency, c1.E2eProcessingLatency} {
		if lat.Count != 5 || len(lat.Percentiles) != 2 ||
			lat.Percentiles[0]["quantile"] != 0.5 || lat.Percentiles[1]["quantile"] != 0.99 ||
			lat.Percentiles[1]["value"] <= 0 {
			t.Errorf("latency summary %+v", lat)
		}
	}
	if u := stats.Topics[1]; u.TopicName != "stats_u" || u.Channels == nil || len(u.Channels) != 0 ||
		u.E2eProcessingLatency == nil || u.E2eProcessingLatency.Count != 0 {
		t.Errorf("topic without channels: %+v", u)
	}
	if !bytes.Contains(raw, []byte(`"channels":[]`)) {
		t.Errorf("an empty channel list is not []: %s", raw)
	}

	t.Run("filters", func(t *testing.T) {
		tests := []struct {
			params     string
			topics     []string // topic/channel,channel...
			clients    int      // of stats_t/c1, when listed
			producers  int
			withMemory bool
		}{
			{"", []string{"stats_t/c1,c2", "stats_u/"}, 1, 1, true},
			{"&topic=stats_u", []string{"stats_u/"}, 0, 1, true},
			{"&topic=missing", nil, 0, 1, true},
			{"&topic=stats_t&channel=c2", []string{"stats_t/c2"}, 0, 1, true},
			{"&channel=c1", []string{"stats_t/c1"}, 1, 1, true},
			{"&include_clients=false", []string{"stats_t/c1,c2", "stats_u/"}, 0, 0, true},
			{"&include_clients=0&include_mem=0", []string{"stats_t/c1,c2", "stats_u/"}, 0, 0, false},
			{"&include_mem=false", []string{"stats_t/c1,c2", "stats_u/"}, 1, 1, false},
			{"&include_mem=maybe&include_clients=maybe", []string{"stats_t/c1,c2", "stats_u/"}, 1, 1, true},
		}
		for _, tc := range tests {
			t.Run(tc.params, func(t *testing.T) {
				raw := d.statsJSON(t, tc.params)
				checkStatsKeys(t, raw, tc.withMemory)
				s := decodeStrict(t, raw)
				var got []string
				clients := 0
				for _, ts := range s.Topics {
					var chans []string
					for _, cs := range ts.Channels {
						chans = append(chans, cs.ChannelName)
						if cs.ChannelName == "c1" {
							clients = len(cs.Clients)
							if cs.ClientCount != 1 {
								t.Errorf("client_count %d with clients left out", cs.ClientCount)
							}
						}
					}
					got = append(got, ts.TopicName+"/"+strings.Join(chans, ","))
				}
				if !slices.Equal(got, tc.topics) || clients != tc.clients || len(s.Producers) != tc.producers {
					t.Errorf("topics %q clients %d producers %d, want %q %d %d",
						got, clients, len(s.Producers), tc.topics, tc.clients, tc.producers)
				}
				if s.Topics == nil || s.Producers == nil {
					t.Errorf("an empty list is null: %s", raw)
				}
			})
		}
	})

	t.Run("text", func(t *testing.T) {
		r := d.do(t, "GET", "/stats", nil)
		if r.status != 200 || r.header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Fatalf("%d %q", r.status, r.header.Get("Content-Type"))
		}
		// A client is named as NSQ names it: hostname, port and user agent.
		cl := stats.Topics[0].Channels[0].Clients[0]
		_, port, _ := net.SplitHostPort(cl.RemoteAddress)
		if cl.UserAgent == "" || cl.Hostname == "" {
			t.Fatalf("go-nsq sent no hostname or user agent: %+v", cl)
		}
		consumerLine := fmt.Sprintf("        [V2 %-21s] state: 3 inflt: 0    rdy: ", cl.Hostname+":"+port+" "+cl.UserAgent)
		for _, want := range []string{
			consumerLine,
			"nsqd v1.3.0", "start_time ", "uptime ", "Health: OK", "Memory:", "heap_objects",
			"   [stats_t        ] depth: 0 ", "p50=", "p99=",
			"      [c1                       ] depth: 0 ", "   *P [c2                       ]",
			"        [V2 ", "Producers:\n   [V2 ", "topics: stats_t=3",
		} {
			if !strings.Contains(r.body, want) {
				t.Errorf("text /stats lacks %q:\n%s", want, r.body)
			}
		}
		r = d.do(t, "GET", "/stats?topic=none&include_mem=false&include_clients=false", nil)
		if !strings.Contains(r.body, "Topics: None") || !strings.Contains(r.body, "Producers: None") ||
			strings.Contains(r.body, "Memory:") {
			t.Errorf("filtered text /stats:\n%s", r.body)
		}
	})
}

// TestHTTPTopicChannelAdmin drives the /topic/* and /channel/* endpoints through a topic's
// life and checks their effect on the engine.
func TestHTTPTopicChannelAdmin(t *testing.T) {
	d := startHTTPDaemon(t, nil)
	empty := func(method, path string) {
		t.Helper()
		r := d.do(t, method, path, nil)
		if r.status != 200 || r.body != "" {
			t.Fatalf("%s %s: %d %q, want an empty 200", method, path, r.status, r.body)
		}
	}
	empty("POST", "/topic/create?topic=adm")
	empty("POST", "/topic/create?topic=adm") // idempotent
	empty("POST", "/topic/create?topic=adm_eph%23ephemeral")
	empty("POST", "/channel/create?topic=adm&channel=ch")
	empty("POST", "/channel/create?topic=adm&channel=ch")
	topic := d.n.Topic("adm")
	if topic == nil || topic.Channel("ch") == nil || d.n.Topic("adm_eph#ephemeral") == nil {
		t.Fatal("create did not create")
	}

	empty("POST", "/topic/pause?topic=adm")
	if !topic.Paused() {
		t.Error("topic not paused")
	}
	empty("POST", "/topic/unpause?topic=adm")
	if topic.Paused() {
		t.Error("topic still paused")
	}
	empty("POST", "/channel/pause?topic=adm&channel=ch")
	if !topic.Channel("ch").Paused() {
		t.Error("channel not paused")
	}
	// The pause is on disk before the answer.
	md, err := readMetadataFile(d.n)
	if err != nil || !strings.Contains(md, `"name":"ch","paused":true`) {
		t.Errorf("paused channel not in the metadata file: %s (%v)", md, err)
	}
	empty("POST", "/channel/unpause?topic=adm&channel=ch")
	if topic.Channel("ch").Paused() {
		t.Error("channel still paused")
	}

	d.ok(t, "POST", "/mpub?topic=adm", strings.NewReader("a\nb\nc"))
	testutil.Eventually(t, 5*time.Second, func() bool { return topic.Channel("ch").Depth() == 3 }, "depth 3")
	empty("POST", "/channel/empty?topic=adm&channel=ch")
	if got := topic.Channel("ch").Depth(); got != 0 {
		t.Errorf("channel depth %d after empty", got)
	}
	empty("POST", "/topic/empty?topic=adm")

	empty("POST", "/channel/delete?topic=adm&channel=ch")
	if topic.Channel("ch") != nil {
		t.Error("channel not deleted")
	}
	empty("POST", "/topic/delete?topic=adm")
	if d.n.Topic("adm") != nil {
		t.Error("topic not deleted")
	}
	if r := d.do(t, "POST", "/topic/delete?topic=adm", nil); r.status != 404 {
		t.Errorf("second delete: %d %s", r.status, r.body)
	}
}

func readMetadataFile(n *NSQD) (string, error) {
	f, err := os.ReadFile(n.metadataPath())
	return string(f), err
}

func TestHTTPConfig(t *testing.T) {
	d := startHTTPDaemon(t, nil)
	const jsonType, textType = "application/json; charset=utf-8", "text/plain; charset=utf-8"
	// A string option is answered as bare text, as NSQ's API renders every string result.
	tests := []struct {
		method, opt, body, want, contentType string
	}{
		{"GET", "mem_queue_size", "", "10000", jsonType},
		{"GET", "msg_timeout", "", "60000000000", jsonType},
		{"GET", "id", "", "1", jsonType},
		{"GET", "snappy", "", "true", jsonType},
		{"GET", "tls_required", "", "false", textType},
		{"GET", "e2e_processing_latency_percentiles", "", "[]", jsonType},
		{"GET", "nsqlookupd_tcp_addresses", "", "[]", jsonType},
		{"PUT", "nsqlookupd_tcp_addresses", `["127.0.0.1:4160","lookupd.example:4160"]`, `["127.0.0.1:4160","lookupd.example:4160"]`, jsonType},
		{"GET", "nsqlookupd_tcp_addresses", "", `["127.0.0.1:4160","lookupd.example:4160"]`, jsonType},
		{"GET", "log_level", "", "info", textType},
		{"PUT", "log_level", "DEBUG\n", "debug", textType},
		{"GET", "log_level", "", "debug", textType},
		{"PUT", "nsqlookupd_tcp_addresses", `[]`, `[]`, jsonType},
	}
	for _, tc := range tests {
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		r := d.do(t, tc.method, "/config/"+tc.opt, body)
		if r.status != 200 || r.body != tc.want || r.header.Get("Content-Type") != tc.contentType {
			t.Errorf("%s /config/%s: %d %s (%s), want %s (%s)", tc.method, tc.opt, r.status, r.body,
				r.header.Get("Content-Type"), tc.want, tc.contentType)
		}
	}
	if !d.n.logger.Enabled(context.Background(), slog.LevelDebug) {
		t.Error("PUT log_level did not change the daemon's level")
	}

	// Concurrent writers of different options do not undo each other.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if i%2 == 0 {
				d.ok(t, "PUT", "/config/nsqlookupd_tcp_addresses", strings.NewReader(`["127.0.0.1:1"]`))
			} else {
				d.ok(t, "PUT", "/config/log_level", strings.NewReader("warn"))
			}
		})
	}
	wg.Wait()
	if o := d.n.getOpts(); o.LogLevel != "warn" || !slices.Equal(o.LookupdTCPAddresses, []string{"127.0.0.1:1"}) {
		t.Errorf("after concurrent PUTs: log_level %q, lookupd %q", o.LogLevel, o.LookupdTCPAddresses)
	}
}

// TestHTTPDebugAndMetrics checks the pprof, debug and Prometheus endpoints answer, with NSQ's
// header like everything else.
func TestHTTPDebugAndMetrics(t *testing.T) {
	d := startHTTPDaemon(t, nil)
	tests := []struct {
		method, path, body, contains string
	}{
		{"GET", "/debug/pprof/", "", "goroutine"},
		{"GET", "/debug/pprof/cmdline", "", "nsqd.test"},
		{"GET", "/debug/pprof/goroutine?debug=1", "", "goroutine profile"},
		{"GET", "/debug/pprof/heap?debug=1", "", "heap profile"},
		{"GET", "/debug/pprof/threadcreate?debug=1", "", "threadcreate profile"},
		{"GET", "/debug/pprof/block?debug=1", "", "cycles/second"},
		{"GET", "/debug/pprof/mutex?debug=1", "", "cycles/second"},
		{"GET", "/debug/pprof/allocs?debug=1", "", "heap profile"},
		{"GET", "/debug/pprof/symbol", "", "num_symbols"},
		{"POST", "/debug/pprof/symbol", "0x0", "num_symbols"},
		{"PUT", "/debug/setblockrate?rate=0", "", "OK"},
		{"POST", "/debug/freememory", "", ""},
		{"GET", "/metrics", "", "go_goroutines"},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			got := d.ok(t, tc.method, tc.path, body)
			if !strings.Contains(got, tc.contains) || (tc.contains == "" && got != "") {
				t.Errorf("answer lacks %q: %.300s", tc.contains, got)
			}
		})
	}
}

// serveAPI serves the daemon's API with the given limits on a listener of its own, so tests
// can shorten the limits and add routes. It returns the base URL.
func serveAPI(t *testing.T, n *NSQD, limits httpTimeouts, extra func(*httpapi.Router)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := n.newHTTPServer(n.newHTTPAPI(extra), limits)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// TestHTTPHandlerPanic checks a panicking handler answers 500 INTERNAL_ERROR and the server
// goes on serving, on the same connection too.
func TestHTTPHandlerPanic(t *testing.T) {
	d := startHTTPDaemon(t, nil)
	base := serveAPI(t, d.n, defaultHTTPTimeouts(), func(rt *httpapi.Router) {
		rt.Handle("GET", "/test/panic", func(_ http.ResponseWriter, r *http.Request, _ httprouter.Params) (any, error) {
			// An index out of range: a runtime error, as a real bug would raise.
			parts := strings.Split(r.URL.RawQuery, "&")
			return parts[len(parts)], nil
		})
	})
	d2 := &httpDaemon{n: d.n, base: base, client: &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}}
	t.Cleanup(d2.client.CloseIdleConnections)
	for range 3 {
		r := d2.do(t, "GET", "/test/panic", nil)
		if r.status != 500 || r.body != `{"message":"INTERNAL_ERROR"}` {
			t.Fatalf("panic answered %d %s", r.status, r.body)
		}
		if body := d2.ok(t, "GET", "/ping", nil); body != "OK" {
			t.Fatalf("after a panic /ping answered %q", body)
		}
		d2.ok(t, "POST", "/pub?topic=after_panic", strings.NewReader("m"))
	}
	// The daemon's own listener was never disturbed.
	d.ok(t, "GET", "/ping", nil)
}

// TestHTTPSlowClients checks that a client sending half a header, one that stalls its body and
// one that idles on a keep-alive connection are dropped after their timeouts, and that none of
// them keeps other clients from being served meanwhile.
func TestHTTPSlowClients(t *testing.T) {
	d := startHTTPDaemon(t, nil)
	limits := httpTimeouts{readHeader: 300 * time.Millisecond, read: time.Second, idle: 500 * time.Millisecond}
	base := serveAPI(t, d.n, limits, nil)
	addr := strings.TrimPrefix(base, "http://")

	tests := []struct {
		name    string
		send    string        // written, then the client stalls
		timeout time.Duration // the limit that must drop it
	}{
		{"half a header", "POST /pub?topic=slow HTTP/1.1\r\nHost: x\r\nContent-Le", limits.readHeader},
		{"no header at all", "", limits.readHeader},
		{"stalled body", "POST /pub?topic=slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part", limits.read},
		{"idle keep-alive", "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n", limits.idle},
	}
	conns := make([]net.Conn, len(tests))
	starts := make([]time.Time, len(tests))
	for i, tc := range tests {
		// Timed from before the dial: the server's clock for the connection starts later.
		starts[i] = time.Now()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, tc.send); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	// Other clients are served while the slow ones hang on.
	other := &httpDaemon{n: d.n, base: base, client: &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}}
	t.Cleanup(other.client.CloseIdleConnections)
	for range 20 {
		other.ok(t, "GET", "/ping", nil)
		other.ok(t, "POST", "/pub?topic=fast", strings.NewReader("m"))
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := conns[i]
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			// Whatever the server answers, the connection must end.
			_, err := io.Copy(io.Discard, c)
			elapsed := time.Since(starts[i])
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("still connected after %v", elapsed)
			}
			if elapsed < tc.timeout || elapsed > tc.timeout+3*time.Second {
				t.Errorf("dropped after %v, want just after %v", elapsed, tc.timeout)
			}
		})
	}
}

// TestHTTPTooBigAnsweredWithoutReading sends bodies declared far larger than allowed and
// only a few of their bytes: the 413 must come at once, without waiting for the rest.
func TestHTTPTooBigAnsweredWithoutReading(t *testing.T) {
	d := startHTTPDaemon(t, smallHTTPLimits)
	addr := strings.TrimPrefix(d.base, "http://")
	tests := []struct {
		name, path    string
		contentLength int64
		expect        bool // send Expect: 100-continue
		message       string
	}{
		{"pub huge", "/pub?topic=big", 1 << 40, false, "MSG_TOO_BIG"},
		{"pub just over", "/pub?topic=big", 150, false, "MSG_TOO_BIG"},
		{"mpub huge", "/mpub?topic=big", 1 << 40, false, "BODY_TOO_BIG"},
		{"mpub just over", "/mpub?topic=big", 1001, false, "BODY_TOO_BIG"},
		{"pub expecting 100-continue", "/pub?topic=big", 1 << 30, true, "MSG_TOO_BIG"},
		{"config value", "/config/log_level", 1 << 30, false, "INVALID_VALUE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			method := "POST"
			if strings.HasPrefix(tc.path, "/config") {
				method = "PUT"
			}
			req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n", method, tc.path, tc.contentLength)
			if tc.expect {
				req += "Expect: 100-continue\r\n\r\n"
			} else {
				req += "\r\nfirst few bytes"
			}
			if _, err := io.WriteString(c, req); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer without the body: %v", err)
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != 413 || string(body) != `{"message":"`+tc.message+`"}` {
				t.Errorf("got %d %s, want 413 %s", res.StatusCode, body, tc.message)
			}
			if !res.Close || res.Header.Get("X-NSQ-Content-Type") != "nsq; version=1.0" {
				t.Errorf("close %v, headers %v: the connection must close after a refused body", res.Close, res.Header)
			}
		})
	}
	if topic := d.n.Topic("big"); topic != nil {
		t.Errorf("a refused body created topic big")
	}
}
