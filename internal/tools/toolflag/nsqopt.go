package toolflag

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ternmq/tern/nsq"
)

// Role is what a Config configures: a Consumer or a Producer. A Producer uses only some of
// go-nsq's options; the others it would accept and ignore.
type Role int

const (
	// ForConsumer is a Consumer's Config, set with --consumer-opt.
	ForConsumer Role = iota
	// ForProducer is a Producer's Config, set with --producer-opt.
	ForProducer
)

// flag is the command-line flag that sets the role's options, for messages.
func (r Role) flag() string {
	if r == ForProducer {
		return "producer-opt"
	}
	return "consumer-opt"
}

// ApplyOptions sets go-nsq's options, each "key,value" as NSQ's tools take them from
// --consumer-opt and --producer-opt (by role), on cfg. A boolean option may be given alone
// ("snappy" means "snappy,true"), and a key may be spelled with dashes.
//
// Every option Tern's client honours maps onto its nsq.Config field. An unknown option, one
// Tern's client cannot honour (local_addr, the low-RDY timeouts, the full_jitter backoff, TLS
// settings without tls_v1, deflate_level without deflate), and, for a producer, one that
// only a consumer uses (max_in_flight, max_attempts, requeue delays, backoff, RDY, lookupd
// polling, and what shapes nsqd's deliveries: sample_rate, msg_timeout, the output buffer)
// is refused with a message naming it; nothing is ignored. reserved lists options the tool
// sets through one of its own flags instead, by option name, with that flag's name: NSQ's
// tools silently overwrite them, Tern's refuse them. Every problem is reported at once, the
// ranges of Tern's Config.Validate included.
func ApplyOptions(cfg *nsq.Config, role Role, opts []string, reserved map[string]string) error {
	flagName := role.flag()
	var errs []error
	var t tlsOptions
	deflateLevel := false
	for _, opt := range opts {
		key, value, hasValue := strings.Cut(opt, ",")
		key = strings.ReplaceAll(strings.TrimSpace(key), "-", "_")
		fail := func(err error) { errs = append(errs, fmt.Errorf("--%s %q: %w", flagName, opt, err)) }
		if f, ok := reserved[key]; ok {
			fail(fmt.Errorf("use --%s to set %s", f, key))
			continue
		}
		o, ok := goNSQOptions[key]
		if !ok {
			fail(fmt.Errorf("unknown option %q (see go-nsq's Config for the option names)", key))
			continue
		}
		if o.refuse != "" {
			fail(fmt.Errorf("option %s is not supported: %s", key, o.refuse))
			continue
		}
		if why, ok := consumerOnly[key]; ok && role == ForProducer {
			fail(fmt.Errorf("option %s is for consumers only: %s", key, why))
			continue
		}
		if !hasValue {
			if o.kind != kindBool {
				fail(fmt.Errorf("option %s needs a value: %s,<value>", key, key))
				continue
			}
			value = "true"
		}
		if err := o.set(cfg, &t, value); err != nil {
			fail(fmt.Errorf("option %s: %w", key, err))
			continue
		}
		deflateLevel = deflateLevel || key == "deflate_level"
	}
	if err := t.apply(cfg); err != nil {
		errs = append(errs, fmt.Errorf("--%s: %w", flagName, err))
	}
	if deflateLevel && !cfg.Deflate {
		// go-nsq ignores it: it sets the level of a compression not asked for.
		errs = append(errs, fmt.Errorf("--%s: deflate_level has no effect without deflate (add deflate)", flagName))
	}
	if len(errs) == 0 {
		if err := cfg.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("--%s: %w", flagName, err))
		}
	}
	return errors.Join(errs...)
}

