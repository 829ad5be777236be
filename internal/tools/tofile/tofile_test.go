package tofile

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
		{"no topic nor source", func(*Options) {}, []string{
			"--nsqd-tcp-address or --lookupd-http-address required", "--topic or --topic-pattern required",
			"--lookupd-http-address must be specified when no --topic specified",
		}},
		{"pattern needs lookupd", func(o *Options) {
			o.TopicPattern = "x"
			o.Source.NSQDTCPAddrs = []string{"a:1"}
		}, []string{"--lookupd-http-address must be specified when no --topic specified"}},
		{"bad values", func(o *Options) {
			o.Topics, o.Source.NSQDTCPAddrs = []string{"t"}, []string{"a:1"}
			o.GZIPLevel, o.TopicPattern, o.LogLevel, o.Channel, o.SyncInterval = 10, "(", "loud", "", 0
			o.HTTPClientConnectTimeout, o.HTTPClientRequestTimeout = 0, 0
		}, []string{
			"invalid --gzip-level value (10), should be 1-9", "--topic-pattern: error parsing regexp", "--log-level is invalid",
			"--channel required", "--sync-interval should be positive", "--http-client-connect-timeout should be positive",
			"--http-client-request-timeout should be positive",
		}},
		{"rev needed", func(o *Options) {
			o.Topics, o.Source.NSQDTCPAddrs = []string{"t"}, []string{"a:1"}
			o.GZIP, o.FilenameFormat = true, "<TOPIC>.log"
		}, []string{"missing <REV> in --filename-format when gzip, rotation, or work dir enabled"}},
		{"rev needed for a work dir", func(o *Options) {
			o.Topics, o.Source.NSQDTCPAddrs = []string{"t"}, []string{"a:1"}
			o.WorkDir, o.FilenameFormat = "/work", "<TOPIC>.log"
		}, []string{"missing <REV>"}},
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

func TestFilenameFormat(t *testing.T) {
	pid := fmt.Sprint(os.Getpid())
	tests := []struct {
		name   string
		mutate func(o *Options)
		want   string
	}{
		{"default drops REV", func(*Options) {}, "t.web1.<DATETIME>.log"},
		{"gzip keeps REV and adds .gz", func(o *Options) { o.GZIP = true }, "t.web1<REV>.<DATETIME>.log.gz"},
		{"rotation keeps REV", func(o *Options) { o.RotateSize = 1 }, "t.web1<REV>.<DATETIME>.log"},
		{"host identifier", func(o *Options) { o.HostIdentifier = "<SHORT_HOST>-<HOSTNAME>" }, "t.web1-web1.example.com.<DATETIME>.log"},
		{"pid", func(o *Options) { o.FilenameFormat = "<TOPIC>/<PID>.gz"; o.GZIP = true }, "t/" + pid + ".gz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := NewOptions()
			tt.mutate(o)
			if got := filenameFormat(o, "t", "web1.example.com"); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	if got := withRev("a<REV>.log", 7); got != "a-000007.log" {
		t.Errorf("withRev = %q", got)
	}
}

func TestStrftime(t *testing.T) {
	at := time.Date(2024, time.March, 5, 14, 7, 9, 0, time.FixedZone("XYZ", -3*3600))
	tests := []struct{ format, want string }{
		{"%Y-%m-%d_%H", "2024-03-05_14"},
		{"%y%b%B%a%A", "24MarMarchTueTuesday"},
		{"%I:%M:%S %p %Z %z", "02:07:09 PM XYZ -0300"},
		{"100%% v2 %q %", "100% v2 %q %"},
	}
	for _, tt := range tests {
		if got := strftime(tt.format, at); got != tt.want {
			t.Errorf("strftime(%q) = %q, want %q", tt.format, got, tt.want)
		}
	}
}

// start runs nsq_to_file with o until the test stops it with the returned function, which
// fails the test if Run fails.
func start(t *testing.T, o *Options) (*ToFile, func()) {
	t.Helper()
	tf, err := New(o, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tf.Run(ctx) }()
	stopped := false
	stop := func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(tooltest.Timeout):
			t.Errorf("Run did not return after cancel")
		}
	}
	t.Cleanup(stop)
	return tf, stop
}

// files returns the files under dir, relative, sorted.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			out = append(out, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// lines returns the lines of every file under dir, gunzipped where named .gz.
func lines(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, name := range files(t, dir) {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		var r io.Reader = f
		if strings.HasSuffix(name, ".gz") {
			zr, err := gzip.NewReader(f)
			if err != nil {
				_ = f.Close()
				if err == io.EOF {
					continue // opened, nothing written
				}
				t.Fatalf("%s: %v", name, err)
			}
			r = zr
		}
		b, err := io.ReadAll(r)
		_ = f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if s := strings.TrimSuffix(string(b), "\n"); s != "" {
			out = append(out, strings.Split(s, "\n")...)
		}
	}
	slices.Sort(out)
	return out
}

func bodies(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}

