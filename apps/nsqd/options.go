package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/ternmq/tern/nsqd"
)

// The command line and the config file are both derived from the tags of nsqd.Options, so a
// field added there is settable both ways without touching this file (except for its help
// text, which options_test.go insists on).
//
// Precedence is defaults < config file < flags set on the command line. The flags are parsed
// first into a scratch Options (they name the config file, so they must be read first); the
// file is then applied to fresh defaults, and finally the fields of every flag the user
// actually set are copied over from the scratch copy.

// optionField is one field of nsqd.Options that a flag or a config key can set.
type optionField struct {
	index []int // reflect field index
	typ   reflect.Type
	flag  string // flag name; empty for config-only fields
	key   string // TOML key
}

// optionFields lists the fields of nsqd.Options that carry a flag or a toml tag.
func optionFields() []optionField {
	t := reflect.TypeFor[nsqd.Options]()
	var fields []optionField
	for i := range t.NumField() {
		sf := t.Field(i)
		f := optionField{
			index: sf.Index,
			typ:   sf.Type,
			flag:  sf.Tag.Get("flag"),
			key:   sf.Tag.Get("toml"),
		}
		if f.flag == "" && f.key == "" {
			continue
		}
		fields = append(fields, f)
	}
	return fields
}

// Flags that are not fields of nsqd.Options.
const (
	flagConfig   = "config"
	flagVersion  = "version"
	flagVerbose  = "verbose"
	flagWorkerID = "worker-id"
)

// aliasOf returns the flag a deprecated flag stands for, or "".
func aliasOf(name string) string {
	if name == flagWorkerID {
		return "node-id"
	}
	return ""
}

// flagUsage is the help text of every flag derived from nsqd.Options. It is the one thing
// the struct tags do not carry; TestFlagUsageComplete keeps it in step with the struct.
var flagUsage = map[string]string{
	"node-id":    "unique part for message IDs, in [0,1024); the default is derived from the hostname",
	"log-level":  "log verbosity: debug, info, warn, error or fatal",
	"log-prefix": "log message prefix (accepted for NSQ compatibility; ignored by structured logs)",

	"tcp-address":                 "<addr>:<port> to listen on for TCP clients",
	"http-address":                "<addr>:<port> to listen on for HTTP clients (empty disables)",
	"https-address":               "<addr>:<port> to listen on for HTTPS clients",
	"broadcast-address":           "address registered with lookupd; the default is the OS hostname",
	"broadcast-tcp-port":          "TCP port registered with lookupd; 0 means the TCP listen port",
	"broadcast-http-port":         "HTTP port registered with lookupd; 0 means the HTTP listen port",
	"lookupd-tcp-address":         "lookupd TCP address (may be given multiple times)",
	"auth-http-address":           "<addr>:<port> or full URL of an auth server (may be given multiple times)",
	"auth-http-request-method":    "HTTP method used to query the auth server: get or post",
	"http-client-connect-timeout": "timeout for connecting to lookupd and auth servers over HTTP",
	"http-client-request-timeout": "timeout for HTTP requests to lookupd and auth servers",
	"topology-region":             "region this node runs in, reported to lookupd and clients",
	"topology-zone":               "zone this node runs in, reported to lookupd and clients",

	"data-path":          "path to store topic logs and metadata; empty means the current directory",
	"mem-queue-size":     "number of a topic's newest messages kept in memory (and the bound of ephemeral topics and channels)",
	"max-bytes-per-file": "number of bytes per topic log segment before rolling",
	"sync-every":         "number of messages written between fsyncs",
	"sync-timeout":       "longest time written data waits for an fsync",
	"fsync-always":       "acknowledge a publish only after its data was fsynced (Tern extension)",

	"queue-scan-worker-pool-max": "accepted for NSQ compatibility; Tern's scheduler has nothing to tune",
	"queue-scan-selection-count": "accepted for NSQ compatibility; Tern's scheduler has nothing to tune",

	"msg-timeout":     "default time a delivered message may stay unacknowledged before it is requeued",
	"max-msg-timeout": "maximum msg_timeout a client may ask for, and the cap of TOUCH",
	"max-msg-size":    "maximum size of a single message in bytes",
	"max-body-size":   "maximum size of a single command body in bytes",
	"max-req-timeout": "maximum requeue delay and DPUB deferral",

	"max-heartbeat-interval":    "maximum client configurable time between heartbeats",
	"max-rdy-count":             "maximum RDY count for a client",
	"max-output-buffer-size":    "maximum client configurable size (in bytes) of a client output buffer",
	"min-output-buffer-timeout": "minimum client configurable time between flushes to a client",
	"max-output-buffer-timeout": "maximum client configurable time between flushes to a client",
	"output-buffer-timeout":     "default time between flushes to a client",
	"max-channel-consumers":     "maximum consumer connections per channel (0 is unlimited)",

	"statsd-address":           "UDP <addr>:<port> of a statsd daemon to push stats to",
	"statsd-prefix":            "prefix of the keys sent to statsd (%s is replaced by the host)",
	"statsd-interval":          "time between pushes to statsd",
	"statsd-mem-stats":         "send memory and GC stats to statsd",
	"statsd-udp-packet-size":   "size in bytes of statsd UDP packets",
	"statsd-exclude-ephemeral": "leave ephemeral topics and channels out of statsd",

	"e2e-processing-latency-percentile":  "message processing time percentile in (0,1] to track (may be given multiple times or comma separated: 1.0,0.99,0.95)",
	"e2e-processing-latency-window-time": "time window the end-to-end latency percentiles cover",

	"tls-cert":               "path to the certificate file",
	"tls-key":                "path to the key file",
	"tls-client-auth-policy": "client certificate policy: require or require-verify",
	"tls-root-ca-file":       "path to the certificate authority file",
	"tls-required":           "require TLS for client connections: true, false or tcp-https (give a value with =, as in --tls-required=tcp-https)",
	"tls-min-version":        "minimum TLS version: tls1.0, tls1.1, tls1.2 or tls1.3",

	"deflate":           "enable deflate negotiation (client compression)",
	"max-deflate-level": "maximum deflate level a client may negotiate, 1-9 (higher costs nsqd more CPU)",
	"snappy":            "enable snappy negotiation (client compression)",

	"enable-experiment": "enable an experimental feature (may be given multiple times)",
}