// OptionNames lists the go-nsq option names ApplyOptions accepts for role, sorted.
func OptionNames(role Role) []string {
	var names []string
	for name, o := range goNSQOptions {
		if _, forConsumers := consumerOnly[name]; o.refuse == "" && (role == ForConsumer || !forConsumers) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// optionKind is the type of an option's value.
type optionKind int

const (
	kindString optionKind = iota
	kindBool
	kindInt
	kindFloat
	kindDuration
)

// goNSQOption is one of go-nsq's Config options.
type goNSQOption struct {
	kind optionKind
	// set parses value and stores it; nil when refuse is set.
	set func(cfg *nsq.Config, t *tlsOptions, value string) error
	// refuse, when not empty, says why Tern's client cannot honour the option.
	refuse string
}

// goNSQOptions are go-nsq v1.1's option names (its `opt` struct tags), every one of them.
var goNSQOptions = map[string]goNSQOption{
	"dial_timeout":  duration(func(c *nsq.Config, d time.Duration) { c.DialTimeout = d }),
	"read_timeout":  duration(func(c *nsq.Config, d time.Duration) { c.ReadTimeout = d }),
	"write_timeout": duration(func(c *nsq.Config, d time.Duration) { c.WriteTimeout = d }),
	"local_addr":    {refuse: "Tern's client does not bind its connections to a local address"},

	"lookupd_poll_interval": duration(func(c *nsq.Config, d time.Duration) { c.LookupdPollInterval = d }),
	"lookupd_poll_jitter":   float(func(c *nsq.Config, f float64) { c.LookupdPollJitter = f }),
	"lookupd_poll_timeout":  duration(func(c *nsq.Config, d time.Duration) { c.LookupdPollTimeout = d }),

	"max_requeue_delay":     duration(func(c *nsq.Config, d time.Duration) { c.MaxRequeueDelay = d }),
	"default_requeue_delay": duration(func(c *nsq.Config, d time.Duration) { c.DefaultRequeueDelay = d }),
	"backoff_strategy": {kind: kindString, set: func(_ *nsq.Config, _ *tlsOptions, v string) error {
		// Tern's consumer backs off exponentially, go-nsq's default; it has no full_jitter.
		if v != "exponential" {
			return fmt.Errorf("%q is not supported: Tern's client backs off exponentially only", v)
		}
		return nil
	}},
	"max_backoff_duration": duration(func(c *nsq.Config, d time.Duration) { c.MaxBackoffDuration = d }),
	"backoff_multiplier":   duration(func(c *nsq.Config, d time.Duration) { c.BackoffMultiplier = d }),
	"max_attempts": integer(func(c *nsq.Config, n int) error {
		if n < 0 || n > 65535 {
			return fmt.Errorf("%d is out of range 0..65535", n)
		}
		c.MaxAttempts = n
		return nil
	}),
	"low_rdy_idle_timeout":      {refuse: "Tern's client shares max_in_flight among connections by need, without low-RDY timeouts"},
	"low_rdy_timeout":           {refuse: "Tern's client shares max_in_flight among connections by need, without low-RDY timeouts"},
	"rdy_redistribute_interval": duration(func(c *nsq.Config, d time.Duration) { c.RDYRedistributeInterval = d }),

	"client_id":  str(func(c *nsq.Config, s string) { c.ClientID = s }),
	"hostname":   str(func(c *nsq.Config, s string) { c.Hostname = s }),
	"user_agent": str(func(c *nsq.Config, s string) { c.UserAgent = s }),

	"heartbeat_interval": duration(func(c *nsq.Config, d time.Duration) { c.HeartbeatInterval = d }),
	"sample_rate": integer(func(c *nsq.Config, n int) error {
		if n < 0 || n > 99 {
			return fmt.Errorf("%d is out of range 0..99", n)
		}
		c.SampleRate = int32(n)
		return nil
	}),

	"tls_v1":                   {kind: kindBool, set: func(_ *nsq.Config, t *tlsOptions, v string) error { return parseBool(v, &t.enabled) }},
	"tls_config":               {refuse: "a tls.Config cannot be given on the command line; use tls_v1 with tls_root_ca_file, tls_insecure_skip_verify, tls_cert, tls_key and tls_min_version"},
	"tls_root_ca_file":         {kind: kindString, set: func(_ *nsq.Config, t *tlsOptions, v string) error { t.rootCAFile = v; t.given = true; return nil }},
	"tls_insecure_skip_verify": {kind: kindBool, set: func(_ *nsq.Config, t *tlsOptions, v string) error { t.given = true; return parseBool(v, &t.insecure) }},
	"tls_cert":                 {kind: kindString, set: func(_ *nsq.Config, t *tlsOptions, v string) error { t.certFile = v; t.given = true; return nil }},
	"tls_key":                  {kind: kindString, set: func(_ *nsq.Config, t *tlsOptions, v string) error { t.keyFile = v; t.given = true; return nil }},
	"tls_min_version":          {kind: kindString, set: func(_ *nsq.Config, t *tlsOptions, v string) error { t.given = true; return t.setMinVersion(v) }},

	"deflate":       boolean(func(c *nsq.Config, b bool) { c.Deflate = b }),
	"deflate_level": integer(func(c *nsq.Config, n int) error { c.DeflateLevel = n; return nil }),
	"snappy":        boolean(func(c *nsq.Config, b bool) { c.Snappy = b }),

	"output_buffer_size":    integer(func(c *nsq.Config, n int) error { c.OutputBufferSize = n; return nil }),
	"output_buffer_timeout": duration(func(c *nsq.Config, d time.Duration) { c.OutputBufferTimeout = d }),
	"max_in_flight": integer(func(c *nsq.Config, n int) error {
		if n < 0 {
			return fmt.Errorf("%d is negative", n)
		}
		c.MaxInFlight = n
		return nil
	}),
	"msg_timeout": duration(func(c *nsq.Config, d time.Duration) { c.MsgTimeout = d }),
	"auth_secret": str(func(c *nsq.Config, s string) { c.AuthSecret = s }),
	"skip_lookupd_authorization": {kind: kindBool, set: func(_ *nsq.Config, _ *tlsOptions, v string) error {
		// Tern's client never sends the auth secret to a lookupd: go-nsq's default, true.
		var skip bool
		if err := parseBool(v, &skip); err != nil {
			return err
		}
		if !skip {
			return errors.New("false is not supported: Tern's client does not send the auth secret to lookupds")
		}
		return nil
	}},
}

// Why a Producer has no use for an option.
const (
	noMessages   = "a producer receives no messages"
	noDeliveries = "it shapes the messages nsqd delivers, and a producer receives none"
	noLookupd    = "a producer does not query lookupds"
)

// consumerOnly are the options only a Consumer uses, with why a Producer has no use for
// them. nsqd takes the output buffer settings of any client, but flushes every response to
// a command at once: they matter only to deliveries.
var consumerOnly = map[string]string{
	"lookupd_poll_interval":      noLookupd,
	"lookupd_poll_jitter":        noLookupd,
	"lookupd_poll_timeout":       noLookupd,
	"skip_lookupd_authorization": noLookupd,
	"max_requeue_delay":          noMessages,
	"default_requeue_delay":      noMessages,
	"backoff_strategy":           noMessages,
	"max_backoff_duration":       noMessages,
	"backoff_multiplier":         noMessages,
	"max_attempts":               noMessages,
	"rdy_redistribute_interval":  noMessages,
	"max_in_flight":              noMessages,
	"sample_rate":                noDeliveries,
	"msg_timeout":                noDeliveries,
	"output_buffer_size":         noDeliveries,
	"output_buffer_timeout":      noDeliveries,
}

func duration(set func(*nsq.Config, time.Duration)) goNSQOption {
	return goNSQOption{kind: kindDuration, set: func(c *nsq.Config, _ *tlsOptions, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("want a duration such as 5s: %w", err)
		}
		set(c, d)
		return nil
	}}
}

func integer(set func(*nsq.Config, int) error) goNSQOption {
	return goNSQOption{kind: kindInt, set: func(c *nsq.Config, _ *tlsOptions, v string) error {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			return fmt.Errorf("want an integer, got %q", v)
		}
		return set(c, int(n))
	}}
}

