// Package version holds the version Tern reports on the wire and on the command line.
//
// Binary is what /info, /stats, IDENTIFY and lookupd registrations report. It is NSQ's
// release number so that tools which compare versions (nsqadmin's out-of-date flag, for one)
// treat Tern as a current NSQ; Tern's own release is carried alongside it.
package version

import (
	"fmt"
	"runtime"
)

// Binary is the NSQ protocol release Tern is compatible with.
const Binary = "1.3.0"

// Tern is this project's own release.
const Tern = "0.1.0"

// String returns the line printed by --version.
func String(app string) string {
	return fmt.Sprintf("%s v%s (tern %s, built with %s)", app, Binary, Tern, runtime.Version())
}
