package nsqd_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/nsqd"
	"github.com/ternmq/tern/nsqd/nsqdtest"
)

// TestInspectChannel looks at a channel's next, deferred and in-flight messages and finds
// messages by ID over HTTP, and checks that looking changes nothing: the consumer then gets
// the messages the look said were next, in that order.
func TestInspectChannel(t *testing.T) {
	t.Parallel()
	d := nsqdtest.Start(t, nil)
	base := "http://" + d.HTTPAddr().String()
	get := func(path string, v any) int {
		t.Helper()
		resp, err := http.Get(base + path)
		must(t, err)
		defer resp.Body.Close()
		if v != nil {
			_ = json.NewDecoder(resp.Body).Decode(v)
		}
		return resp.StatusCode
	}
	post := func(path, body string) {
		t.Helper()
		resp, err := http.Post(base+path, "text/plain", strings.NewReader(body))
		must(t, err)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST %s: %s", path, resp.Status)
		}
	}
	post("/topic/create?topic=q", "")
	post("/channel/create?topic=q&channel=c", "")
	for i := 1; i <= 6; i++ {
		post("/pub?topic=q", fmt.Sprintf("m%d", i))
	}
	post("/pub?topic=q&defer=3600000", "later")

	c := dialRaw(t, d.TCPAddr().String())
	must(t, c.Subscribe("q", "c", 2))
	first, err := c.ExpectMessage()
	must(t, err)
	second, err := c.ExpectMessage()
	must(t, err)

	type peeked struct {
		Messages []nsqd.InspectedMessage `json:"messages"`
	}
	bodies := func(p peeked) string {
		var b []string
		for _, m := range p.Messages {
			b = append(b, string(m.Body)+"/"+m.State)
		}
		return strings.Join(b, " ")
	}
	var next peeked
	if code := get("/channel/peek?topic=q&channel=c&n=10", &next); code != 200 {
		t.Fatalf("peek: %d", code)
	}
	var names []string
	for _, m := range next.Messages {
		names = append(names, string(m.Body))
	}
	if strings.Join(names, " ") != "m3 m4 m5 m6" {
		t.Errorf("next: %s", bodies(next))
	}
	var two peeked
	get("/channel/peek?topic=q&channel=c&n=2", &two)
	if len(two.Messages) != 2 {
		t.Errorf("n=2 gave %d", len(two.Messages))
	}

	var flight peeked
	get("/channel/peek?topic=q&channel=c&state=in_flight", &flight)
	local := c.NetConn().LocalAddr().String()
	if len(flight.Messages) != 2 || flight.Messages[0].Owner != local || flight.Messages[0].Due < time.Now().UnixNano() ||
		flight.Messages[0].ID != string(first.ID[:]) && flight.Messages[0].ID != string(second.ID[:]) {
		t.Errorf("in flight: %+v (consumer %s)", flight.Messages, local)
	}
	var deferred peeked
	get("/channel/peek?topic=q&channel=c&state=deferred", &deferred)
	if len(deferred.Messages) != 1 || string(deferred.Messages[0].Body) != "later" ||
		deferred.Messages[0].Due < time.Now().Add(59*time.Minute).UnixNano() {
		t.Errorf("deferred: %+v", deferred.Messages)
	}

	var m nsqd.InspectedMessage
	if code := get("/channel/message?topic=q&channel=c&id="+string(first.ID[:]), &m); code != 200 || m.State != "in_flight" || string(m.Body) != first.Body {
		t.Errorf("find %s: %d %+v", first.ID, code, m)
	}
	if code := get("/channel/message?topic=q&channel=c&id="+next.Messages[2].ID, &m); code != 200 || string(m.Body) != "m5" {
		t.Errorf("find m5: %d %+v", code, m)
	}
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/channel/message?topic=q&channel=c&id=00000000000000ff", 404},
		{"/channel/message?topic=q&channel=c&id=zz", 400},
		{"/channel/peek?topic=q&channel=c&n=0", 400},
		{"/channel/peek?topic=q&channel=c&state=lost", 400},
		{"/channel/peek?topic=q&channel=nope", 404},
		{"/channel/peek?topic=nope&channel=c", 404},
	} {
		if code := get(tc.path, nil); code != tc.code {
			t.Errorf("GET %s: %d, want %d", tc.path, code, tc.code)
		}
	}

	// Looking changed nothing: the consumer gets m3..m6 next, in the order the look said.
	must(t, c.Send(protocol.Finish(first.ID)))
	must(t, c.Send(protocol.Finish(second.ID)))
	must(t, c.Send(protocol.Ready(4)))
	var got []string
	for range 4 {
		msg, err := c.ExpectMessage()
		must(t, err)
		got = append(got, msg.Body)
	}
	if strings.Join(got, " ") != "m3 m4 m5 m6" {
		t.Errorf("delivered after the looks: %v", got)
	}
}
