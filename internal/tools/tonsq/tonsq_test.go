package tonsq

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/internal/tools/toolflag"
	"github.com/ternmq/tern/internal/tools/tooltest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(o *Options)
		want   []string
	}{
		{"nothing", func(*Options) {}, []string{
			"--nsqd-tcp-address or --lookupd-http-address required", "--topic and --channel are required",
			"--destination-nsqd-tcp-address required",
		}},
		{"bad values", func(o *Options) {
			o.Topics, o.Source.NSQDTCPAddrs, o.DestNSQDTCPAddrs = []string{"t"}, []string{"a:1"}, []string{"b:1"}
			o.DestinationTopic, o.Mode, o.RequireJSONValue, o.StatusEvery = "bad topic", "multicast", "x", -1
			o.ProducerOpts, o.ConsumerOpts = []string{"low_rdy_timeout,1s"}, []string{"max_in_flight,1"}
		}, []string{
			`--destination-topic "bad topic" is not a valid topic name`, `--mode "multicast"`,
			"--require-json-value needs --require-json-field", "--status-every should not be negative",
			"--producer-opt", "use --max-in-flight",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := NewOptions()
			tt.mutate(o)
			err := o.Validate()
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestFilter(t *testing.T) {
	tests := []struct {
		name      string
		field     string
		value     string
		whitelist []string
		body      string
		want      string // "" means not passed
		err       bool
	}{
		{"no filter passes anything", "", "", nil, "not json", "not json", false},
		{"not JSON is dropped", "a", "", nil, "not json", "", false},
		{"field present", "a", "", nil, `{"a":1}`, `{"a":1}`, false},
		{"field absent", "a", "", nil, `{"b":1}`, "", false},
		{"field absent with a value required requeues", "a", "x", nil, `{"b":1}`, "", true},
		{"string value", "a", "x", nil, `{"a":"x"}`, `{"a":"x"}`, false},
		{"other string", "a", "x", nil, `{"a":"y"}`, "", false},
		{"number value", "n", "5", nil, `{"n":5.0}`, `{"n":5.0}`, false},
		{"number as a string", "n", "5", nil, `{"n":"5"}`, `{"n":"5"}`, false},
		{"other number", "n", "5", nil, `{"n":6}`, "", false},
		{"object never matches", "a", "x", nil, `{"a":{"x":1}}`, "", false},
		{"whitelist", "", "", []string{"keep", "big", "gone"}, `{"keep":"k","drop":1,"big":12345678901234567890}`, `{"big":12345678901234567890,"keep":"k"}`, false},
		{"whitelist and field", "a", "", []string{"b"}, `{"a":1,"b":2}`, `{"b":2}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFilter(&Options{RequireJSONField: tt.field, RequireJSONValue: tt.value, WhitelistJSONFields: tt.whitelist})
			got, pass, err := f.apply([]byte(tt.body))
			if (err != nil) != tt.err {
				t.Fatalf("err = %v", err)
			}
			if tt.want == "" && pass || tt.want != "" && (!pass || string(got) != tt.want) {
				t.Errorf("apply(%s) = %s, %v; want %q", tt.body, got, pass, tt.want)
			}
		})
	}
}

// start runs nsq_to_nsq until the returned stop is called (or the test ends).
func start(t *testing.T, o *Options, configure func(*ToNSQ)) func() {
	t.Helper()
	tn, err := New(o, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if configure != nil {
		configure(tn)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tn.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(tooltest.Timeout):
				t.Errorf("Run did not return")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestCopy(t *testing.T) {
	src, dst := tooltest.Start(t, 1, true), tooltest.Start(t, 2, false)
	t.Run("topics to one destination topic", func(t *testing.T) {
		src.Publish(t, 0, "a", "a1", "a2")
		src.Publish(t, 0, "b", "b1")
		o := NewOptions()
		o.Topics, o.DestinationTopic = []string{"a", "b"}, "all"
		o.Source.NSQDTCPAddrs, o.DestNSQDTCPAddrs = []string{src.TCP(0)}, []string{dst.TCP(0)}
		o.ProducerOpts = []string{"snappy"}
		start(t, o, nil)
		got := dst.Read(t, 0, "all", "check", 3)
		slices.Sort(got)
		if !slices.Equal(got, []string{"a1", "a2", "b1"}) {
			t.Errorf("copied %q", got)
		}
	})
	t.Run("round-robin through the lookupd, same topic name", func(t *testing.T) {
		src.Publish(t, 0, "rr", "1", "2", "3", "4")
		src.WaitRegistered(t, 0, "rr")
		o := NewOptions()
		o.Topics, o.Mode = []string{"rr"}, "round-robin"
		o.Source = toolflag.Source{LookupdHTTPAddrs: []string{src.LookupdHTTP()}}
		o.DestNSQDTCPAddrs = []string{dst.TCP(0), dst.TCP(1)}
		start(t, o, nil)
		testutil.Eventually(t, tooltest.Timeout, func() bool { return dst.MessageCount(0, "rr")+dst.MessageCount(1, "rr") == 4 }, "4 copied")
		if dst.MessageCount(0, "rr") != 2 {
			t.Errorf("split %d / %d", dst.MessageCount(0, "rr"), dst.MessageCount(1, "rr"))
		}
	})
	t.Run("hostpool turns away from a dead destination", func(t *testing.T) {
		src.Publish(t, 0, "hp", "1", "2", "3", "4", "5")
		o := NewOptions()
		o.Topics = []string{"hp"}
		o.Source.NSQDTCPAddrs = []string{src.TCP(0)}
		o.DestNSQDTCPAddrs = []string{"127.0.0.1:1", dst.TCP(1)}
		o.ConsumerOpts = []string{"default_requeue_delay,10ms", "backoff_multiplier,10ms"}
		start(t, o, func(tn *ToNSQ) { tn.publishTimeout = 200 * time.Millisecond })
		testutil.Eventually(t, tooltest.Timeout, func() bool { return dst.MessageCount(1, "hp") == 5 }, "5 copied to the live destination")
	})
	t.Run("json filter", func(t *testing.T) {
		src.Publish(t, 0, "js", `{"kind":"a","v":1,"x":2}`, `{"kind":"b","v":2}`, `nope`, `{"kind":"a","v":3}`)
		o := NewOptions()
		o.Topics, o.RequireJSONField, o.RequireJSONValue, o.WhitelistJSONFields = []string{"js"}, "kind", "a", []string{"v"}
		o.Source.NSQDTCPAddrs, o.DestNSQDTCPAddrs = []string{src.TCP(0)}, []string{dst.TCP(0)}
		start(t, o, nil)
		got := dst.Read(t, 0, "js", "check", 2)
		slices.Sort(got)
		if !slices.Equal(got, []string{`{"v":1}`, `{"v":3}`}) {
			t.Errorf("copied %q", got)
		}
	})
}

// TestShutdownLosesNothing: stopped while copying, every message is either on the
// destination or still on the source channel.
func TestShutdownLosesNothing(t *testing.T) {
	src, dst := tooltest.Start(t, 1, false), tooltest.Start(t, 1, false)
	const n = 3000
	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = "m"
	}
	src.Publish(t, 0, "flood", bodies...)
	o := NewOptions()
	o.Topics = []string{"flood"}
	o.Source.NSQDTCPAddrs, o.DestNSQDTCPAddrs = []string{src.TCP(0)}, []string{dst.TCP(0)}
	stop := start(t, o, nil)
	testutil.Eventually(t, tooltest.Timeout, func() bool { return dst.MessageCount(0, "flood") > 0 }, "copying")
	stop()
	ts, _ := src.Nodes[0].TopicStats("flood")
	left := ts.Channels[0].Depth + int64(ts.Channels[0].InFlightCount)
	if copied := int64(dst.MessageCount(0, "flood")); copied+left != n {
		t.Errorf("%d copied + %d left = %d, want %d", copied, left, copied+left, n)
	}
}