func float(set func(*nsq.Config, float64)) goNSQOption {
	return goNSQOption{kind: kindFloat, set: func(c *nsq.Config, _ *tlsOptions, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("want a number, got %q", v)
		}
		set(c, f)
		return nil
	}}
}

func boolean(set func(*nsq.Config, bool)) goNSQOption {
	return goNSQOption{kind: kindBool, set: func(c *nsq.Config, _ *tlsOptions, v string) error {
		var b bool
		if err := parseBool(v, &b); err != nil {
			return err
		}
		set(c, b)
		return nil
	}}
}

func str(set func(*nsq.Config, string)) goNSQOption {
	return goNSQOption{kind: kindString, set: func(c *nsq.Config, _ *tlsOptions, v string) error {
		set(c, v)
		return nil
	}}
}

func parseBool(v string, b *bool) error {
	x, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("want true or false, got %q", v)
	}
	*b = x
	return nil
}

// tlsOptions gathers go-nsq's TLS options, which only together make a tls.Config.
type tlsOptions struct {
	enabled    bool // tls_v1
	given      bool // any other TLS option
	rootCAFile string
	insecure   bool
	certFile   string
	keyFile    string
	minVersion uint16
}

func (t *tlsOptions) setMinVersion(v string) error {
	switch v {
	case "tls1.0":
		t.minVersion = tls.VersionTLS10
	case "tls1.1":
		t.minVersion = tls.VersionTLS11
	case "tls1.2":
		t.minVersion = tls.VersionTLS12
	case "ssl3.0":
		return errors.New("ssl3.0 is not supported: Go's TLS has no SSL 3.0")
	default:
		return fmt.Errorf("%q is not a TLS version: want tls1.0, tls1.1 or tls1.2", v)
	}
	return nil
}

// apply builds cfg.TLS from the TLS options. go-nsq ignores TLS settings without tls_v1;
// they are refused here, since they would not do what they say.
func (t *tlsOptions) apply(cfg *nsq.Config) error {
	if !t.enabled {
		if t.given {
			return errors.New("TLS options have no effect without tls_v1 (add tls_v1)")
		}
		return nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS10, InsecureSkipVerify: t.insecure}
	if t.minVersion != 0 {
		tc.MinVersion = t.minVersion
	}
	var errs []error
	if t.rootCAFile != "" {
		pem, err := os.ReadFile(t.rootCAFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("tls_root_ca_file: %w", err))
		} else {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				errs = append(errs, fmt.Errorf("tls_root_ca_file %s: no PEM certificate in it", t.rootCAFile))
			}
			tc.RootCAs = pool
		}
	}
	switch {
	case t.certFile != "" && t.keyFile != "":
		cert, err := tls.LoadX509KeyPair(t.certFile, t.keyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("tls_cert and tls_key: %w", err))
		}
		tc.Certificates = []tls.Certificate{cert}
	case t.certFile != "" || t.keyFile != "":
		errs = append(errs, errors.New("tls_cert and tls_key must be given together"))
	}
	cfg.TLS = tc
	return errors.Join(errs...)
}
