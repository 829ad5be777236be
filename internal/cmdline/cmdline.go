// Package cmdline turns a daemon's Options struct into its command line and its TOML config
// file, the way NSQ's daemons take them, so that every binary (nsqd, nsqlookupd, nsqadmin)
// resolves its settings the same way.
//
// The flags and config keys are derived from struct tags: a field tagged `flag:"msg-timeout"`
// is set by --msg-timeout, and one tagged `toml:"msg_timeout"` by that key in the file; a
// field may have either or both. Field types may be string, bool, int, int32, int64, float64,
// time.Duration and slices of them. A [Spec] adds what the tags do not carry: each flag's help
// text, values with wider spellings than the field stores (normalizers), deprecated flags.
//
// [Spec.Load] resolves a command line with the precedence defaults < config file < flags set
// on the command line. The flags are parsed first into a scratch copy (they name the config
// file, so they must be read first); the file is then applied to fresh defaults, and finally
// the fields of every flag the user actually set are copied over from the scratch copy. Every
// config key must be a known one, and every problem in a file is reported at once.
package cmdline

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"time"
)

// Flags every daemon has besides its options.
const (
	// FlagConfig names the TOML config file.
	FlagConfig = "config"
	// FlagVersion prints the version and exits.
	FlagVersion = "version"
)

// ErrKeepDefault is returned by a normalizer to leave the field as it is. NSQ treats an
// empty tls_min_version that way, and NSQ's own example config sets it to "".
var ErrKeepDefault = errors.New("keep default")

// Lowercase is a normalizer for options whose values are case-insensitive, such as
// --log-level: it stores them in lower case.
func Lowercase(s string) (string, error) { return strings.ToLower(s), nil }

// Spec describes one daemon's command line over its options struct T.
type Spec[T any] struct {
	// Name is the program's name, used in the usage text and the flag set.
	Name string
	// Defaults returns fresh default options.
	Defaults func() *T
	// Usage is the help text of every flag derived from T, by flag name.
	Usage map[string]string
	// Normalizers rewrite the text of options whose accepted spellings are wider than the
	// value T stores, by flag name. They apply to flag values and to string config values.
	Normalizers map[string]func(string) (string, error)
	// BoolLike lists string options that may also be given as a boolean: alone on the
	// command line (meaning "true") or as a TOML boolean. NSQ's --tls-required is one.
	BoolLike map[string]bool
	// Aliases maps a deprecated flag to the flag it stands for; using it is recorded in
	// Result.Deprecated.
	Aliases map[string]string
	// NoOps maps a deprecated flag that does nothing (a boolean) to its help text; using it is
	// recorded in Result.Deprecated.
	NoOps map[string]string
	// ExampleConfig names the example config file the usage text points to.
	ExampleConfig string
}

// Result is what a command line asks for beyond the options themselves.
type Result struct {
	// ConfigPath is the --config file, or "".
	ConfigPath string
	// Version is true when --version was given.
	Version bool
	// Deprecated lists the deprecated flags that were used, in order, so that main can warn
	// once its logger exists.
	Deprecated []string
}

// field is one field of T that a flag or a config key can set.
type field struct {
	index []int // reflect field index
	typ   reflect.Type
	flag  string // flag name; empty for config-only fields
	key   string // TOML key; empty for flag-only fields
}

// fields lists the fields of T that carry a flag or a toml tag.
func fields[T any]() []field {
	t := reflect.TypeFor[T]()
	var out []field
	for i := range t.NumField() {
		sf := t.Field(i)
		f := field{index: sf.Index, typ: sf.Type, flag: sf.Tag.Get("flag"), key: sf.Tag.Get("toml")}
		if f.flag == "" && f.key == "" {
			continue
		}
		out = append(out, f)
	}
	return out
}

// FlagSet returns the flag set of the daemon, writing option flags into opts, --config into
// configPath and --version into version. Parse errors are returned, never printed: main
// decides what the user sees.
func (s *Spec[T]) FlagSet(opts *T, configPath *string, version *bool) *flag.FlagSet {
	fs := flag.NewFlagSet(s.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}

	fs.StringVar(configPath, FlagConfig, "", "path to a TOML config file")
	fs.BoolVar(version, FlagVersion, false, "print the version and exit")
	for name, help := range s.NoOps {
		fs.Bool(name, false, help)
	}
	v := reflect.ValueOf(opts).Elem()
	for _, f := range fields[T]() {
		if f.flag == "" {
			continue
		}
		fs.Var(s.newValue(v.FieldByIndex(f.index), f.flag), f.flag, s.Usage[f.flag])
	}
	for alias, target := range s.Aliases {
		if tf := fs.Lookup(target); tf != nil {
			fs.Var(tf.Value, alias, "[deprecated] use --"+target)
		}
	}
	return fs
}

