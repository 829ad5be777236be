package toolflag

import (
	"flag"
	"strings"
)

// Strings is the value of a flag that may be given multiple times, as NSQ's StringArray:
// every use appends one value, commas included.
type Strings []string

// String renders the values comma separated, for the help text.
func (s *Strings) String() string {
	if s == nil {
		return ""
	}
	return strings.Join(*s, ",")
}

// Set appends v.
func (s *Strings) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// StringsVar defines a repeatable flag that appends to *p.
func StringsVar(fs *flag.FlagSet, p *[]string, name, usage string) {
	fs.Var((*Strings)(p), name, usage)
}