// channelEmpty reports whether the channel on node holds nothing: every message finished.
func channelEmpty(c *tooltest.Cluster, node int, topic, channel string) func() bool {
	return func() bool {
		ts, ok := c.Nodes[node].TopicStats(topic)
		if !ok {
			return false
		}
		for _, ch := range ts.Channels {
			if ch.Name == channel {
				return ch.Depth == 0 && ch.InFlightCount == 0 && ch.DeferredCount == 0
			}
		}
		return false
	}
}

func options(c *tooltest.Cluster, out string, mutate func(o *Options)) *Options {
	o := NewOptions()
	o.Source.NSQDTCPAddrs = []string{c.TCP(0)}
	o.OutputDir = out
	o.SyncInterval = 50 * time.Millisecond
	o.HostIdentifier = "host"
	mutate(o)
	return o
}

func TestWrite(t *testing.T) {
	c := tooltest.Start(t, 1, false)
	hour := strftime("%Y-%m-%d_%H", time.Now())
	tests := []struct {
		name   string
		mutate func(o *Options)
		n      int
		check  func(t *testing.T, names []string)
	}{
		{"plain file", func(*Options) {}, 50, func(t *testing.T, names []string) {
			if len(names) != 1 || names[0] != "plain.host."+hour+".log" && !strings.HasPrefix(names[0], "plain.host.") {
				t.Errorf("files %q", names)
			}
		}},
		{"gzip", func(o *Options) { o.GZIP, o.GZIPLevel = true, 9 }, 50, func(t *testing.T, names []string) {
			if len(names) != 1 || !strings.HasPrefix(names[0], "gzip.host-000000.") || !strings.HasSuffix(names[0], ".log.gz") {
				t.Errorf("files %q", names)
			}
		}},
		{"rotate by size", func(o *Options) { o.RotateSize = 30 }, 20, func(t *testing.T, names []string) {
			// Each line is 13 bytes: a file takes three before it is over 30.
			if len(names) < 6 || !strings.Contains(names[1], "host-000001.") {
				t.Errorf("files %q", names)
			}
		}},
		{"directories in the format", func(o *Options) { o.FilenameFormat = "<TOPIC>/<DATETIME>/<HOST><REV>.log"; o.DatetimeFormat = "%Y" }, 5, func(t *testing.T, names []string) {
			if want := filepath.Join("directories", time.Now().Format("2006"), "host.log"); len(names) != 1 || names[0] != want {
				t.Errorf("files %q, want %q", names, want)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topic := strings.Fields(tt.name)[0]
			want := bodies("message", tt.n)
			c.Publish(t, 0, topic, want...)
			out := t.TempDir()
			_, stop := start(t, options(c, out, func(o *Options) {
				o.Topics = []string{topic}
				tt.mutate(o)
			}))
			testutil.Eventually(t, tooltest.Timeout, channelEmpty(c, 0, topic, "nsq_to_file"), "every message finished")
			stop()
			if got := lines(t, out); !slices.Equal(got, want) {
				t.Errorf("lines %q, want %q", got, want)
			}
			tt.check(t, files(t, out))
		})
	}
}

// TestWorkDir: files are written in --work-dir and moved to --output-dir when closed,
// never over an existing file.
func TestWorkDir(t *testing.T) {
	c := tooltest.Start(t, 1, false)
	work, out := t.TempDir(), t.TempDir()
	hour := strftime("%Y-%m-%d_%H", time.Now())
	// A file from an earlier run takes revision 0 in the output directory.
	if err := os.WriteFile(filepath.Join(out, "w.host-000000."+hour+".log.gz"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c.Publish(t, 0, "w", "one", "two")
	_, stop := start(t, options(c, out, func(o *Options) { o.Topics, o.WorkDir, o.GZIP = []string{"w"}, work, true }))
	testutil.Eventually(t, tooltest.Timeout, channelEmpty(c, 0, "w", "nsq_to_file"), "every message finished")
	if got := files(t, work); len(got) != 1 || got[0] != "w.host-000001."+hour+".log.gz" {
		t.Errorf("work dir %q", got)
	}
	stop()
	if got := files(t, work); len(got) != 0 {
		t.Errorf("work dir not empty after the stop: %q", got)
	}
	if got := files(t, out); len(got) != 2 || got[1] != "w.host-000001."+hour+".log.gz" {
		t.Errorf("output dir %q", got)
	}
	if got := lines(t, out); !slices.Equal(got, []string{"one", "two"}) {
		t.Errorf("lines %q", got)
	}
}

// TestRotate: Rotate (SIGHUP) and --rotate-interval start new files.
func TestRotate(t *testing.T) {
	c := tooltest.Start(t, 1, false)
	out := t.TempDir()
	tf, stop := start(t, options(c, out, func(o *Options) { o.Topics, o.GZIP, o.SkipEmptyFiles = []string{"r"}, true, true }))
	c.Publish(t, 0, "r", "before")
	testutil.Eventually(t, tooltest.Timeout, channelEmpty(c, 0, "r", "nsq_to_file"), "first message finished")
	tf.Rotate()
	// The rotation is asynchronous: publish until a second revision appears.
	testutil.Eventually(t, tooltest.Timeout, func() bool {
		c.Publish(t, 0, "r", "after")
		return len(files(t, out)) == 2
	}, "a second file after Rotate: %q", func() []string { return files(t, out) })
	stop()
	got := lines(t, out)
	if len(got) < 2 || got[0] == "after" && got[len(got)-1] != "before" {
		t.Errorf("lines %q", got)
	}

	out2 := t.TempDir()
	_, stop2 := start(t, options(c, out2, func(o *Options) {
		o.Topics, o.RotateInterval, o.SyncInterval, o.Channel = []string{"r"}, 50*time.Millisecond, 20*time.Millisecond, "interval"
	}))
	testutil.Eventually(t, tooltest.Timeout, func() bool { return len(files(t, out2)) >= 3 }, "files by interval: %q", func() []string { return files(t, out2) })
	stop2()
}

// TestTopicPattern: without --topic, the topics the lookupd lists that match the pattern
// are written.
func TestTopicPattern(t *testing.T) {
	c := tooltest.Start(t, 1, true)
	for _, topic := range []string{"logs_a", "logs_b", "other"} {
		c.Publish(t, 0, topic, topic+"-1")
		c.WaitRegistered(t, 0, topic)
	}
	out := t.TempDir()
	_, stop := start(t, options(c, out, func(o *Options) {
		o.Source = toolflag.Source{LookupdHTTPAddrs: []string{c.LookupdHTTP()}}
		o.TopicPattern, o.TopicRefresh = "^logs_", 50*time.Millisecond
	}))
	testutil.Eventually(t, tooltest.Timeout, func() bool { return len(lines(t, out)) == 2 }, "two topics written: %q", func() []string { return lines(t, out) })
	c.Publish(t, 0, "logs_c", "logs_c-1")
	testutil.Eventually(t, tooltest.Timeout, func() bool { return len(lines(t, out)) == 3 }, "a new topic found: %q", func() []string { return lines(t, out) })
	stop()
	if got := lines(t, out); !slices.Equal(got, []string{"logs_a-1", "logs_b-1", "logs_c-1"}) {
		t.Errorf("lines %q", got)
	}
}

// TestShutdownLosesNothing: stopped while messages stream in, nsq_to_file has written every
// message it finished; the rest are still on the channel.
func TestShutdownLosesNothing(t *testing.T) {
	c := tooltest.Start(t, 1, false)
	const n = 2000
	c.Publish(t, 0, "flood", bodies("m", n)...)
	out := t.TempDir()
	_, stop := start(t, options(c, out, func(o *Options) { o.Topics, o.SyncInterval, o.MaxInFlight = []string{"flood"}, time.Hour, 50 }))
	testutil.Eventually(t, tooltest.Timeout, func() bool { return len(lines(t, out)) > 0 }, "some messages written")
	stop()
	written := len(lines(t, out))
	ts, _ := c.Nodes[0].TopicStats("flood")
	var depth int64
	for _, ch := range ts.Channels {
		depth += ch.Depth + int64(ch.InFlightCount)
	}
	if written+int(depth) != n {
		t.Errorf("%d written + %d left on the channel = %d, want %d", written, depth, written+int(depth), n)
	}
}

// TestWriteFailure: a file that cannot be opened stops the tool with an error, and the
// message goes back to nsqd.
func TestWriteFailure(t *testing.T) {
	c := tooltest.Start(t, 1, false)
	c.Publish(t, 0, "f", "m")
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tf, err := New(options(c, filepath.Join(blocker, "sub"), func(o *Options) { o.Topics = []string{"f"} }), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), tooltest.Timeout)
	defer cancel()
	if err := tf.Run(ctx); err == nil || !strings.Contains(err.Error(), "unable to create dir") {
		t.Fatalf("Run = %v, want a failure to create the directory", err)
	}
	testutil.Eventually(t, tooltest.Timeout, func() bool {
		ts, _ := c.Nodes[0].TopicStats("f")
		return len(ts.Channels) == 1 && ts.Channels[0].Depth == 1
	}, "the message back on the channel")
}

// TestSyncWhenOneConnectionIsStarved: with two nsqds and uneven load, the connection to the
// busy one fills its RDY while the consumer as a whole holds far less than --max-in-flight.
// Its messages are synced and finished then, as go-nsq's per-connection IsStarved has NSQ
// do, not at the next --sync-interval.
func TestSyncWhenOneConnectionIsStarved(t *testing.T) {
	c := tooltest.Start(t, 2, false)
	c.Publish(t, 0, "uneven", bodies("few", 3)...)
	c.Publish(t, 1, "uneven", bodies("many", 60)...)
	out := t.TempDir()
	_, stop := start(t, options(c, out, func(o *Options) {
		o.Topics, o.MaxInFlight, o.SyncInterval = []string{"uneven"}, 20, time.Hour
		o.Source.NSQDTCPAddrs = []string{c.TCP(0), c.TCP(1)}
	}))
	// Well within the hour: nothing but starvation syncs.
	testutil.Eventually(t, tooltest.Timeout, channelEmpty(c, 0, "uneven", "nsq_to_file"), "the quiet nsqd's messages finished")
	stop()
	if got := lines(t, out); len(got) < 3 {
		t.Errorf("%d lines written", len(got))
	}
}
