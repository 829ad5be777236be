package nsqd

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/internal/wiretest"
)

// TestTimersExactWith1000Channels proves the scheduler's promise: with 1,000 channels live,
// every deferred message, delayed requeue and in-flight timeout is delivered within 50 ms of
// its due time (NSQ samples 20 channels per 100 ms and can be seconds late at this scale).
//
// 100 topics with 10 channels each, one consumer per channel at RDY 1. Each topic gets one DPUB
// with its own delay. Channels 0-4 measure the deferral; 5-7 then REQ with a delay and measure
// that; 8-9 negotiate a 1 s msg_timeout, never FIN the first delivery and measure the timeout.
func TestTimersExactWith1000Channels(t *testing.T) {
	n, _ := startTestDaemon(t, t.TempDir(), nil)
	addr := n.TCPAddr().String()
	const topics, perTopic = 100, 10
	const msgTimeout = time.Second

	type sample struct {
		kind     string
		lateness time.Duration
	}
	var (
		mu      sync.Mutex
		samples []sample
		errs    []error
		wg      sync.WaitGroup
	)
	record := func(kind string, late time.Duration) {
		mu.Lock()
		samples = append(samples, sample{kind, late})
		mu.Unlock()
	}
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	dpubDelay := func(topic int) time.Duration { return 500*time.Millisecond + time.Duration(topic)*10*time.Millisecond }
	reqDelay := func(topic, ch int) time.Duration {
		return 200*time.Millisecond + time.Duration((topic*7+ch*13)%100)*5*time.Millisecond
	}

	ready := make(chan struct{}, topics*perTopic)
	for ti := range topics {
		for ci := range perTopic {
			c, err := wiretest.Dial(addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			c.Timeout, c.AnswerHeartbeats = 30*time.Second, true
			wg.Go(func() {
				fields := ""
				if ci >= 8 {
					fields = fmt.Sprintf(`"msg_timeout":%d`, msgTimeout.Milliseconds())
				}
				if _, err := c.Identify(fields); err != nil {
					fail(fmt.Errorf("identify: %w", err))
					return
				}
				if err := c.Subscribe(fmt.Sprintf("prec%03d", ti), fmt.Sprintf("c%d", ci), 1); err != nil {
					fail(err)
					return
				}
				ready <- struct{}{}

				var firstAt, reqDue time.Time
				for {
					m, err := c.ExpectMessage()
					if err != nil {
						fail(fmt.Errorf("topic %d channel %d: %w", ti, ci, err))
						return
					}
					now, ts, attempts, id := m.At, m.Timestamp, m.Attempts, m.ID
					switch {
					case attempts == 1:
						firstAt = now
						record("deferred", now.Sub(time.Unix(0, ts).Add(dpubDelay(ti))))
						switch {
						case ci < 5:
							_ = c.Send(protocol.Finish(id))
							return
						case ci < 8:
							d := reqDelay(ti, ci)
							reqDue = time.Now().Add(d)
							_ = c.Send(protocol.Requeue(id, d))
						}
					case ci < 8:
						record("requeue", now.Sub(reqDue))
						_ = c.Send(protocol.Finish(id))
						return
					default:
						record("timeout", now.Sub(firstAt.Add(msgTimeout)))
						_ = c.Send(protocol.Finish(id))
						return
					}
				}
			})
		}
	}
	for range topics * perTopic {
		select {
		case <-ready:
		case <-time.After(60 * time.Second):
			t.Fatal("consumers did not subscribe")
		}
	}

	pub := dialRaw(t, addr)
	for ti := range topics {
		pub.send(protocol.DeferredPublish(fmt.Sprintf("prec%03d", ti), dpubDelay(ti), []byte("x")))
		pub.expectOK()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("not every message was delivered")
	}
	if len(errs) > 0 {
		t.Fatalf("consumer errors: %v", errs)
	}

	// The daemon measures each timer-released delivery when it writes it to the connection:
	// that is the scheduler's promise, free of the test client's own scheduling noise on a
	// loaded machine.
	// The pump records a delivery just after writing it, so the last records may land after
	// the consumers have read their messages: wait for them.
	wantTimed := uint64(topics*perTopic + topics*3 + topics*2)
	testutil.Eventually(t, 10*time.Second, func() bool { return n.TimerLateness().Count >= wantTimed },
		"the daemon measured %d timer deliveries", wantTimed)
	server := n.TimerLateness()
	t.Logf("server-side lateness over %d timer deliveries: max %v, buckets <=%v: %v", server.Count, server.Max, server.Bounds, server.Buckets)
	if server.Count != wantTimed {
		t.Errorf("the daemon measured %d timer deliveries, want %d", server.Count, wantTimed)
	}
	if server.Max > 50*time.Millisecond {
		t.Errorf("a timer-released message was written %v after it was due, more than 50ms", server.Max)
	}

	// Seen from the consumers the figures include their own wake-up latency, so only gross
	// errors are checked there: nothing early, nothing a second late.
	byKind := map[string][]time.Duration{}
	for _, s := range samples {
		byKind[s.kind] = append(byKind[s.kind], s.lateness)
	}
	want := map[string]int{"deferred": topics * perTopic, "requeue": topics * 3, "timeout": topics * 2}
	for kind, lates := range byKind {
		slices.Sort(lates)
		if len(lates) != want[kind] {
			t.Errorf("%s: %d samples, want %d", kind, len(lates), want[kind])
		}
		p50, p99, worst := lates[len(lates)/2], lates[len(lates)*99/100], lates[len(lates)-1]
		t.Logf("client-side %s: %d deliveries, lateness p50 %v p99 %v max %v, earliest %v", kind, len(lates), p50, p99, worst, lates[0])
		if worst > time.Second {
			t.Errorf("%s: a delivery reached its consumer %v late", kind, worst)
		}
		// Deferred and requeued messages are measured from a due time the server cannot beat,
		// so any earliness is a bug. A timeout is measured from when the consumer received the
		// first delivery, after the server started the clock, so it may look early by as much
		// as that first delivery took.
		floor := time.Duration(0)
		if kind == "timeout" {
			floor = -250 * time.Millisecond
		}
		if lates[0] < floor {
			t.Errorf("%s: a delivery came %v early", kind, -lates[0])
		}
	}
}
