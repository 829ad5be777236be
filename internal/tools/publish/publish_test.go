package publish

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ternmq/tern/internal/testutil"
	"github.com/ternmq/tern/internal/tools/tooltest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestValidate(t *testing.T) {
	o := &Options{Topic: "bad topic!", Delimiter: "ab", Rate: -1, ProducerOpts: []string{"nope,1"}}
	err := o.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`--topic "bad topic!" is not a valid topic name`, "--delimiter must be a single byte",
		"--nsqd-tcp-address required", "--rate -1", `unknown option "nope"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if err := (&Options{Delimiter: "\n", NSQDTCPAddrs: []string{"a:1"}}).Validate(); err == nil || !strings.Contains(err.Error(), "--topic required") {
		t.Errorf("no topic: %v", err)
	}
}

// run runs to_nsq over input to the nodes until the end of the input.
func run(t *testing.T, o *Options, input io.Reader) error {
	t.Helper()
	p, err := New(o, testutil.Logger(t), input)
	if err != nil {
		t.Fatal(err)
	}
	return p.Run(testutil.Context(t))
}

func TestPublish(t *testing.T) {
	c := tooltest.Start(t, 1, false)
	tests := []struct {
		name      string
		input     string
		delimiter string
		want      []string
	}{
		{"lines", "one\ntwo\nthree\n", "\n", []string{"one", "two", "three"}},
		{"empty records are skipped", "\n\none\n\n", "\n", []string{"one"}},
		{"last record without a delimiter is whole", "one\ntwo", "\n", []string{"one", "two"}},
		{"comma", "a,b,c\n", ",", []string{"a", "b", "c\n"}},
		{"carriage returns are kept", "x\r\n", "\n", []string{"x\r"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topic := "pub" + string(rune('a'+i))
			o := &Options{Topic: topic, Delimiter: tt.delimiter, NSQDTCPAddrs: []string{c.TCP(0)}}
			if err := run(t, o, strings.NewReader(tt.input)); err != nil {
				t.Fatal(err)
			}
			got := c.Read(t, 0, topic, "check", len(tt.want))
			if !slices.Equal(got, tt.want) {
				t.Errorf("published %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPublishEveryNSQD(t *testing.T) {
	c := tooltest.Start(t, 2, false)
	var in strings.Builder
	for i := range 1000 {
		in.WriteString(strings.Repeat("x", i%50+1) + "\n")
	}
	o := &Options{Topic: "fan", Delimiter: "\n", NSQDTCPAddrs: []string{c.TCP(0), c.TCP(1)}}
	if err := run(t, o, strings.NewReader(in.String())); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if n := c.MessageCount(i, "fan"); n != 1000 {
			t.Errorf("node %d has %d messages, want 1000", i, n)
		}
	}
}

func TestRate(t *testing.T) {
	c := tooltest.Start(t, 1, false)
	o := &Options{Topic: "slow", Delimiter: "\n", NSQDTCPAddrs: []string{c.TCP(0)}, Rate: 20}
	start := time.Now()
	if err := run(t, o, strings.NewReader(strings.Repeat("m\n", 25))); err != nil {
		t.Fatal(err)
	}
	// One token at the start, then one every 50ms: 24 more take 1.2s.
	if d := time.Since(start); d < 1100*time.Millisecond {
		t.Errorf("25 messages at --rate=20 took %v, want at least 1.1s", d)
	}
	if n := c.MessageCount(0, "slow"); n != 25 {
		t.Errorf("%d messages, want 25", n)
	}
}

func TestUnreachableNSQD(t *testing.T) {
	o := &Options{Topic: "t", Delimiter: "\n", NSQDTCPAddrs: []string{"127.0.0.1:1"}}
	err := run(t, o, strings.NewReader("x\n"))
	if err == nil || !strings.Contains(err.Error(), "connect to nsqd 127.0.0.1:1") {
		t.Fatalf("Run = %v, want a connection error", err)
	}
}

// TestStopOnCancel: a signal stops to_nsq reading an endless input; what it read is
// published.
func TestStopOnCancel(t *testing.T) {
	c := tooltest.Start(t, 1, false)
	pr, pw := io.Pipe()
	t.Cleanup(func() { _ = pw.Close() })
	p, err := New(&Options{Topic: "endless", Delimiter: "\n", NSQDTCPAddrs: []string{c.TCP(0)}}, testutil.Logger(t), pr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	if _, err := io.WriteString(pw, "a\nb\n"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, tooltest.Timeout, func() bool { return c.MessageCount(0, "endless") == 2 }, "two messages published")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(tooltest.Timeout):
		t.Fatal("Run did not return after cancel")
	}
}
