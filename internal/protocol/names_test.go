package protocol_test

import (
	"strings"
	"testing"

	gonsq "github.com/nsqio/go-nsq"

	"github.com/ternmq/tern/internal/protocol"
)

func TestNames(t *testing.T) {
	tests := []struct {
		name      string
		valid     bool
		ephemeral bool
	}{
		{"", false, false},
		{"a", true, false},
		{"test", true, false},
		{"a.b_c-D9", true, false},
		{"...", true, false},
		{"-", true, false},
		{strings.Repeat("a", 64), true, false},
		{strings.Repeat("a", 65), false, false},
		{"a#ephemeral", true, true},
		{strings.Repeat("a", 54) + "#ephemeral", true, true}, // 64 with the suffix
		{strings.Repeat("a", 55) + "#ephemeral", false, true},
		{"#ephemeral", false, true},
		{"a#ephemeral#ephemeral", false, true},
		{"a#ephemera", false, false},
		{"a#Ephemeral", false, false},
		{"a#ephemeralx", false, false},
		{"a#b", false, false},
		{"a b", false, false},
		{"a\n", false, false},
		{"a/b", false, false},
		{"a:b", false, false},
		{"tópico", false, false},
		{"a\x00", false, false},
	}
	for _, tt := range tests {
		if got := protocol.IsValidTopicName(tt.name); got != tt.valid {
			t.Errorf("IsValidTopicName(%q) = %v, want %v", tt.name, got, tt.valid)
		}
		if got := protocol.IsValidChannelName(tt.name); got != tt.valid {
			t.Errorf("IsValidChannelName(%q) = %v, want %v", tt.name, got, tt.valid)
		}
		if got := protocol.IsEphemeral(tt.name); got != tt.ephemeral {
			t.Errorf("IsEphemeral(%q) = %v, want %v", tt.name, got, tt.ephemeral)
		}
		// go-nsq implements NSQ's rule with its regular expression.
		if got := gonsq.IsValidTopicName(tt.name); got != tt.valid {
			t.Errorf("go-nsq disagrees on %q: %v", tt.name, got)
		}
	}
}

func TestNamesDoNotAllocate(t *testing.T) {
	n := testing.AllocsPerRun(100, func() {
		if !protocol.IsValidTopicName("some_topic.name-1#ephemeral") {
			t.Fatal("name rejected")
		}
	})
	if n != 0 {
		t.Errorf("IsValidTopicName allocates %v times", n)
	}
}