// normalizerFor returns the function that rewrites the text of an option whose accepted
// spellings are wider than the value nsqd.Options stores, or nil. A normalizer returns
// errKeepDefault to leave the field as it is.
func normalizerFor(flagName string) func(string) (string, error) {
	switch flagName {
	case "tls-required":
		return normalizeTLSRequired
	case "tls-min-version":
		return normalizeTLSMinVersion
	case "log-level":
		return func(s string) (string, error) { return strings.ToLower(s), nil }
	}
	return nil
}

// boolLike reports whether a string option also takes a boolean: NSQ lets --tls-required
// stand alone, meaning true, and tls_required be a TOML boolean.
func boolLike(flagName string) bool { return flagName == "tls-required" }

// errKeepDefault tells a setter to leave a field unchanged. NSQ treats an empty
// tls_min_version that way, and NSQ's own example config sets it to "".
var errKeepDefault = errors.New("keep default")

// normalizeTLSRequired accepts any spelling of a boolean, as NSQ does, and tcp-https.
func normalizeTLSRequired(s string) (string, error) {
	s = strings.ToLower(s)
	if s == "tcp-https" {
		return s, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return "", errors.New("want true, false or tcp-https")
	}
	return strconv.FormatBool(b), nil
}

// normalizeTLSMinVersion accepts the version names NSQ accepts. ssl3.0 is refused because
// Go's TLS stack no longer implements it.
func normalizeTLSMinVersion(s string) (string, error) {
	s = strings.ToLower(s)
	switch s {
	case "":
		return "", errKeepDefault
	case "tls1.0", "tls1.1", "tls1.2", "tls1.3":
		return s, nil
	case "ssl3.0":
		return "", errors.New("ssl3.0 is not supported; want tls1.0, tls1.1, tls1.2 or tls1.3")
	}
	return "", errors.New("want tls1.0, tls1.1, tls1.2 or tls1.3")
}

// cmdLine is what the command line asks for beyond the options themselves.
type cmdLine struct {
	configPath string
	version    bool
	// deprecated lists the deprecated flags that were used, so main can warn once the
	// logger exists.
	deprecated []string
}

