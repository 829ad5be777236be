package toolflag

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ternmq/tern/internal/version"
	"github.com/ternmq/tern/nsq"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestApplyOptions(t *testing.T) {
	tests := []struct {
		name string
		opts []string
		want func(c *nsq.Config)
	}{
		{"none", nil, func(*nsq.Config) {}},
		{"durations", []string{"dial_timeout,2s", "read_timeout,90s", "write_timeout,3s", "heartbeat_interval,10s", "output_buffer_timeout,100ms", "msg_timeout,2m"}, func(c *nsq.Config) {
			c.DialTimeout, c.ReadTimeout, c.WriteTimeout, c.HeartbeatInterval, c.OutputBufferTimeout, c.MsgTimeout = 2*time.Second, 90*time.Second, 3*time.Second, 10*time.Second, 100*time.Millisecond, 2*time.Minute
		}},
		{"lookupd and requeue", []string{"lookupd_poll_interval,15s", "lookupd_poll_jitter,0.5", "lookupd_poll_timeout,3s", "max_requeue_delay,1m", "default_requeue_delay,5s", "max_backoff_duration,30s", "backoff_multiplier,2s", "rdy_redistribute_interval,2s", "backoff_strategy,exponential"}, func(c *nsq.Config) {
			c.LookupdPollInterval, c.LookupdPollJitter, c.LookupdPollTimeout = 15*time.Second, 0.5, 3*time.Second
			c.MaxRequeueDelay, c.DefaultRequeueDelay, c.MaxBackoffDuration, c.BackoffMultiplier = time.Minute, 5*time.Second, 30*time.Second, 2*time.Second
			c.RDYRedistributeInterval = 2 * time.Second
		}},
		{"integers", []string{"max_attempts,9", "sample_rate,50", "output_buffer_size,65536", "max_in_flight,7"}, func(c *nsq.Config) {
			c.MaxAttempts, c.SampleRate, c.OutputBufferSize, c.MaxInFlight = 9, 50, 65536, 7
		}},
		{"deflate level with deflate", []string{"deflate", "deflate_level,3"}, func(c *nsq.Config) { c.Deflate, c.DeflateLevel = true, 3 }},
		{"bool alone is true", []string{"snappy"}, func(c *nsq.Config) { c.Snappy = true }},
		{"bool with value", []string{"deflate,true", "snappy,false"}, func(c *nsq.Config) { c.Deflate = true }},
		{"strings", []string{"client_id,me", "hostname,h.example", "user_agent,ua/1", "auth_secret,s3cret"}, func(c *nsq.Config) {
			c.ClientID, c.Hostname, c.UserAgent, c.AuthSecret = "me", "h.example", "ua/1", "s3cret"
		}},
		{"dashes for underscores", []string{"max-attempts,2"}, func(c *nsq.Config) { c.MaxAttempts = 2 }},
		{"disable with negatives", []string{"heartbeat_interval,-1s", "output_buffer_size,-1"}, func(c *nsq.Config) {
			c.HeartbeatInterval, c.OutputBufferSize = -time.Second, -1
		}},
		{"skip lookupd authorization", []string{"skip_lookupd_authorization,true"}, func(*nsq.Config) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := nsq.NewConfig()
			if err := ApplyOptions(got, ForConsumer, tt.opts, nil); err != nil {
				t.Fatalf("ApplyOptions(%q): %v", tt.opts, err)
			}
			want := nsq.NewConfig()
			tt.want(want)
			if *got != *want {
				t.Errorf("\n got  %+v\n want %+v", got, want)
			}
		})
	}
}

