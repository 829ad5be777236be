package nsqd

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/internal/wiretest"
	"github.com/ternmq/tern/nsqd/logstore"
)

// The channel's state machine, driven directly: fake subscribers stand in for connections,
// and the test plays each subscriber's pump by calling take.

// fakeSub is a subscriber with a settable RDY that counts its wake-ups. With closeAfter set,
// its RDY drops to 0 after that many reads of it, as when CLS arrives during a take.
type fakeSub struct {
	name       string
	rdy        atomic.Int64
	wakes      atomic.Int64
	closed     atomic.Bool
	closeAfter atomic.Int64
	reads      atomic.Int64
	busy       atomic.Bool // not parked: its pump is writing
}

func (f *fakeSub) wake()        { f.wakes.Add(1) }
func (f *fakeSub) parked() bool { return !f.busy.Load() }
func (f *fakeSub) readyCount() int64 {
	if n := f.closeAfter.Load(); n > 0 && f.reads.Add(1) > n {
		return 0
	}
	return f.rdy.Load()
}
func (f *fakeSub) close()             { f.closed.Store(true) }
func (f *fakeSub) stats() ClientStats { return ClientStats{ClientID: f.name} }

// nopHooks is a topic's daemon that does nothing.
type nopHooks struct{}

func (nopHooks) metadataChanged()                    {}
func (nopHooks) ephemeralTopicEmpty(*Topic)          {}
func (nopHooks) channelWork(*Channel)                {}
func (nopHooks) storageResult(error)                 {}
func (nopHooks) channelChanged(string, string, bool) {}

// testChannel is a channel of a topic whose log lives in a temporary directory, with a
// scheduler that is not running unless the test runs it.
type testChannel struct {
	*Channel
	t     *Topic
	sched *scheduler
}

func newTestChannel(t *testing.T, mutate func(*Options)) testChannel {
	t.Helper()
	opts := NewOptions()
	if mutate != nil {
		mutate(opts)
	}
	sched := newScheduler()
	tp, err := openTopic("chantest", topicEnv{
		dataPath: t.TempDir(),
		opts:     func() *Options { return opts },
		ids:      newIDGenerator(1, 0),
		sched:    sched,
		hooks:    nopHooks{},
		logger:   testutil.Logger(t),
		budget:   logstore.NewBudget(opts.MemQueueBytes),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tp.close() })
	ch, err := tp.getOrCreateChannel("ch")
	if err != nil {
		t.Fatal(err)
	}
	return testChannel{Channel: ch, t: tp, sched: sched}
}

// subscribe adds a fake subscriber with RDY rdy and a minute's msg_timeout.
func (tc testChannel) subscribe(t *testing.T, name string, rdy int64) (*fakeSub, *subscription) {
	t.Helper()
	f := &fakeSub{name: name}
	f.rdy.Store(rdy)
	sub, err := tc.Channel.subscribe(f, time.Minute, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return f, sub
}

// publish appends n messages as one batch, named prefix-0, prefix-1, ...
func (tc testChannel) publish(t *testing.T, prefix string, n int) {
	t.Helper()
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = fmt.Appendf(nil, "%s-%d", prefix, i)
	}
	if err := tc.t.publish(bodies, 0); err != nil {
		t.Fatal(err)
	}
}

// drain plays the pump of sub until take gives nothing more, and returns the bodies taken.
func (tc testChannel) drain(sub *subscription) []string {
	var got []string
	for {
		ds := tc.take(sub, nil, time.Now().UnixNano())
		if len(ds) == 0 {
			return got
		}
		for _, d := range ds {
			got = append(got, string(d.body))
		}
	}
}