// newFlagSet returns the nsqd flag set, writing option flags into opts and the others into
// cl. Parse errors are returned, never printed: main decides what the user sees.
func newFlagSet(opts *nsqd.Options, cl *cmdLine) *flag.FlagSet {
	fs := flag.NewFlagSet("nsqd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}

	fs.StringVar(&cl.configPath, flagConfig, "", "path to a TOML config file")
	fs.BoolVar(&cl.version, flagVersion, false, "print the version and exit")
	fs.Bool(flagVerbose, false, "[deprecated] has no effect, use --log-level")

	v := reflect.ValueOf(opts).Elem()
	for _, f := range optionFields() {
		if f.flag == "" {
			continue
		}
		fs.Var(newOptionValue(v.FieldByIndex(f.index), f.flag), f.flag, flagUsage[f.flag])
	}
	fs.Var(fs.Lookup(aliasOf(flagWorkerID)).Value, flagWorkerID, "[deprecated] use --"+aliasOf(flagWorkerID))
	return fs
}

// loadOptions resolves the command line and the config file it names into Options. It
// returns flag.ErrHelp when help was asked for. With --version set it returns before reading
// the config file, so a broken file does not stop --version.
func loadOptions(args []string) (*nsqd.Options, *cmdLine, error) {
	cl := &cmdLine{}
	fromFlags := nsqd.NewOptions()
	fs := newFlagSet(fromFlags, cl)
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if cl.version {
		return nil, cl, nil
	}

	opts := nsqd.NewOptions()
	if cl.configPath != "" {
		data, err := os.ReadFile(cl.configPath)
		if err != nil {
			return nil, nil, fmt.Errorf("read config file: %w", err)
		}
		if err := applyConfig(opts, string(data)); err != nil {
			return nil, nil, fmt.Errorf("config file %s: %w", cl.configPath, err)
		}
	}

	byFlag := make(map[string]optionField)
	for _, f := range optionFields() {
		if f.flag != "" {
			byFlag[f.flag] = f
		}
	}
	dst, src := reflect.ValueOf(opts).Elem(), reflect.ValueOf(fromFlags).Elem()
	fs.Visit(func(fl *flag.Flag) {
		name := fl.Name
		if target := aliasOf(name); target != "" {
			cl.deprecated = append(cl.deprecated, name)
			name = target
		}
		if name == flagVerbose {
			cl.deprecated = append(cl.deprecated, name)
		}
		if ov, ok := fl.Value.(*optionValue); ok && !ov.set {
			return
		}
		if f, ok := byFlag[name]; ok {
			dst.FieldByIndex(f.index).Set(src.FieldByIndex(f.index))
		}
	})
	return opts, cl, nil
}

// optionValue is a flag.Value bound to one field of an Options.
type optionValue struct {
	field     reflect.Value
	boolLike  bool
	normalize func(string) (string, error)
	// set records that the command line gave the option a value. The first use of a list
	// flag replaces the default and later uses append, so --lookupd-tcp-address given twice
	// means exactly those two; and loadOptions copies only options that were set, so an
	// empty --tls-min-version leaves the config file's value alone.
	set bool
}

func newOptionValue(field reflect.Value, flagName string) *optionValue {
	return &optionValue{field: field, boolLike: boolLike(flagName), normalize: normalizerFor(flagName)}
}

// String renders the current value. The flag package also calls it on a zero optionValue
// to learn what "no default" looks like, so that must not panic; zero values render empty,
// which keeps "(default false)" and "(default 0)" out of the help, as the stdlib flags do.
func (v *optionValue) String() string {
	if v == nil || !v.field.IsValid() || v.field.IsZero() {
		return ""
	}
	switch v.field.Kind() {
	case reflect.Slice:
		parts := make([]string, v.field.Len())
		for i := range parts {
			parts[i] = fmt.Sprint(v.field.Index(i).Interface())
		}
		return strings.Join(parts, ",")
	default:
		return fmt.Sprint(v.field.Interface())
	}
}

// Set parses s into the field.
func (v *optionValue) Set(s string) error {
	if v.normalize != nil {
		n, err := v.normalize(s)
		if errors.Is(err, errKeepDefault) {
			return nil
		}
		if err != nil {
			return err
		}
		s = n
	}
	if v.field.Kind() != reflect.Slice {
		x, err := parseScalar(v.field.Type(), s)
		if err != nil {
			return err
		}
		v.field.Set(x)
		v.set = true
		return nil
	}

	elem := v.field.Type().Elem()
	parts := []string{s}
	if elem.Kind() == reflect.Float64 {
		// Percentiles may be given comma separated as well as repeated, as in NSQ.
		parts = strings.Split(s, ",")
	}
	if !v.set {
		v.field.Set(reflect.Zero(v.field.Type()))
		v.set = true
	}
	for _, p := range parts {
		x, err := parseScalar(elem, strings.TrimSpace(p))
		if err != nil {
			return err
		}
		v.field.Set(reflect.Append(v.field, x))
	}
	return nil
}

// IsBoolFlag lets boolean options, and --tls-required, be given without a value.
func (v *optionValue) IsBoolFlag() bool {
	if v == nil || !v.field.IsValid() {
		return false
	}
	return v.field.Kind() == reflect.Bool || v.boolLike
}

// parseScalar parses text into a value of type t.
func parseScalar(t reflect.Type, s string) (reflect.Value, error) {
	x := reflect.New(t).Elem()
	if t == reflect.TypeFor[time.Duration]() {
		d, err := time.ParseDuration(s)
		if err != nil {
			return x, fmt.Errorf("want a duration such as 250ms, 60s or 1h: %q", s)
		}
		x.SetInt(int64(d))
		return x, nil
	}
	switch t.Kind() {
	case reflect.String:
		x.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return x, fmt.Errorf("want true or false: %q", s)
		}
		x.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, t.Bits())
		if err != nil {
			return x, fmt.Errorf("want an integer: %q", s)
		}
		x.SetInt(n)
	case reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return x, fmt.Errorf("want a number: %q", s)
		}
		x.SetFloat(f)
	default:
		return x, fmt.Errorf("unsupported option type %s", t)
	}
	return x, nil
}