func TestApplyOptionsRefuses(t *testing.T) {
	tests := []struct {
		name     string
		opts     []string
		reserved map[string]string
		want     []string
	}{
		{"unknown", []string{"max_rdy,5"}, nil, []string{`--consumer-opt "max_rdy,5": unknown option "max_rdy"`}},
		{"every problem at once", []string{"nope,1", "dial_timeout,soon", "max_attempts,x"}, nil, []string{`unknown option "nope"`, "option dial_timeout: want a duration", "option max_attempts: want an integer"}},
		{"no value", []string{"dial_timeout"}, nil, []string{"option dial_timeout needs a value: dial_timeout,<value>"}},
		{"bad bool", []string{"snappy,maybe"}, nil, []string{`want true or false, got "maybe"`}},
		{"local_addr", []string{"local_addr,127.0.0.1:0"}, nil, []string{"option local_addr is not supported"}},
		{"low rdy", []string{"low_rdy_idle_timeout,5s", "low_rdy_timeout,5s"}, nil, []string{"option low_rdy_idle_timeout is not supported", "option low_rdy_timeout is not supported"}},
		{"full jitter", []string{"backoff_strategy,full_jitter"}, nil, []string{"backs off exponentially only"}},
		{"lookupd authorization", []string{"skip_lookupd_authorization,false"}, nil, []string{"does not send the auth secret to lookupds"}},
		{"tls_config", []string{"tls_config,x"}, nil, []string{"option tls_config is not supported"}},
		{"TLS options without tls_v1", []string{"tls_insecure_skip_verify"}, nil, []string{"no effect without tls_v1"}},
		{"ssl3", []string{"tls_v1", "tls_min_version,ssl3.0"}, nil, []string{"no SSL 3.0"}},
		{"bad TLS version", []string{"tls_v1", "tls_min_version,tls9"}, nil, []string{`"tls9" is not a TLS version`}},
		{"cert without key", []string{"tls_v1", "tls_cert,/x.pem"}, nil, []string{"tls_cert and tls_key must be given together"}},
		{"missing CA file", []string{"tls_v1", "tls_root_ca_file,/nonexistent.pem"}, nil, []string{"tls_root_ca_file: open /nonexistent.pem"}},
		{"out of go-nsq range", []string{"sample_rate,100", "max_attempts,70000"}, nil, []string{"100 is out of range 0..99", "70000 is out of range 0..65535"}},
		{"out of Tern's range", []string{"read_timeout,10m"}, nil, []string{"nsq: config ReadTimeout"}},
		{"snappy and deflate", []string{"snappy", "deflate"}, nil, []string{"--consumer-opt: nsq: config"}},
		{"deflate level without deflate", []string{"deflate_level,3", "deflate,false"}, nil, []string{"deflate_level has no effect without deflate"}},
		{"reserved", []string{"max_in_flight,5"}, map[string]string{"max_in_flight": "max-in-flight"}, []string{"use --max-in-flight to set max_in_flight"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ApplyOptions(nsq.NewConfig(), ForConsumer, tt.opts, tt.reserved)
			if err == nil {
				t.Fatalf("ApplyOptions(%q) = nil, want an error", tt.opts)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestApplyOptionsTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeSelfSigned(t, dir)
	cfg := nsq.NewConfig()
	err := ApplyOptions(cfg, ForProducer, []string{
		"tls_v1", "tls_root_ca_file," + certFile, "tls_cert," + certFile, "tls_key," + keyFile,
		"tls_min_version,tls1.2", "tls_insecure_skip_verify,true",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLS == nil || cfg.TLS.MinVersion != tls.VersionTLS12 || !cfg.TLS.InsecureSkipVerify ||
		cfg.TLS.RootCAs == nil || len(cfg.TLS.Certificates) != 1 {
		t.Fatalf("TLS = %+v", cfg.TLS)
	}

	plain := nsq.NewConfig()
	if err := ApplyOptions(plain, ForProducer, []string{"tls_v1,false"}, nil); err != nil || plain.TLS != nil {
		t.Fatalf("tls_v1,false: TLS %v, err %v", plain.TLS, err)
	}
}

// TestEveryGoNSQOptionIsKnown checks the table against go-nsq's own option names: every one
// must be mapped or refused, none silently unknown.
func TestEveryGoNSQOptionIsKnown(t *testing.T) {
	goNSQ := []string{
		"dial_timeout", "read_timeout", "write_timeout", "local_addr", "lookupd_poll_interval",
		"lookupd_poll_jitter", "lookupd_poll_timeout", "max_requeue_delay", "default_requeue_delay",
		"backoff_strategy", "max_backoff_duration", "backoff_multiplier", "max_attempts",
		"low_rdy_idle_timeout", "low_rdy_timeout", "rdy_redistribute_interval", "client_id",
		"hostname", "user_agent", "heartbeat_interval", "sample_rate", "tls_v1", "tls_config",
		"deflate", "deflate_level", "snappy", "output_buffer_size", "output_buffer_timeout",
		"max_in_flight", "msg_timeout", "auth_secret", "skip_lookupd_authorization",
		"tls_root_ca_file", "tls_insecure_skip_verify", "tls_cert", "tls_key", "tls_min_version",
	}
	for _, name := range goNSQ {
		if _, ok := goNSQOptions[name]; !ok {
			t.Errorf("go-nsq option %s is neither mapped nor refused", name)
		}
	}
	for name := range consumerOnly {
		if !slices.Contains(goNSQ, name) {
			t.Errorf("consumer-only option %s is not go-nsq's", name)
		}
	}
	if len(goNSQOptions) != len(goNSQ) {
		t.Errorf("%d options in the table, go-nsq has %d", len(goNSQOptions), len(goNSQ))
	}
	if names := OptionNames(ForConsumer); slices.Contains(names, "local_addr") || !slices.Contains(names, "snappy") || !slices.Contains(names, "max_attempts") {
		t.Errorf("OptionNames(ForConsumer) = %q", names)
	}
	if names := OptionNames(ForProducer); slices.Contains(names, "max_in_flight") || !slices.Contains(names, "snappy") {
		t.Errorf("OptionNames(ForProducer) = %q", names)
	}
}

func TestConsumerAndProducerConfig(t *testing.T) {
	cfg, err := ConsumerConfig("nsq_tail", []string{"snappy"}, 42)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxInFlight != 42 || !cfg.Snappy || !strings.HasPrefix(cfg.UserAgent, "nsq_tail/"+version.Binary) {
		t.Errorf("consumer config %+v", cfg)
	}
	if _, err := ConsumerConfig("nsq_tail", []string{"max_in_flight,3"}, 42); err == nil || !strings.Contains(err.Error(), "use --max-in-flight") {
		t.Errorf("max_in_flight in --consumer-opt: %v", err)
	}
	cfg, err = ProducerConfig("to_nsq", []string{"user_agent,mine"})
	if err != nil || cfg.UserAgent != "mine" {
		t.Errorf("producer config %+v, %v", cfg, err)
	}
}

// TestProducerRefusesConsumerOptions: a Producer never uses what only shapes the messages
// nsqd delivers, RDY, requeues, backoff and lookupd polling; --producer-opt refuses them,
// naming each, rather than accept and ignore them.
func TestProducerRefusesConsumerOptions(t *testing.T) {
	consumerOnly := []string{
		"max_in_flight,5", "max_attempts,3", "lookupd_poll_interval,5s", "lookupd_poll_jitter,0.1",
		"lookupd_poll_timeout,1s", "max_requeue_delay,1m", "default_requeue_delay,1s",
		"backoff_strategy,exponential", "max_backoff_duration,1m", "backoff_multiplier,2s",
		"rdy_redistribute_interval,2s", "sample_rate,10", "msg_timeout,2m", "output_buffer_size,1024",
		"output_buffer_timeout,10ms", "skip_lookupd_authorization,true",
	}
	for _, opt := range consumerOnly {
		key, _, _ := strings.Cut(opt, ",")
		_, err := ProducerConfig("to_nsq", []string{opt})
		if want := "--producer-opt \"" + opt + "\": option " + key + " is for consumers only"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ProducerConfig(%q) = %v, want %q", opt, err, want)
		}
		if key == "max_in_flight" {
			continue // --max-in-flight sets it
		}
		if _, err := ConsumerConfig("nsq_tail", []string{opt}, 1); err != nil {
			t.Errorf("ConsumerConfig(%q) = %v", opt, err)
		}
	}
	// What a producer's connection does use.
	both := []string{
		"dial_timeout,2s", "read_timeout,90s", "write_timeout,3s", "heartbeat_interval,10s", "client_id,me",
		"hostname,h", "user_agent,ua", "snappy", "auth_secret,s", "tls_v1,false",
	}
	if _, err := ProducerConfig("to_nsq", both); err != nil {
		t.Errorf("ProducerConfig(%q) = %v", both, err)
	}
	if _, err := ProducerConfig("to_nsq", []string{"deflate", "deflate_level,9"}); err != nil {
		t.Errorf("ProducerConfig(deflate) = %v", err)
	}
	// Every problem at once.
	_, err := ProducerConfig("to_nsq", []string{"max_in_flight,5", "sample_rate,10"})
	if err == nil || !strings.Contains(err.Error(), "option max_in_flight") || !strings.Contains(err.Error(), "option sample_rate") {
		t.Errorf("two consumer options: %v", err)
	}
}

func TestSourceValidate(t *testing.T) {
	tests := []struct {
		name string
		src  Source
		want string
	}{
		{"nsqd", Source{NSQDTCPAddrs: []string{"127.0.0.1:4150"}}, ""},
		{"lookupds", Source{LookupdHTTPAddrs: []string{"a:4161", "http://b:4161"}}, ""},
		{"none", Source{}, "--nsqd-tcp-address or --lookupd-http-address required"},
		{"both", Source{NSQDTCPAddrs: []string{"a:1"}, LookupdHTTPAddrs: []string{"b:2"}}, "use --nsqd-tcp-address or --lookupd-http-address not both"},
		{"scheme on TCP", Source{NSQDTCPAddrs: []string{"tcp://a:1"}}, "want host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.src.Validate()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestChecks(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{CheckTopics("topic", nil), "--topic required"},
		{CheckTopics("topic", []string{"ok", "bad topic!"}), `--topic "bad topic!" is not a valid topic name`},
		{CheckTopics("topic", []string{"ok", "also_ok#ephemeral"}), ""},
		{CheckChannel("channel", ""), "--channel required"},
		{CheckChannel("channel", "c*"), `--channel "c*" is not a valid channel name`},
		{CheckChannel("channel", "tail1#ephemeral"), ""},
		{CheckMaxInFlight(0), "--max-in-flight 0: want 1 or more"},
		{CheckMaxInFlight(1), ""},
	}
	for _, tt := range tests {
		if tt.want == "" && tt.err != nil || tt.want != "" && (tt.err == nil || !strings.Contains(tt.err.Error(), tt.want)) {
			t.Errorf("got %v, want %q", tt.err, tt.want)
		}
	}
}

func TestStrings(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var got []string
	StringsVar(fs, &got, "topic", "")
	if err := fs.Parse([]string{"--topic=a", "--topic", "b,c"}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"a", "b,c"}) {
		t.Fatalf("got %q", got)
	}
	if s := fs.Lookup("topic").Value.String(); s != "a,b,c" {
		t.Fatalf("String() = %q", s)
	}
}

// fakeOptions and fakeTool drive Main.
type fakeOptions struct {
	Name   string
	Fail   bool
	Level  string
	Prefix string
}

type fakeTool struct {
	o   *fakeOptions
	env Env
}

func (f *fakeTool) Run(ctx context.Context) error {
	if f.o.Fail {
		return errors.New("it broke")
	}
	f.env.Logger.Debug("debug record")
	_, _ = io.WriteString(f.env.Stdout, "ran "+f.o.Name+"\n")
	<-ctx.Done()
	return nil
}

func (f *fakeTool) Rotate() {}

func fakeCommand() Command[fakeOptions] {
	return Command[fakeOptions]{
		Name: "faketool",
		Flags: func(fs *flag.FlagSet) *fakeOptions {
			o := &fakeOptions{Name: "x", Level: "info"}
			fs.StringVar(&o.Name, "name", o.Name, "a name")
			fs.BoolVar(&o.Fail, "fail", false, "fail")
			fs.StringVar(&o.Level, "log-level", o.Level, "level")
			fs.StringVar(&o.Prefix, "log-prefix", o.Prefix, "prefix")
			return o
		},
		Validate: func(o *fakeOptions) error {
			if o.Name == "" {
				return errors.Join(errors.New("--name required"), errors.New("second problem"))
			}
			return nil
		},
		LogLevel:  func(o *fakeOptions) string { return o.Level },
		LogPrefix: func(o *fakeOptions) string { return o.Prefix },
		New:       func(o *fakeOptions, env Env) (Tool, error) { return &fakeTool{o: o, env: env}, nil },
	}
}

func TestMainCommand(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr []string
	}{
		{"help", []string{"--help"}, 0, "Usage of faketool:\n", nil},
		{"version", []string{"--version"}, 0, version.String("faketool") + "\n", nil},
		{"bad flag", []string{"--nope"}, 1, "", []string{"faketool: flag provided but not defined: -nope", "Run faketool --help for usage."}},
		{"argument", []string{"extra"}, 1, "", []string{`unexpected argument "extra"`}},
		{"invalid", []string{"--name="}, 1, "", []string{"faketool: invalid options:\n--name required\nsecond problem"}},
		{"runs until cancelled", []string{"--name=y"}, 0, "ran y\n", []string{"msg=starting"}},
		{"log level", []string{"--log-level=debug"}, 0, "ran x\n", []string{"debug record"}},
		{"fails", []string{"--fail"}, 1, "", []string{"stopped with an error", "it broke"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // a tool that runs returns at once
			var stdout, stderr strings.Builder
			code := fakeCommand().Main(ctx, tt.args, strings.NewReader(""), &stdout, &stderr)
			if code != tt.code {
				t.Errorf("code = %d, want %d; stderr:\n%s", code, tt.code, stderr.String())
			}
			if !strings.HasPrefix(stdout.String(), tt.stdout) {
				t.Errorf("stdout = %q, want prefix %q", stdout.String(), tt.stdout)
			}
			for _, w := range tt.stderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr = %q, want %q", stderr.String(), w)
				}
			}
		})
	}
}

// TestLogPrefix: --log-prefix starts every log line, and no prefix leaves them alone.
func TestLogPrefix(t *testing.T) {
	for _, prefix := range []string{"[fake] ", ""} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var stdout, stderr strings.Builder
		if code := fakeCommand().Main(ctx, []string{"--log-prefix=" + prefix, "--log-level=debug"}, strings.NewReader(""), &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
		if len(lines) < 2 {
			t.Fatalf("log %q: want the start and the debug record", stderr.String())
		}
		for _, l := range lines {
			if !strings.HasPrefix(l, prefix+"time=") {
				t.Errorf("prefix %q: line %q", prefix, l)
			}
		}
	}
}

// writeSelfSigned writes a self-signed certificate and its key as PEM files in dir.
func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tern test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
