package cmdline

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// testOptions has a field of every supported type, and the tag combinations.
type testOptions struct {
	Name     string        `flag:"name" toml:"name"`
	Count    int64         `flag:"count" toml:"count"`
	Small    int32         `flag:"small" toml:"small"`
	Port     int           `flag:"port" toml:"port"`
	Ratio    float64       `flag:"ratio" toml:"ratio"`
	Wait     time.Duration `flag:"wait" toml:"wait"`
	On       bool          `flag:"on" toml:"on"`
	Items    []string      `flag:"item" toml:"items"`
	Nums     []float64     `flag:"num" toml:"nums"`
	Mode     string        `flag:"mode" toml:"mode"`   // normalized and bool-like
	Level    string        `flag:"level" toml:"level"` // lowercased; "" keeps the default
	Hidden   time.Duration `toml:"hidden"`             // config only
	FlagOnly string        `flag:"flag-only"`          // flag only
	Ignored  string        // neither
}

func testDefaults() *testOptions {
	return &testOptions{Name: "n", Count: 10, Port: 4150, Wait: time.Second, On: true, Items: []string{"a"}, Mode: "off", Level: "info"}
}

func testSpec() *Spec[testOptions] {
	return &Spec[testOptions]{
		Name:     "testd",
		Defaults: testDefaults,
		Usage:    map[string]string{"name": "the name", "wait": "how long"},
		Normalizers: map[string]func(string) (string, error){
			"mode": func(s string) (string, error) {
				switch strings.ToLower(s) {
				case "true", "on":
					return "on", nil
				case "false", "off":
					return "off", nil
				}
				return "", errors.New("want on or off")
			},
			"level": func(s string) (string, error) {
				if s == "" {
					return "", ErrKeepDefault
				}
				return Lowercase(s)
			},
		},
		BoolLike:      map[string]bool{"mode": true},
		Aliases:       map[string]string{"old-name": "name"},
		NoOps:         map[string]string{"noisy": "[deprecated] does nothing"},
		ExampleConfig: "contrib/testd.toml.example",
	}
}

