package tofile

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// filenameFormat returns --filename-format with everything fixed for topic replaced:
// <TOPIC>, <HOST> and <PID>, <REV> dropped when it is not needed, and ".gz" appended for
// --gzip. <DATETIME> and <REV> are left to replace per file.
func filenameFormat(o *Options, topic, hostname string) string {
	short, _, _ := strings.Cut(hostname, ".")
	identifier := short
	if o.HostIdentifier != "" {
		identifier = strings.NewReplacer("<SHORT_HOST>", short, "<HOSTNAME>", hostname).Replace(o.HostIdentifier)
	}
	f := o.FilenameFormat
	if !o.needsRev() {
		f = strings.ReplaceAll(f, "<REV>", "")
	}
	f = strings.NewReplacer("<TOPIC>", topic, "<HOST>", identifier, "<PID>", strconv.Itoa(os.Getpid())).Replace(f)
	if o.GZIP && !strings.HasSuffix(f, ".gz") {
		f += ".gz"
	}
	return f
}

// withRev replaces <REV> in name with rev as NSQ spells it: "-" and six digits.
func withRev(name string, rev int) string {
	return strings.ReplaceAll(name, "<REV>", fmt.Sprintf("-%06d", rev))
}

// strftime formats t by the C strftime directives NSQ's nsq_to_file supports: %Y %y %m %B
// %b %d %A %a %H %I %M %S %p %Z %z and %%. Any other text, unknown directives included,
// is copied as it is.
func strftime(format string, t time.Time) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		if format[i] != '%' || i+1 == len(format) {
			b.WriteByte(format[i])
			continue
		}
		layout, ok := strftimeLayouts[format[i+1]]
		if !ok {
			b.WriteByte('%')
			continue
		}
		b.WriteString(t.Format(layout))
		i++
	}
	return b.String()
}

// strftimeLayouts maps a strftime directive to the Go layout that formats it.
var strftimeLayouts = map[byte]string{
	'Y': "2006", 'y': "06", 'm': "01", 'B': "January", 'b': "Jan", 'd': "02",
	'A': "Monday", 'a': "Mon", 'H': "15", 'I': "03", 'M': "04", 'S': "05",
	'p': "PM", 'Z': "MST", 'z': "-0700", '%': "%",
}