func TestChannelSharesABatchInProportionToRoom(t *testing.T) {
	for _, tc := range []struct {
		name string
		rdy  []int64
		msgs int
		want []int
	}{
		{"equal room", []int64{1000, 1000, 1000, 1000}, 400, []int{100, 100, 100, 100}},
		{"unequal room", []int64{300, 100}, 400, []int{300, 100}},
		{"more messages than room", []int64{10, 30}, 400, []int{10, 30}},
		{"remainder spread", []int64{1000, 1000, 1000}, 10, []int{4, 3, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := newTestChannel(t, nil)
			subs := make([]*subscription, len(tc.rdy))
			fakes := make([]*fakeSub, len(tc.rdy))
			for i, rdy := range tc.rdy {
				fakes[i], subs[i] = ch.subscribe(t, fmt.Sprint("s", i), rdy)
			}
			ch.publish(t, "m", tc.msgs)
			// The first pump reads the batch and hands it out; the others are woken for
			// their shares.
			got := make([]int, len(subs))
			got[0] = len(ch.drain(subs[0]))
			for i := 1; i < len(subs); i++ {
				if fakes[i].wakes.Load() == 0 && tc.want[i] > 0 {
					t.Errorf("subscriber %d was given messages but not woken", i)
				}
				got[i] = len(ch.drain(subs[i]))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("shares %v, want %v", got, tc.want)
			}
		})
	}
}

// TestChannelSingleMessagesRotate publishes one message at a time: each goes to the next
// subscriber, whichever pump asks.
func TestChannelSingleMessagesRotate(t *testing.T) {
	ch := newTestChannel(t, nil)
	subs := make([]*subscription, 4)
	for i := range subs {
		_, subs[i] = ch.subscribe(t, fmt.Sprint("s", i), 1000)
	}
	counts := make([]int, len(subs))
	for i := range 40 {
		ch.publish(t, fmt.Sprint("single", i), 1)
		// The same pump asks every time; the message still rotates.
		counts[0] += len(ch.drain(subs[0]))
		for j := 1; j < len(subs); j++ {
			counts[j] += len(ch.drain(subs[j]))
		}
	}
	if !slices.Equal(counts, []int{10, 10, 10, 10}) {
		t.Errorf("40 single messages went %v, want 10 each", counts)
	}
}

// TestChannelStuckSubscriberDoesNotStarveOthers gives one subscriber RDY 10 and never lets it
// finish: once its room is used up, everything goes to the others.
func TestChannelStuckSubscriberDoesNotStarveOthers(t *testing.T) {
	ch := newTestChannel(t, nil)
	_, stuck := ch.subscribe(t, "stuck", 10)
	_, a := ch.subscribe(t, "a", 1000)
	_, b := ch.subscribe(t, "b", 1000)
	ch.publish(t, "m", 400)
	got := len(ch.drain(stuck)) // it reads for everyone, and takes its share
	gotA, gotB := ch.drainFin(t, a), ch.drainFin(t, b)
	if got > 10 || got+gotA+gotB != 400 {
		t.Fatalf("stuck %d, a %d, b %d: want at most 10 for stuck and 400 in all", got, gotA, gotB)
	}
	// Its share is in proportion to its room, so it fills up over a few batches, and then
	// the others get everything.
	for round := range 20 {
		ch.publish(t, fmt.Sprint("more", round), 100)
		n := len(ch.drain(stuck))
		if got += n; got > 10 {
			t.Fatalf("the stuck subscriber holds %d, over its RDY of 10", got)
		}
		if others := ch.drainFin(t, a) + ch.drainFin(t, b); others != 100-n {
			t.Fatalf("round %d: the others got %d of %d", round, others, 100-n)
		}
	}
	if got != 10 {
		t.Fatalf("after 20 batches the stuck subscriber holds %d, want its RDY of 10", got)
	}
}

// TestChannelLoweredRDYGivesBackItsShare checks that what a subscriber was assigned beyond a
// lowered RDY goes to the others, in order.
func TestChannelLoweredRDYGivesBackItsShare(t *testing.T) {
	ch := newTestChannel(t, nil)
	_, a := ch.subscribe(t, "a", 100)
	fb, b := ch.subscribe(t, "b", 100)
	ch.publish(t, "m", 100)
	if n := len(ch.drain(a)); n != 50 {
		t.Fatalf("a got %d, want 50", n)
	}
	fb.rdy.Store(0)
	ch.rdyChanged(b)
	if n := len(ch.drain(b)); n != 0 {
		t.Fatalf("b got %d with RDY 0", n)
	}
	if ch.Depth() != 50 {
		t.Fatalf("depth %d, want the 50 b gave back", ch.Depth())
	}
	// a finishes what it holds and takes what b gave back.
	for _, id := range inFlightIDs(ch.Channel, a) {
		if err := ch.finish(a, id); err != nil {
			t.Fatal(err)
		}
	}
	got := ch.drain(a)
	if len(got) != 50 || got[0] != "m-50" {
		t.Fatalf("a then got %d starting %v, want b's 50 starting m-50", len(got), got[:min(1, len(got))])
	}
}

