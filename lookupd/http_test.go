package lookupd

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/httpapi"
	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/testutil"
)

// TestHTTPEndpoints walks NSQ's lookupd API through one sequence of requests, checking the
// status, the exact body and the headers of every answer.
func TestHTTPEndpoints(t *testing.T) {
	l := startLookupd(t, nil)
	steps := []struct {
		method, path string
		status       int
		body         string // exact; JSON answers are compared as JSON
		text         bool   // a text answer rather than JSON
	}{
		{"GET", "/ping", 200, "OK", true},
		{"GET", "/info", 200, `{"version":"1.3.0"}`, false},
		{"GET", "/topics", 200, `{"topics":[]}`, false},
		{"GET", "/debug", 200, `{}`, false},
		{"GET", "/nodes", 200, `{"producers":[]}`, false},

		{"GET", "/lookup", 400, `{"message":"MISSING_ARG_TOPIC"}`, false},
		{"GET", "/lookup?topic=orders", 404, `{"message":"TOPIC_NOT_FOUND"}`, false},
		{"GET", "/lookup?topic=", 404, `{"message":"TOPIC_NOT_FOUND"}`, false},
		{"GET", "/lookup?topic=%zz", 400, `{"message":"INVALID_REQUEST"}`, false},
		{"GET", "/channels", 400, `{"message":"MISSING_ARG_TOPIC"}`, false},
		{"GET", "/channels?topic=orders", 200, `{"channels":[]}`, false},

		{"POST", "/topic/create", 400, `{"message":"MISSING_ARG_TOPIC"}`, false},
		{"POST", "/topic/create?topic=bad!name", 400, `{"message":"INVALID_ARG_TOPIC"}`, false},
		{"POST", "/topic/create?topic=", 400, `{"message":"INVALID_ARG_TOPIC"}`, false},
		{"POST", "/topic/create?topic=orders", 200, "", true},
		{"POST", "/topic/create?topic=orders", 200, "", true},
		{"GET", "/topics", 200, `{"topics":["orders"]}`, false},
		{"GET", "/lookup?topic=orders", 200, `{"channels":[],"producers":[]}`, false},

		{"POST", "/channel/create", 400, `{"message":"MISSING_ARG_TOPIC"}`, false},
		{"POST", "/channel/create?topic=a*b&channel=c", 400, `{"message":"INVALID_ARG_TOPIC"}`, false},
		{"POST", "/channel/create?topic=events", 400, `{"message":"MISSING_ARG_CHANNEL"}`, false},
		{"POST", "/channel/create?topic=events&channel=c%20d", 400, `{"message":"INVALID_ARG_CHANNEL"}`, false},
		{"POST", "/channel/create?topic=events&channel=archive", 200, "", true},
		{"POST", "/channel/create?topic=events&channel=billing", 200, "", true},
		{"GET", "/topics", 200, `{"topics":["events","orders"]}`, false},
		{"GET", "/channels?topic=events", 200, `{"channels":["archive","billing"]}`, false},
		{"GET", "/lookup?topic=events", 200, `{"channels":["archive","billing"],"producers":[]}`, false},

		{"POST", "/channel/delete", 400, `{"message":"MISSING_ARG_TOPIC"}`, false},
		{"POST", "/channel/delete?topic=events", 400, `{"message":"MISSING_ARG_CHANNEL"}`, false},
		{"POST", "/channel/delete?topic=events&channel=b!d", 400, `{"message":"INVALID_ARG_CHANNEL"}`, false},
		{"POST", "/channel/delete?topic=events&channel=nope", 404, `{"message":"CHANNEL_NOT_FOUND"}`, false},
		{"POST", "/channel/delete?topic=events&channel=billing", 200, "", true},
		{"GET", "/channels?topic=events", 200, `{"channels":["archive"]}`, false},

		{"POST", "/topic/tombstone", 400, `{"message":"MISSING_ARG_TOPIC"}`, false},
		{"POST", "/topic/tombstone?topic=events", 400, `{"message":"MISSING_ARG_NODE"}`, false},
		{"POST", "/topic/tombstone?topic=events&node=127.0.0.1:4151", 200, "", true},

		{"POST", "/topic/delete", 400, `{"message":"MISSING_ARG_TOPIC"}`, false},
		{"POST", "/topic/delete?topic=never-was", 200, "", true},
		{"POST", "/topic/delete?topic=bad!name", 200, "", true},
		{"POST", "/topic/delete?topic=events", 200, "", true},
		{"GET", "/topics", 200, `{"topics":["orders"]}`, false},
		{"GET", "/channels?topic=events", 200, `{"channels":[]}`, false},
		{"GET", "/lookup?topic=events", 404, `{"message":"TOPIC_NOT_FOUND"}`, false},

		// The router's own answers.
		{"GET", "/topic/create?topic=x", 405, `{"message":"METHOD_NOT_ALLOWED"}`, false},
		{"POST", "/lookup?topic=orders", 405, `{"message":"METHOD_NOT_ALLOWED"}`, false},
		{"GET", "/no/such/path", 404, `{"message":"NOT_FOUND"}`, false},
		// Removed before NSQ 1.0; not served.
		{"POST", "/create_topic?topic=x", 404, `{"message":"NOT_FOUND"}`, false},
	}
	for _, s := range steps {
		status, body, header := httpDo(t, l, s.method, s.path)
		name := s.method + " " + s.path
		if status != s.status {
			t.Errorf("%s: status %d, want %d (body %s)", name, status, s.status, body)
			continue
		}
		if got := header.Get(httpapi.HeaderNSQContentType); got != httpapi.NSQContentTypeV1 {
			t.Errorf("%s: %s = %q, want %q", name, httpapi.HeaderNSQContentType, got, httpapi.NSQContentTypeV1)
		}
		if s.text {
			if string(body) != s.body {
				t.Errorf("%s: body %q, want %q", name, body, s.body)
			}
			continue
		}
		if ct := header.Get("Content-Type"); ct != httpapi.ContentTypeJSON {
			t.Errorf("%s: Content-Type %q, want %q", name, ct, httpapi.ContentTypeJSON)
		}
		assertJSONEqual(t, name, body, s.body)
	}
}

