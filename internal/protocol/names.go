package protocol

import "strings"

// MaxNameLength is the longest valid topic or channel name, "#ephemeral" suffix included.
const MaxNameLength = 64

// EphemeralSuffix marks a topic or channel that is kept in memory only and deleted with its
// last client.
const EphemeralSuffix = "#ephemeral"

// IsValidTopicName reports whether name is a valid topic name: 1 to 64 bytes matching
// ^[.a-zA-Z0-9_-]+(#ephemeral)?$.
func IsValidTopicName(name string) bool { return isValidName(name) }

// IsValidChannelName reports whether name is a valid channel name; the rule is the topic
// rule.
func IsValidChannelName(name string) bool { return isValidName(name) }

// IsEphemeral reports whether name carries the "#ephemeral" suffix. It does not validate.
func IsEphemeral(name string) bool { return strings.HasSuffix(name, EphemeralSuffix) }

// isValidName checks by hand what NSQ checks with a regular expression: this runs on every
// PUB and SUB, and a byte loop is an order of magnitude faster and never allocates.
func isValidName(name string) bool {
	if len(name) < 1 || len(name) > MaxNameLength {
		return false
	}
	base := strings.TrimSuffix(name, EphemeralSuffix)
	if base == "" {
		return false
	}
	for i := 0; i < len(base); i++ {
		if !isNameByte(base[i]) {
			return false
		}
	}
	return true
}

func isNameByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c == '.', c == '_', c == '-':
		return true
	}
	return false
}