// drainFin is drain by a subscriber that finishes each message as it takes it.
func (tc testChannel) drainFin(t *testing.T, sub *subscription) int {
	t.Helper()
	n := 0
	for {
		ds := tc.take(sub, nil, time.Now().UnixNano())
		if len(ds) == 0 {
			return n
		}
		for _, d := range ds {
			if err := tc.finish(sub, d.id); err != nil {
				t.Fatal(err)
			}
		}
		n += len(ds)
	}
}

// inFlightIDs lists the IDs of the messages in flight to sub.
func inFlightIDs(ch *Channel, sub *subscription) []uint64 {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	var ids []uint64
	for _, p := range ch.timers {
		if p.state == stateInFlight && p.owner == sub {
			ids = append(ids, p.id)
		}
	}
	return ids
}

// TestChannelUnsubscribeRequeuesAtOnce checks that a leaving subscriber's assigned and
// in-flight messages are ready again at once.
func TestChannelUnsubscribeRequeuesAtOnce(t *testing.T) {
	ch := newTestChannel(t, nil)
	_, a := ch.subscribe(t, "a", 5)
	_, b := ch.subscribe(t, "b", 5)
	ch.publish(t, "m", 10)
	if n := len(ch.drain(a)); n != 5 {
		t.Fatalf("a got %d, want 5", n)
	}
	// b was assigned its 5 and never took them; a leaves with 5 in flight.
	ch.unsubscribe(a)
	ch.unsubscribe(b)
	if d := ch.Depth(); d != 10 {
		t.Fatalf("depth %d after both left, want 10", d)
	}
	_, c := ch.subscribe(t, "c", 100)
	got := ch.drain(c)
	slices.Sort(got)
	want := make([]string, 10)
	for i := range want {
		want[i] = fmt.Sprint("m-", i)
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("c got %v, want every message once", got)
	}
}

func TestChannelFinishErrors(t *testing.T) {
	ch := newTestChannel(t, nil)
	_, a := ch.subscribe(t, "a", 1)
	_, b := ch.subscribe(t, "b", 0)
	ch.publish(t, "m", 1)
	ch.drain(a)
	id := inFlightIDs(ch.Channel, a)[0]
	if err := ch.finish(b, id); err != errNotOwner {
		t.Errorf("FIN of another's message: %v, want %v", err, errNotOwner)
	}
	if err := ch.touch(b, id, time.Now().UnixNano(), int64(time.Hour)); err != errNotOwner {
		t.Errorf("TOUCH of another's message: %v, want %v", err, errNotOwner)
	}
	if err := ch.requeue(a, id+1, 0, 0); err != errNotInFlight {
		t.Errorf("REQ of an unknown message: %v, want %v", err, errNotInFlight)
	}
	if err := ch.finish(a, id); err != nil {
		t.Fatal(err)
	}
	if err := ch.finish(a, id); err != errNotInFlight {
		t.Errorf("second FIN: %v, want %v", err, errNotInFlight)
	}
}

// TestChannelClosedIsNeverScheduled checks that a channel being deleted is never registered
// with the scheduler again, by a REQ racing the deletion or by a fire already under way.
func TestChannelClosedIsNeverScheduled(t *testing.T) {
	ch := newTestChannel(t, nil)
	_, a := ch.subscribe(t, "a", 2)
	ch.publish(t, "m", 2)
	ch.drain(a)
	ids := inFlightIDs(ch.Channel, a)
	ch.close()
	if err := ch.requeue(a, ids[0], int64(time.Millisecond), time.Now().UnixNano()); err != nil {
		t.Fatal(err)
	}
	ch.fire(time.Now().Add(time.Hour).UnixNano())
	ch.sched.mu.Lock()
	scheduled := ch.slot.index >= 0 || len(ch.sched.items) > 0
	ch.sched.mu.Unlock()
	if scheduled {
		t.Fatal("a closed channel was registered with the scheduler")
	}
}