func TestLoadFlags(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		deprecated []string
		want       func(o *testOptions)
	}{
		{"none", nil, nil, func(*testOptions) {}},
		{"scalars", []string{"--name=x", "-count", "7", "--small=-3", "--port=1", "--ratio=0.5", "--wait=2m", "--flag-only=f"}, nil, func(o *testOptions) {
			o.Name, o.Count, o.Small, o.Port, o.Ratio, o.Wait, o.FlagOnly = "x", 7, -3, 1, 0.5, 2*time.Minute, "f"
		}},
		{"bool alone and false", []string{"--on=false"}, nil, func(o *testOptions) { o.On = false }},
		{"list replaces the default, then appends", []string{"--item=b", "--item", "c,d"}, nil, func(o *testOptions) { o.Items = []string{"b", "c,d"} }},
		{"number list splits on commas", []string{"--num=1, 0.5", "--num=2"}, nil, func(o *testOptions) { o.Nums = []float64{1, 0.5, 2} }},
		{"bool-like alone", []string{"--mode"}, nil, func(o *testOptions) { o.Mode = "on" }},
		{"normalized", []string{"--mode=ON"}, nil, func(o *testOptions) { o.Mode = "on" }},
		{"keep default", []string{"--level="}, nil, func(*testOptions) {}},
		{"lowercased", []string{"--level=WARN"}, nil, func(o *testOptions) { o.Level = "warn" }},
		{"alias", []string{"--old-name=y"}, []string{"old-name"}, func(o *testOptions) { o.Name = "y" }},
		{"no-op", []string{"--noisy"}, []string{"noisy"}, func(*testOptions) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, res, err := testSpec().Load(tt.args)
			if err != nil {
				t.Fatalf("Load(%q): %v", tt.args, err)
			}
			want := testDefaults()
			tt.want(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("\n got  %+v\n want %+v", got, want)
			}
			if !slices.Equal(res.Deprecated, tt.deprecated) {
				t.Errorf("deprecated = %q, want %q", res.Deprecated, tt.deprecated)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--hidden=1s"}, "flag provided but not defined: -hidden"},
		{[]string{"--ignored=x"}, "not defined"},
		{[]string{"--count=x"}, "want an integer"},
		{[]string{"--small=3000000000"}, "want an integer"},
		{[]string{"--wait=5"}, "want a duration"},
		{[]string{"--on=maybe"}, "want true or false"},
		{[]string{"--ratio=half"}, "want a number"},
		{[]string{"--mode=sometimes"}, "want on or off"},
		{[]string{"--num=1,x"}, "want a number"},
		{[]string{"--on", "true"}, `unexpected argument "true"`},
		{[]string{"--config=/nonexistent/x.toml"}, "read config file"},
		{[]string{"-h"}, flag.ErrHelp.Error()},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, _, err := testSpec().Load(tt.args)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestVersionSkipsConfig(t *testing.T) {
	bad := writeFile(t, "nope = 1")
	opts, res, err := testSpec().Load([]string{"--config=" + bad, "--version"})
	if err != nil || !res.Version || opts != nil {
		t.Fatalf("Load = %v, %+v, %v; want nil options, Version and no error", opts, res, err)
	}
}

func TestApplyConfig(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want func(o *testOptions)
	}{
		{"empty", "", func(*testOptions) {}},
		{"scalars", "name = \"x\"\ncount = 7\nsmall = -1\nport = 2\nratio = 1\nwait = \"90s\"\non = false\nhidden = \"5s\"", func(o *testOptions) {
			o.Name, o.Count, o.Small, o.Port, o.Ratio, o.Wait, o.On, o.Hidden = "x", 7, -1, 2, 1, 90*time.Second, false, 5*time.Second
		}},
		{"integer duration is milliseconds", "wait = 1500", func(o *testOptions) { o.Wait = 1500 * time.Millisecond }},
		{"numbers and booleans as strings", "count = \"8\"\non = \"false\"\nratio = \"0.25\"", func(o *testOptions) {
			o.Count, o.On, o.Ratio = 8, false, 0.25
		}},
		{"arrays", "items = [\"x\", \"y\"]\nnums = [1, 0.5]", func(o *testOptions) { o.Items, o.Nums = []string{"x", "y"}, []float64{1, 0.5} }},
		{"list as comma-separated string", `items = "x, y,"`, func(o *testOptions) { o.Items = []string{"x", "y"} }},
		{"empty array is nil", "items = []", func(o *testOptions) { o.Items = nil }},
		{"bool-like boolean", "mode = true", func(o *testOptions) { o.Mode = "on" }},
		{"normalized string", `mode = "OFF"`, func(o *testOptions) { o.Mode = "off" }},
		{"keep default", `level = ""`, func(*testOptions) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := testDefaults()
			if err := testSpec().ApplyConfig(got, tt.doc); err != nil {
				t.Fatalf("ApplyConfig: %v", err)
			}
			want := testDefaults()
			tt.want(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("\n got  %+v\n want %+v", got, want)
			}
		})
	}
}

func TestApplyConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{"unknown keys, all reported", "a = 1\nname = 2\nb = 3", []string{`unknown key "a"`, `key "name": want a string, got an integer`, `unknown key "b"`}},
		{"flag-only field has no key", `flag-only = "x"`, []string{`unknown key "flag-only"`}},
		{"untagged field has no key", `Ignored = "x"`, []string{`unknown key "Ignored"`}},
		{"table", "[section]\nname = \"x\"", []string{`unknown key "section"`}},
		{"syntax", "name = ", []string{"parse:"}},
		{"float for integer", "count = 1.5", []string{"want an integer, got a float"}},
		{"integer out of range", "small = 3000000000", []string{"out of range"}},
		{"integer for bool", "on = 1", []string{"want true or false, got an integer"}},
		{"duration as float", "wait = 1.5", []string{"got a float"}},
		{"duration overflows", "wait = 9223372036854775807", []string{"out of range"}},
		{"scalar for list", "items = 1", []string{"want an array"}},
		{"bad element", `nums = [1, "x"]`, []string{"element 1: want a number"}},
		{"normalizer refuses", `mode = "maybe"`, []string{"want on or off"}},
		{"non-string for normalized", "level = 3", []string{"want a string, got an integer"}},
		{"date", "name = 1979-05-27", []string{"got a date or time"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := testSpec().ApplyConfig(testDefaults(), tt.doc)
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

func TestPrecedence(t *testing.T) {
	path := writeFile(t, "name = \"file\"\ncount = 5\nitems = [\"f1\", \"f2\"]\non = false\nlevel = \"warn\"")
	tests := []struct {
		name string
		args []string
		want func(o *testOptions)
	}{
		{"file over defaults", nil, func(*testOptions) {}},
		{"flag over file", []string{"--name=flag"}, func(o *testOptions) { o.Name = "flag" }},
		{"flag equal to the default still wins", []string{"--count=10"}, func(o *testOptions) { o.Count = 10 }},
		{"bool flag over file", []string{"--on"}, func(o *testOptions) { o.On = true }},
		{"list flag replaces the file's list", []string{"--item=x"}, func(o *testOptions) { o.Items = []string{"x"} }},
		{"alias over file", []string{"--old-name=alias"}, func(o *testOptions) { o.Name = "alias" }},
		{"a flag keeping its default leaves the file's value", []string{"--level="}, func(*testOptions) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, res, err := testSpec().Load(append([]string{"--config", path}, tt.args...))
			if err != nil {
				t.Fatal(err)
			}
			if res.ConfigPath != path {
				t.Errorf("ConfigPath = %q", res.ConfigPath)
			}
			want := testDefaults()
			want.Name, want.Count, want.Items, want.On, want.Level = "file", 5, []string{"f1", "f2"}, false, "warn"
			tt.want(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("\n got  %+v\n want %+v", got, want)
			}
		})
	}
}

func TestConfigErrorNamesFile(t *testing.T) {
	path := writeFile(t, "nope = 1")
	_, _, err := testSpec().Load([]string{"--config", path})
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `unknown key "nope"`) {
		t.Fatalf("error = %v, want it to name %s and the key", err, path)
	}
}

func TestPrintUsage(t *testing.T) {
	var out strings.Builder
	testSpec().PrintUsage(&out)
	for _, s := range []string{
		"Usage: testd [flags]",
		"  --name <string>\n    \tthe name (default \"n\")\n",
		"  --wait <duration>\n    \thow long (default 1s)\n",
		"  --count <int>\n", "  --ratio <float>\n", "  --num <float>\n", "  --item <string>\n",
		"  --on\n", "  --mode\n", "  --noisy\n", "  --old-name <string>\n    \t[deprecated] use --name",
		"  --config <string>\n", "  --version\n",
		"(see contrib/testd.toml.example)",
	} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("usage does not contain %q:\n%s", s, out.String())
		}
	}
	if strings.Contains(out.String(), "(default 0)") || strings.Contains(out.String(), "(default false)") {
		t.Errorf("usage shows zero defaults:\n%s", out.String())
	}
}