// assertJSONEqual compares two JSON documents by value.
func assertJSONEqual(t *testing.T, name string, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Errorf("%s: answer %q is not JSON: %v", name, got, err)
		return
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: bad expectation %q: %v", name, want, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		t.Errorf("%s: body %s, want %s", name, got, want)
	}
}

// TestHTTPShapes checks the JSON field names of the answers that list producers, as NSQ's
// consumers and nsqadmin parse them.
func TestHTTPShapes(t *testing.T) {
	l := startLookupd(t, nil)
	registerPeer(t, l, 4150, 4151, "orders/archive", "events")

	keysOf := func(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }
	peerKeys := []string{"broadcast_address", "hostname", "http_port", "remote_address", "tcp_port",
		"topology_region", "topology_zone", "version"}

	var lookup map[string]any
	getJSON(t, l, "/lookup?topic=orders", &lookup)
	if got := keysOf(lookup); !slices.Equal(got, []string{"channels", "producers"}) {
		t.Errorf("/lookup keys = %q", got)
	}
	producers := lookup["producers"].([]any)
	if len(producers) != 1 {
		t.Fatalf("/lookup producers = %v", producers)
	}
	if got := keysOf(producers[0].(map[string]any)); !slices.Equal(got, peerKeys) {
		t.Errorf("/lookup producer keys = %q, want %q", got, peerKeys)
	}

	var nodes struct {
		Producers []map[string]any `json:"producers"`
	}
	getJSON(t, l, "/nodes", &nodes)
	if len(nodes.Producers) != 1 {
		t.Fatalf("/nodes producers = %v", nodes.Producers)
	}
	n := nodes.Producers[0]
	if got, want := keysOf(n), slices.Sorted(slices.Values(append(slices.Clone(peerKeys), "tombstones", "topics"))); !slices.Equal(got, want) {
		t.Errorf("/nodes producer keys = %q, want %q", got, want)
	}
	assertJSONEqual(t, "/nodes topics", mustJSON(t, n["topics"]), `["events","orders"]`)
	assertJSONEqual(t, "/nodes tombstones", mustJSON(t, n["tombstones"]), `[false,false]`)

	var debug map[string][]map[string]any
	getJSON(t, l, "/debug", &debug)
	if got, want := slices.Sorted(maps.Keys(debug)), []string{"channel:orders:archive", "client::", "topic:events:", "topic:orders:"}; !slices.Equal(got, want) {
		t.Errorf("/debug keys = %q, want %q", got, want)
	}
	wantDebug := []string{"broadcast_address", "hostname", "http_port", "id", "last_update", "tcp_port",
		"tombstoned", "tombstoned_at", "topology_region", "topology_zone", "version"}
	if got := keysOf(debug["client::"][0]); !slices.Equal(got, wantDebug) {
		t.Errorf("/debug producer keys = %q, want %q", got, wantDebug)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTombstoneLifetime checks that a tombstone hides a node from /lookup for one topic for
// the tombstone lifetime and no longer, shows in /nodes meanwhile, and survives the node
// registering the topic again (NSQ's TestTombstoneRecover).
func TestTombstoneLifetime(t *testing.T) {
	const lifetime = 500 * time.Millisecond
	l := startLookupd(t, func(o *Options) { o.TombstoneLifetime = lifetime })
	a := registerPeer(t, l, 4150, 4151, "orders", "events")
	registerPeer(t, l, 4250, 4251, "orders")

	tombstonedAt := time.Now()
	if status, body, _ := httpDo(t, l, "POST", "/topic/tombstone?topic=orders&node=127.0.0.1:4151"); status != 200 {
		t.Fatalf("tombstone: %d %s", status, body)
	}
	if ports, _ := lookupPorts(t, l, "orders"); !slices.Equal(ports, []int{4250}) {
		t.Fatalf("/lookup?topic=orders right after the tombstone: ports %v, want [4250]", ports)
	}
	if ports, _ := lookupPorts(t, l, "events"); !slices.Equal(ports, []int{4150}) {
		t.Fatalf("/lookup?topic=events: ports %v; the tombstone is for orders only", ports)
	}
	var nodes struct{ Producers []nodeInfo }
	getJSON(t, l, "/nodes", &nodes)
	if len(nodes.Producers) != 2 || !slices.Equal(nodes.Producers[0].Topics, []string{"events", "orders"}) ||
		!slices.Equal(nodes.Producers[0].Tombstones, []bool{false, true}) {
		t.Fatalf("/nodes while tombstoned = %+v", nodes.Producers)
	}
	// Registering again does not lift the tombstone: the node is being deleted.
	a.expectOK(protocol.Register("orders", ""))
	if ports, _ := lookupPorts(t, l, "orders"); !slices.Equal(ports, []int{4250}) {
		t.Fatalf("/lookup?topic=orders after REGISTER: ports %v, want [4250]", ports)
	}

	testutil.Eventually(t, 5*time.Second, func() bool {
		ports, _ := lookupPorts(t, l, "orders")
		return slices.Equal(ports, []int{4150, 4250})
	}, "the tombstoned node did not come back")
	if elapsed := time.Since(tombstonedAt); elapsed < lifetime {
		t.Fatalf("the node came back after %v, before the %v lifetime", elapsed, lifetime)
	}
	getJSON(t, l, "/nodes", &nodes)
	if !slices.Equal(nodes.Producers[0].Tombstones, []bool{false, false}) {
		t.Fatalf("/nodes tombstones after expiry = %v", nodes.Producers[0].Tombstones)
	}
}

// TestTombstoneThenUnregister is NSQ's TestTombstoneUnregister: once the node unregisters the
// topic the tombstone goes with it, and a later REGISTER is listed at once.
func TestTombstoneThenUnregister(t *testing.T) {
	l := startLookupd(t, nil) // 45 s lifetime: it must not be what brings the node back
	a := registerPeer(t, l, 4150, 4151, "orders")
	httpDo(t, l, "POST", "/topic/tombstone?topic=orders&node=127.0.0.1:4151")
	if ports, _ := lookupPorts(t, l, "orders"); len(ports) != 0 {
		t.Fatalf("ports %v after tombstone, want none", ports)
	}
	a.expectOK(protocol.UnRegister("orders", ""))
	a.expectOK(protocol.Register("orders", ""))
	if ports, _ := lookupPorts(t, l, "orders"); !slices.Equal(ports, []int{4150}) {
		t.Fatalf("ports %v after UNREGISTER and REGISTER, want [4150]", ports)
	}
}

// TestPingDuringShutdown checks that GET /ping answers 500 once shutdown has begun.
func TestPingDuringShutdown(t *testing.T) {
	l := startLookupd(t, nil)
	l.exiting.Store(true) // what Run does first on cancel
	status, body, _ := httpDo(t, l, "GET", "/ping")
	if status != http.StatusInternalServerError || !strings.HasPrefix(string(body), "NOK") {
		t.Fatalf("/ping while exiting: %d %q", status, body)
	}
}

func TestPprofServed(t *testing.T) {
	l := startLookupd(t, nil)
	if status, body, _ := httpDo(t, l, "GET", "/debug/pprof/"); status != 200 || !strings.Contains(string(body), "goroutine") {
		t.Fatalf("/debug/pprof/: %d", status)
	}
}