// TestChannelFireIsBounded checks that one fire releases at most fireBatch messages and asks
// to be called again at once for the rest.
func TestChannelFireIsBounded(t *testing.T) {
	ch := newTestChannel(t, nil)
	now := time.Now().UnixNano()
	n := fireBatch + 500
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = []byte("d")
	}
	if err := ch.t.publish(bodies, int64(time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, a := ch.subscribe(t, "a", 1)
	ch.take(a, nil, now) // reads the deferred messages into the timer heap
	ch.mu.Lock()
	deferred := ch.deferred
	ch.mu.Unlock()
	if deferred == 0 {
		t.Fatal("nothing deferred")
	}
	later := now + int64(time.Second)
	ch.fire(later)
	ch.mu.Lock()
	released, again := len(ch.ready)-ch.readyAt, ch.schedAt
	ch.mu.Unlock()
	if released != fireBatch {
		t.Errorf("one fire released %d, want %d", released, fireBatch)
	}
	if again == 0 || again > later {
		t.Errorf("after a bounded fire the channel asked to be called at %d, want now (%d) or earlier", again, later)
	}
	ch.fire(later)
	ch.mu.Lock()
	released = len(ch.ready) - ch.readyAt
	ch.mu.Unlock()
	if released != n {
		t.Errorf("two fires released %d, want all %d", released, n)
	}
}

// TestCheckpointEncodingInChunks checks that a checkpoint of more pending messages than one
// chunk lists every one of them, and nothing the cursor has not passed.
func TestCheckpointEncodingInChunks(t *testing.T) {
	ch := newTestChannel(t, nil)
	n := 3*checkpointChunk + 17
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = fmt.Appendf(nil, "%d", i)
	}
	if err := ch.t.publish(bodies, int64(time.Hour)); err != nil {
		t.Fatal(err)
	}
	_, a := ch.subscribe(t, "a", 1)
	for ch.Channel.cursor.Seq < uint64(n) {
		ch.take(a, nil, time.Now().UnixNano())
	}
	buf, _, ok := ch.encodeCheckpoint(true, 1)
	if !ok {
		t.Fatal("nothing encoded")
	}
	_, cur, runs, err := decodeCheckpoint(buf)
	if err != nil {
		t.Fatal(err)
	}
	next := uint64(0)
	for _, r := range runs {
		if r.pos.Seq != next || r.due == 0 {
			t.Fatalf("run %+v after %d messages", r, next)
		}
		next += r.n
	}
	if cur.Seq != uint64(n) || next != uint64(n) {
		t.Fatalf("checkpoint cursor %d with %d messages, want %d and %d", cur.Seq, next, n, n)
	}
}