// Load resolves the command line args and the config file it names into options. It returns
// flag.ErrHelp when help was asked for. With --version set it returns nil options before
// reading the config file, so that a broken file does not stop --version.
func (s *Spec[T]) Load(args []string) (*T, Result, error) {
	var res Result
	fromFlags := s.Defaults()
	fs := s.FlagSet(fromFlags, &res.ConfigPath, &res.Version)
	if err := fs.Parse(args); err != nil {
		return nil, Result{}, err
	}
	if fs.NArg() > 0 {
		return nil, Result{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if res.Version {
		return nil, res, nil
	}

	opts := s.Defaults()
	if res.ConfigPath != "" {
		data, err := os.ReadFile(res.ConfigPath)
		if err != nil {
			return nil, Result{}, fmt.Errorf("read config file: %w", err)
		}
		if err := s.ApplyConfig(opts, string(data)); err != nil {
			return nil, Result{}, fmt.Errorf("config file %s: %w", res.ConfigPath, err)
		}
	}

	byFlag := make(map[string]field)
	for _, f := range fields[T]() {
		if f.flag != "" {
			byFlag[f.flag] = f
		}
	}
	dst, src := reflect.ValueOf(opts).Elem(), reflect.ValueOf(fromFlags).Elem()
	fs.Visit(func(fl *flag.Flag) {
		name := fl.Name
		if target, ok := s.Aliases[name]; ok {
			res.Deprecated = append(res.Deprecated, name)
			name = target
		}
		if _, ok := s.NoOps[name]; ok {
			res.Deprecated = append(res.Deprecated, name)
		}
		if ov, ok := fl.Value.(*optionValue); ok && !ov.set {
			return
		}
		if f, ok := byFlag[name]; ok {
			dst.FieldByIndex(f.index).Set(src.FieldByIndex(f.index))
		}
	})
	return opts, res, nil
}

// PrintUsage writes the help text: every flag, the kind of value it takes and its default.
func (s *Spec[T]) PrintUsage(w io.Writer) {
	var configPath string
	var version bool
	fs := s.FlagSet(s.Defaults(), &configPath, &version)
	fmt.Fprintf(w, "Usage: %s [flags]\n\nPrecedence: defaults < --config file < flags on the command line.\n\n", s.Name)
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
	fmt.Fprint(w, "\nConfig file keys are NSQ's")
	if s.ExampleConfig != "" {
		fmt.Fprintf(w, " (see %s)", s.ExampleConfig)
	}
	fmt.Fprint(w, "; an unknown key is an error.\n")
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

// optionValue is a flag.Value bound to one field of an options struct.
type optionValue struct {
	field     reflect.Value
	boolLike  bool
	normalize func(string) (string, error)
	// set records that the command line gave the option a value. The first use of a list
	// flag replaces the default and later uses append, so a repeatable flag given twice means
	// exactly those two; and Load copies only options that were set, so a normalizer's
	// ErrKeepDefault leaves the config file's value alone.
	set bool
}

func (s *Spec[T]) newValue(fv reflect.Value, flagName string) *optionValue {
	return &optionValue{field: fv, boolLike: s.BoolLike[flagName], normalize: s.Normalizers[flagName]}
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
		if errors.Is(err, ErrKeepDefault) {
			return nil
		}
		if err != nil {
			return err
		}
		s = n
	}
	if v.field.Kind() != reflect.Slice {
		x, err := ParseScalar(v.field.Type(), s)
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
		// Numbers (NSQ's percentiles) may be given comma separated as well as repeated.
		parts = strings.Split(s, ",")
	}
	if !v.set {
		v.field.Set(reflect.Zero(v.field.Type()))
		v.set = true
	}
	for _, p := range parts {
		x, err := ParseScalar(elem, strings.TrimSpace(p))
		if err != nil {
			return err
		}
		v.field.Set(reflect.Append(v.field, x))
	}
	return nil
}

// IsBoolFlag lets boolean options, and bool-like ones, be given without a value.
func (v *optionValue) IsBoolFlag() bool {
	if v == nil || !v.field.IsValid() {
		return false
	}
	return v.field.Kind() == reflect.Bool || v.boolLike
}
