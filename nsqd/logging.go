package nsqd

import (
	"strings"

	"github.com/ternmq/tern/internal/logging"
)

// setLogLevel changes the daemon's log level and records it in the options.
func (n *NSQD) setLogLevel(s string) error {
	l, err := logging.ParseLevel(s)
	if err != nil {
		return err
	}
	n.logLevel.Set(l)
	o := *n.getOpts()
	o.LogLevel = strings.ToLower(s)
	n.opts.Store(&o)
	return nil
}