// TestChannelTakeStopsWhenRDYDropsMidway has a subscriber's RDY drop to 0 while its pump is
// in take, with records left to read: take must return, not spin (it did, holding shutdown).
func TestChannelTakeStopsWhenRDYDropsMidway(t *testing.T) {
	ch := newTestChannel(t, nil)
	f, sub := ch.subscribe(t, "closing", 5)
	ch.publish(t, "m", 10)
	f.closeAfter.Store(1) // the take sees RDY 5 once, then 0
	done := make(chan []delivery, 1)
	go func() { done <- ch.take(sub, nil, time.Now().UnixNano()) }()
	select {
	case got := <-done:
		if len(got) != 0 {
			t.Errorf("took %d with RDY 0", len(got))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("take spins when the subscriber's RDY drops to 0 during it")
	}
}

// TestChannelReadsNoMoreThanRoom checks that a read takes no more than the subscribers have
// room for, less what is already read and not handed out: with delivery paused, reading
// again and again does not pull the backlog into memory.
func TestChannelReadsNoMoreThanRoom(t *testing.T) {
	ch := newTestChannel(t, nil)
	ch.subscribe(t, "a", 3)
	ch.publish(t, "m", 1000)
	ch.mu.Lock()
	ch.paused = true // nothing is handed out
	for range 10 {
		ch.readMu.Lock()
		ch.readLocked(time.Now().UnixNano())
	}
	ready := len(ch.ready) - ch.readyAt
	ch.mu.Unlock()
	if ready > 3 {
		t.Fatalf("%d records read into memory for a subscriber with room for 3", ready)
	}
}

// TestChannelFailedReadDoesNotSpin checks that a read that fails does not wake the waiting
// subscribers, which would retry it at once, for ever.
func TestChannelFailedReadDoesNotSpin(t *testing.T) {
	ch := newTestChannel(t, nil)
	fa, a := ch.subscribe(t, "a", 5)
	ch.publish(t, "m", 10)
	if err := ch.t.log.Close(); err != nil { // every read fails from now on
		t.Fatal(err)
	}
	for range 5 {
		if got := ch.take(a, nil, time.Now().UnixNano()); len(got) != 0 {
			t.Fatalf("took %d from a closed log", len(got))
		}
	}
	if n := fa.wakes.Load(); n != 0 {
		t.Fatalf("failed reads woke the subscriber %d times: its pump would spin", n)
	}
}

// TestChannelUnsubscribeRequeuesEveryInFlight builds a timer heap in which removing one of
// the leaving subscriber's messages moves another of them to a slot already passed, and
// checks that every one of them is made ready.
func TestChannelUnsubscribeRequeuesEveryInFlight(t *testing.T) {
	ch := newTestChannel(t, nil)
	_, a := ch.subscribe(t, "a", 10)
	_, b := ch.subscribe(t, "b", 10)
	ch.mu.Lock()
	for i, due := range []int64{1, 2, 10, 3, 4, 11, 12, 5} {
		owner := b
		if due == 11 || due == 5 {
			owner = a
		}
		p := &pending{id: uint64(i + 1), state: stateInFlight, owner: owner, due: due, heapIndex: i}
		ch.timers = append(ch.timers, p)
		ch.byID[p.id] = p
		owner.inFlight.Add(1)
		ch.inFlight++
	}
	ch.mu.Unlock()
	ch.unsubscribe(a)
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for i, p := range ch.timers {
		if p.owner == a {
			t.Errorf("message due at %d still in flight to the departed subscriber", p.due)
		}
		if p.heapIndex != i {
			t.Errorf("heap index %d at slot %d", p.heapIndex, i)
		}
		if i > 0 && ch.timers[(i-1)/2].due > p.due {
			t.Errorf("heap order broken at slot %d", i)
		}
	}
	if ch.inFlight != 6 || len(ch.ready)-ch.readyAt != 2 || a.inFlight.Load() != 0 {
		t.Errorf("in flight %d, ready %d, departed holds %d: want 6, 2 and 0", ch.inFlight, len(ch.ready)-ch.readyAt, a.inFlight.Load())
	}
}

// TestPausedTopicStopsAtThePausePoint checks that a channel reads nothing published after its
// topic was paused, even when the read steps over records that take no room (deferred ones)
// or a damaged one: the read is bounded by the pause point, not by a count.
func TestPausedTopicStopsAtThePausePoint(t *testing.T) {
	t.Run("after deferred messages", func(t *testing.T) {
		ch := newTestChannel(t, nil)
		if err := ch.t.publish([][]byte{[]byte("d0"), []byte("d1"), []byte("d2")}, int64(time.Hour)); err != nil {
			t.Fatal(err)
		}
		ch.t.setPaused(true)
		ch.publish(t, "after-pause", 3)
		_, a := ch.subscribe(t, "a", 100)
		if got := ch.drain(a); len(got) > 0 {
			t.Errorf("a paused topic delivered %v", got)
		}
	})
	t.Run("after a damaged record", func(t *testing.T) {
		ch := newTestChannel(t, func(o *Options) { o.MaxBytesPerFile = 1024 })
		ch.publish(t, "m", 10)
		ch.t.setPaused(true)
		ch.publish(t, "after-pause", 3)
		ch.t.log.DropHot(1 << 62)
		flipInLog(t, ch.t.dir, "m-5")
		_, a := ch.subscribe(t, "a", 100)
		got := ch.drain(a)
		for _, g := range got {
			if strings.HasPrefix(g, "after-pause") {
				t.Fatalf("a paused topic delivered %v", got)
			}
		}
		if len(got) != 9 {
			t.Errorf("delivered %v, want the 9 undamaged messages from before the pause", got)
		}
	})
}

// subscribeWaiting subscribes n fake subscribers with RDY 10 and has each find the channel
// empty, so that all of them wait.
func subscribeWaiting(t *testing.T, ch testChannel, n int) ([]*fakeSub, []*subscription) {
	t.Helper()
	fakes := make([]*fakeSub, n)
	subs := make([]*subscription, n)
	for i := range subs {
		fakes[i], subs[i] = ch.subscribe(t, fmt.Sprint("s", i), 10)
	}
	waitAll(t, ch, fakes, subs)
	return fakes, subs
}

// waitAll has every subscriber's pump find the channel empty, so that all of them wait, and
// clears their wake counts.
func waitAll(t *testing.T, ch testChannel, fakes []*fakeSub, subs []*subscription) {
	t.Helper()
	for i, sub := range subs {
		if got := ch.drain(sub); len(got) != 0 {
			t.Fatalf("subscriber %d took %v from an empty channel", i, got)
		}
		fakes[i].wakes.Store(0)
	}
}

// wokenBy returns the subscribers woken since the counts were last cleared.
func wokenBy(fakes []*fakeSub) []int {
	var woken []int
	for i, f := range fakes {
		if f.wakes.Load() > 0 {
			woken = append(woken, i)
		}
	}
	return woken
}

// publishOneWakesOne publishes one message and checks that it woke exactly one of fakes; it
// returns that one's index, its wake count cleared.
func publishOneWakesOne(t *testing.T, ch testChannel, fakes []*fakeSub, prefix string) int {
	t.Helper()
	ch.publish(t, prefix, 1)
	woken := wokenBy(fakes)
	if len(woken) != 1 {
		t.Fatalf("one publish woke subscribers %v, want one", woken)
	}
	fakes[woken[0]].wakes.Store(0)
	return woken[0]
}

// TestChannelPublishWakesOneWaiting checks that a publish wakes one of the subscribers
// waiting on an empty channel, not all of them: the woken one reads for everyone and wakes
// each subscriber it hands a share to.
func TestChannelPublishWakesOneWaiting(t *testing.T) {
	ch := newTestChannel(t, nil)
	fakes, subs := subscribeWaiting(t, ch, 50)
	first := publishOneWakesOne(t, ch, fakes, "one")
	// Its pump reads the message for everyone: it goes to whoever's turn it is, woken.
	got := ch.drain(subs[first])
	if len(got) == 0 {
		woken := wokenBy(fakes)
		if len(woken) != 1 {
			t.Fatalf("the message read by %d was handed to %v, want one subscriber", first, woken)
		}
		got = ch.drain(subs[woken[0]])
	}
	if !slices.Equal(got, []string{"one-0"}) {
		t.Fatalf("took %v, want [one-0]", got)
	}

	// A batch wakes, through the share each gets, every subscriber with room.
	waitAll(t, ch, fakes, subs)
	ch.publish(t, "batch", 400) // under the room left: each has 10 but one, 9

	first = wokenBy(fakes)[0]
	total := len(ch.drain(subs[first]))
	for i, sub := range subs {
		if i == first {
			continue
		}
		if fakes[i].wakes.Load() == 0 {
			t.Fatalf("subscriber %d was not woken for its share", i)
		}
		total += len(ch.drain(sub))
	}
	if total != 400 {
		t.Fatalf("took %d of 400", total)
	}
}

// TestChannelUnusedWakeIsPassedOn checks that a wake is not lost when the subscriber it went
// to cannot use it: it lost its room before its pump ran, it left, or it sent CLS.
func TestChannelUnusedWakeIsPassedOn(t *testing.T) {
	for _, tc := range []struct {
		name string
		lose func(testChannel, *fakeSub, *subscription)
	}{
		{"RDY 0", func(ch testChannel, f *fakeSub, sub *subscription) {
			f.rdy.Store(0)
			if got := ch.take(sub, nil, time.Now().UnixNano()); len(got) != 0 {
				panic("took with RDY 0")
			}
		}},
		{"unsubscribed", func(ch testChannel, f *fakeSub, sub *subscription) {
			ch.unsubscribe(sub)
		}},
		{"CLS", func(ch testChannel, f *fakeSub, sub *subscription) {
			// A closing client's RDY reads 0, and its pump no longer takes.
			f.rdy.Store(0)
			ch.rdyChanged(sub)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := newTestChannel(t, nil)
			fakes, subs := subscribeWaiting(t, ch, 3)
			first := publishOneWakesOne(t, ch, fakes, "m")
			tc.lose(ch, fakes[first], subs[first])
			fakes[first].wakes.Store(0)
			next := wokenBy(fakes)
			if len(next) != 1 || next[0] == first {
				t.Fatalf("after %d could not take, woken %v, want another one", first, next)
			}
			if got := ch.drain(subs[next[0]]); !slices.Equal(got, []string{"m-0"}) {
				t.Fatalf("took %v, want [m-0]", got)
			}
		})
	}
}

// TestChannelWakeSkipsBusyPumps checks that a wake goes to a subscriber whose pump is parked,
// not to one busy writing (perhaps to a client that stopped reading), and that with none
// parked every waiting subscriber is woken: no message waits on one stuck pump.
func TestChannelWakeSkipsBusyPumps(t *testing.T) {
	ch := newTestChannel(t, nil)
	fakes, subs := subscribeWaiting(t, ch, 3)
	fakes[0].busy.Store(true)
	ch.publish(t, "m", 1)
	if woken := wokenBy(fakes); !slices.Equal(woken, []int{1}) {
		t.Fatalf("with s0 busy, woken %v, want [1]", woken)
	}
	if got := ch.drain(subs[1]); len(got) == 0 {
		// s1 read it for everyone and handed it on: whoever got it was woken.
		var all []string
		for i, sub := range subs {
			if fakes[i].wakes.Load() > 0 || i == 1 {
				all = append(all, ch.drain(sub)...)
			}
		}
		if !slices.Equal(all, []string{"m-0"}) {
			t.Fatalf("took %v, want [m-0]", all)
		}
	}

	waitAll(t, ch, fakes, subs)
	for _, f := range fakes {
		f.busy.Store(true)
	}
	ch.publish(t, "n", 1)
	if woken := wokenBy(fakes); len(woken) != len(fakes) {
		t.Fatalf("with every pump busy, woken %v, want all", woken)
	}
}

// TestIdleConsumersParkAndOneIsWoken checks with real connections that a consumer whose pump
// waits for messages reports itself parked, so that a publish wakes one consumer rather than
// all: the channel's waiting list keeps the others, and the message is delivered.
func TestIdleConsumersParkAndOneIsWoken(t *testing.T) {
	d, _ := startTestDaemon(t, t.TempDir(), nil)
	addr := d.TCPAddr().String()
	conns := make([]*wiretest.Conn, 4)
	for i := range conns {
		c, err := wiretest.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if err := c.Subscribe("park", "ch", 10); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	var ch *Channel
	parked := func() int {
		ch.mu.Lock()
		defer ch.mu.Unlock()
		n := 0
		for _, s := range ch.waiting {
			if s.sub.parked() {
				n++
			}
		}
		return n
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		if tp := d.Topic("park"); tp != nil {
			ch = tp.Channel("ch")
		}
		return ch != nil && parked() == len(conns)
	}, "every consumer waiting, its pump parked")

	if err := d.Topic("park").publish([][]byte{[]byte("one")}, 0); err != nil {
		t.Fatal(err)
	}
	// The other three stay on the list, parked, until something is there for them.
	ch.mu.Lock()
	waiting := len(ch.waiting)
	ch.mu.Unlock()
	if waiting < len(conns)-1 {
		t.Fatalf("%d consumers left waiting after one publish, want at least %d", waiting, len(conns)-1)
	}
	got := make(chan string, len(conns))
	for _, c := range conns {
		go func() {
			if m, err := c.ExpectMessage(); err == nil {
				got <- m.Body
			}
		}()
	}
	select {
	case body := <-got:
		if body != "one" {
			t.Fatalf("delivered %q, want one", body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the message was not delivered")
	}
}