// applyConfig applies a TOML document to opts. Every key must be a known one; every problem
// in the document is reported at once.
func applyConfig(opts *nsqd.Options, doc string) error {
	var raw map[string]any
	if _, err := toml.Decode(doc, &raw); err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	byKey := make(map[string]optionField)
	for _, f := range optionFields() {
		if f.key != "" {
			byKey[f.key] = f
		}
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	v := reflect.ValueOf(opts).Elem()
	var errs []error
	for _, k := range keys {
		f, ok := byKey[k]
		if !ok {
			errs = append(errs, fmt.Errorf("unknown key %q", k))
			continue
		}
		if err := setFromTOML(v.FieldByIndex(f.index), f, raw[k]); err != nil {
			errs = append(errs, fmt.Errorf("key %q: %w", k, err))
		}
	}
	return errors.Join(errs...)
}

// setFromTOML coerces a decoded TOML value into field. It accepts what NSQ's config loader
// (mreiferson/go-options) accepts: durations as strings ("60s") or integers, which count
// milliseconds; numbers and booleans also as strings; lists also as one comma-separated
// string. It is stricter in one place: go-options turns an integer into a boolean (and gets
// it backwards), which is refused here.
func setFromTOML(field reflect.Value, f optionField, raw any) error {
	if normalize := normalizerFor(f.flag); normalize != nil {
		s, ok := raw.(string)
		if b, isBool := raw.(bool); isBool && boolLike(f.flag) {
			s, ok = strconv.FormatBool(b), true
		}
		if !ok {
			return fmt.Errorf("want a string, got %s", tomlType(raw))
		}
		n, err := normalize(s)
		if errors.Is(err, errKeepDefault) {
			return nil
		}
		if err != nil {
			return err
		}
		raw = n
	}

	if f.typ.Kind() != reflect.Slice {
		x, err := coerceTOML(f.typ, raw)
		if err != nil {
			return err
		}
		field.Set(x)
		return nil
	}

	var items []any
	switch r := raw.(type) {
	case []any:
		items = r
	case string:
		for p := range strings.SplitSeq(r, ",") {
			if p = strings.TrimSpace(p); p != "" {
				items = append(items, p)
			}
		}
	default:
		return fmt.Errorf("want an array, got %s", tomlType(raw))
	}
	// An empty array yields nil, the same as the defaults, so an example config listing
	// "key = []" round-trips to NewOptions exactly.
	out := reflect.Zero(f.typ)
	for i, item := range items {
		x, err := coerceTOML(f.typ.Elem(), item)
		if err != nil {
			return fmt.Errorf("element %d: %w", i, err)
		}
		out = reflect.Append(out, x)
	}
	field.Set(out)
	return nil
}

// coerceTOML converts one decoded TOML scalar into a value of type t.
func coerceTOML(t reflect.Type, raw any) (reflect.Value, error) {
	if s, ok := raw.(string); ok && t.Kind() != reflect.String {
		return parseScalar(t, s)
	}
	x := reflect.New(t).Elem()
	if t == reflect.TypeFor[time.Duration]() {
		n, ok := raw.(int64)
		if !ok {
			return x, fmt.Errorf("want a duration string such as \"60s\" or integer milliseconds, got %s", tomlType(raw))
		}
		if n > math.MaxInt64/int64(time.Millisecond) || n < math.MinInt64/int64(time.Millisecond) {
			return x, fmt.Errorf("%d milliseconds is out of range", n)
		}
		x.SetInt(n * int64(time.Millisecond))
		return x, nil
	}
	switch t.Kind() {
	case reflect.String:
		s, ok := raw.(string)
		if !ok {
			return x, fmt.Errorf("want a string, got %s", tomlType(raw))
		}
		x.SetString(s)
	case reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			return x, fmt.Errorf("want true or false, got %s", tomlType(raw))
		}
		x.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64:
		n, ok := raw.(int64)
		if !ok {
			return x, fmt.Errorf("want an integer, got %s", tomlType(raw))
		}
		if x.OverflowInt(n) {
			return x, fmt.Errorf("%d is out of range", n)
		}
		x.SetInt(n)
	case reflect.Float64:
		switch n := raw.(type) {
		case float64:
			x.SetFloat(n)
		case int64:
			x.SetFloat(float64(n))
		default:
			return x, fmt.Errorf("want a number, got %s", tomlType(raw))
		}
	default:
		return x, fmt.Errorf("unsupported option type %s", t)
	}
	return x, nil
}

