package cmdline

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// ApplyConfig applies a TOML document to opts. Every key must be a known one; every problem
// in the document is reported at once.
func (s *Spec[T]) ApplyConfig(opts *T, doc string) error {
	var raw map[string]any
	if _, err := toml.Decode(doc, &raw); err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	byKey := make(map[string]field)
	for _, f := range fields[T]() {
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
		if err := s.setFromTOML(v.FieldByIndex(f.index), f, raw[k]); err != nil {
			errs = append(errs, fmt.Errorf("key %q: %w", k, err))
		}
	}
	return errors.Join(errs...)
}

// setFromTOML coerces a decoded TOML value into fv. It accepts what NSQ's config loader
// (mreiferson/go-options) accepts: durations as strings ("60s") or integers, which count
// milliseconds; numbers and booleans also as strings; lists also as one comma-separated
// string. It is stricter in one place: go-options turns an integer into a boolean (and gets
// it backwards), which is refused here.
func (s *Spec[T]) setFromTOML(fv reflect.Value, f field, raw any) error {
	if normalize := s.Normalizers[f.flag]; f.flag != "" && normalize != nil {
		str, ok := raw.(string)
		if b, isBool := raw.(bool); isBool && s.BoolLike[f.flag] {
			str, ok = strconv.FormatBool(b), true
		}
		if !ok {
			return fmt.Errorf("want a string, got %s", tomlType(raw))
		}
		n, err := normalize(str)
		if errors.Is(err, ErrKeepDefault) {
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
		fv.Set(x)
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
	// "key = []" round-trips to the defaults exactly.
	out := reflect.Zero(f.typ)
	for i, item := range items {
		x, err := coerceTOML(f.typ.Elem(), item)
		if err != nil {
			return fmt.Errorf("element %d: %w", i, err)
		}
		out = reflect.Append(out, x)
	}
	fv.Set(out)
	return nil
}

// ParseScalar parses text into a value of type t, as a flag's value or a config file's string
// is parsed: durations as time.ParseDuration reads them, booleans as strconv.ParseBool, and
// integers and floats in base 10. A type the package does not handle is an error saying
// "unsupported".
func ParseScalar(t reflect.Type, s string) (reflect.Value, error) {
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

// coerceTOML converts one decoded TOML scalar into a value of type t.
func coerceTOML(t reflect.Type, raw any) (reflect.Value, error) {
	if s, ok := raw.(string); ok && t.Kind() != reflect.String {
		return ParseScalar(t, s)
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

// ValueByKey returns the value of the field of opts whose TOML key is key, as GET /config/:opt
// answers it: an unset list is [], not null. It reports false for an unknown key.
func ValueByKey[T any](opts *T, key string) (any, bool) {
	v := reflect.ValueOf(opts).Elem()
	for _, f := range fields[T]() {
		if f.key != key {
			continue
		}
		fv := v.FieldByIndex(f.index)
		if fv.Kind() == reflect.Slice && fv.IsNil() {
			return reflect.MakeSlice(fv.Type(), 0, 0).Interface(), true
		}
		return fv.Interface(), true
	}
	return nil, false
}