func TestParseScalarUnsupported(t *testing.T) {
	if _, err := ParseScalar(reflect.TypeFor[uint8](), "1"); err == nil || !strings.Contains(err.Error(), "unsupported") {
		t.Fatalf("ParseScalar(uint8) = %v, want unsupported", err)
	}
}

func FuzzApplyConfig(f *testing.F) {
	for _, seed := range []string{
		"", "wait = 1500", `items = "a,b"`, "nums = [1, 0.5]", "mode = true", "[t]\nx = 1",
		"count = 9223372036854775807", "items = [[1], {a = 1}]", "wait = 1979-05-27T07:32:00Z",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		s := testSpec()
		opts := testDefaults()
		if err := s.ApplyConfig(opts, doc); err != nil {
			return
		}
		// Decoding does not depend on state left in the options: applying again from fresh
		// defaults gives the same result.
		again := testDefaults()
		if err := s.ApplyConfig(again, doc); err != nil {
			t.Fatalf("second apply failed: %v", err)
		}
		if !reflect.DeepEqual(opts, again) {
			t.Fatalf("applying %q twice differs:\n%+v\n%+v", doc, opts, again)
		}
	})
}

func writeFile(t *testing.T, doc string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestValueByKey(t *testing.T) {
	o := &testOptions{Name: "n", Wait: time.Second}
	for key, want := range map[string]any{"name": "n", "wait": time.Second, "items": []string{}, "hidden": time.Duration(0)} {
		got, ok := ValueByKey(o, key)
		if !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("ValueByKey(%q) = %#v, %v; want %#v", key, got, ok, want)
		}
	}
	for _, key := range []string{"flag-only", "Ignored", "nope"} {
		if _, ok := ValueByKey(o, key); ok {
			t.Errorf("ValueByKey(%q) found a value", key)
		}
	}
}