// tomlType names the TOML type of a decoded value, for error messages.
func tomlType(raw any) string {
	switch raw.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case []map[string]any:
		return "an array of tables"
	case map[string]any:
		return "a table"
	default:
		return "a date or time"
	}
}

// printUsage writes the help text: every flag, the kind of value it takes and its default.
func printUsage(w io.Writer) {
	fs := newFlagSet(nsqd.NewOptions(), &cmdLine{})
	fmt.Fprint(w, "Usage: nsqd [flags]\n\nPrecedence: defaults < --config file < flags on the command line.\n\n")
	fs.VisitAll(func(fl *flag.Flag) {
		kind := " <string>"
		if b, ok := fl.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			kind = ""
		} else if ov, ok := fl.Value.(*optionValue); ok {
			kind = " " + typeName(ov.field.Type())
		}
		fmt.Fprintf(w, "  --%s%s\n    \t%s", fl.Name, kind, fl.Usage)
		switch {
		case fl.DefValue == "" || fl.DefValue == "false":
		case kind == " <string>":
			fmt.Fprintf(w, " (default %q)", fl.DefValue)
		default:
			fmt.Fprintf(w, " (default %s)", fl.DefValue)
		}
		fmt.Fprintln(w)
	})
	fmt.Fprint(w, "\nConfig file keys are NSQ's (see contrib/nsqd.toml.example); an unknown key is an error.\n")
}

// typeName names the value a flag of type t takes, for the help text.
func typeName(t reflect.Type) string {
	if t == reflect.TypeFor[time.Duration]() {
		return "<duration>"
	}
	switch t.Kind() {
	case reflect.Slice:
		return typeName(t.Elem())
	case reflect.Int, reflect.Int32, reflect.Int64:
		return "<int>"
	case reflect.Float64:
		return "<float>"
	default:
		return "<string>"
	}
}
