package nsqd

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"github.com/ternmq/tern/internal/protocol"
)

// Per-topic and per-channel settings are Tern's extensions beyond NSQ: message TTL, quotas and
// retention on a topic; max attempts, a dead-letter topic and TTL on a channel. Every one is
// off at its zero value, so a topic nobody configured behaves exactly as NSQ's. They are set
// over HTTP (POST /topic/settings, /channel/settings), kept in the topic's settings.json
// (memory only for an ephemeral topic) and shown in /stats and /metrics.

// Quota policies: what a publish to a topic at its limit does.
const (
	QuotaReject     = "reject"      // the publish is refused (the default)
	QuotaDropOldest = "drop_oldest" // the oldest unread messages are dropped to make room
)

// TopicSettings are a topic's extensions. Durations are in milliseconds, as NSQ's HTTP API
// counts them.
type TopicSettings struct {
	// MessageTTLMs expires a message this long after its publish: it is never delivered
	// after that. A channel's own TTL takes precedence.
	MessageTTLMs int64 `json:"message_ttl_ms,omitempty"`
	// DeadLetterExpired sends expired messages to each channel's dead-letter topic rather
	// than dropping them.
	DeadLetterExpired bool `json:"dead_letter_expired,omitempty"`
	// MaxMessages and MaxBytes bound the messages the topic holds for its slowest channel
	// (or for its first channel, when it has none).
	MaxMessages int64 `json:"max_messages,omitempty"`
	MaxBytes    int64 `json:"max_bytes,omitempty"`
	// QuotaPolicy is QuotaReject ("" means it) or QuotaDropOldest.
	QuotaPolicy string `json:"quota_policy,omitempty"`
	// RetainMs and RetainBytes keep consumed messages for replay: segments of the log are
	// kept while younger than RetainMs, and the newest RetainBytes of the log are kept.
	RetainMs    int64 `json:"retain_ms,omitempty"`
	RetainBytes int64 `json:"retain_bytes,omitempty"`
}

// ChannelSettings are a channel's extensions.
type ChannelSettings struct {
	// MaxAttempts dead-letters a message delivered this many times that is then requeued
	// or times out again; 0 never does.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// DeadLetterTopic is where dead letters go; "" means "<topic>.dead".
	DeadLetterTopic string `json:"dead_letter_topic,omitempty"`
	// MessageTTLMs overrides the topic's message TTL for this channel.
	MessageTTLMs int64 `json:"message_ttl_ms,omitempty"`
	// DeadLetterExpired sends this channel's expired messages to its dead-letter topic.
	DeadLetterExpired bool `json:"dead_letter_expired,omitempty"`
}

// maxAttemptsLimit is the largest max attempts: a message's attempts count is 16 bits on the
// wire.
const maxAttemptsLimit = 65535

// maxDurationMs bounds the durations of settings (ten years), so that a time plus one never
// overflows nanoseconds.
const maxDurationMs = 10 * 365 * 24 * 3600 * 1000

// errSettings marks a settings value that is refused; its text says why.
var errSettings = errors.New("invalid setting")

func settingsErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errSettings, fmt.Sprintf(format, args...))
}

// validate checks s for a topic, ephemeral or not.
func (s TopicSettings) validate(ephemeral bool) error {
	switch {
	case s.MessageTTLMs < 0 || s.MessageTTLMs > maxDurationMs:
		return settingsErr("message_ttl_ms must be between 0 and %d (ten years)", maxDurationMs)
	case s.MaxMessages < 0, s.MaxBytes < 0:
		return settingsErr("max_messages and max_bytes must not be negative")
	case s.QuotaPolicy != "" && s.QuotaPolicy != QuotaReject && s.QuotaPolicy != QuotaDropOldest:
		return settingsErr("quota_policy must be %q or %q", QuotaReject, QuotaDropOldest)
	case s.RetainMs < 0 || s.RetainMs > maxDurationMs, s.RetainBytes < 0:
		return settingsErr("retain_ms must be between 0 and %d (ten years), retain_bytes not negative", maxDurationMs)
	case ephemeral && (s.RetainMs > 0 || s.RetainBytes > 0):
		return settingsErr("an ephemeral topic keeps nothing on disk to retain")
	case ephemeral && s.MaxBytes > 0:
		return settingsErr("an ephemeral topic is bounded by --mem-queue-size; max_bytes needs a disk topic")
	}
	return nil
}

func (s TopicSettings) hasQuota() bool { return s.MaxMessages > 0 || s.MaxBytes > 0 }

func (s TopicSettings) retains() bool { return s.RetainMs > 0 || s.RetainBytes > 0 }

// validate checks s for channel channel of topic topic.
func (s ChannelSettings) validate(topic string) error {
	switch {
	case s.MaxAttempts < 0 || s.MaxAttempts > maxAttemptsLimit:
		return settingsErr("max_attempts must be between 0 and %d", maxAttemptsLimit)
	case s.MessageTTLMs < 0 || s.MessageTTLMs > maxDurationMs:
		return settingsErr("message_ttl_ms must be between 0 and %d (ten years)", maxDurationMs)
	}
	if s.MaxAttempts == 0 && !s.DeadLetterExpired && s.DeadLetterTopic == "" {
		return nil
	}
	dead := s.deadLetterTopic(topic)
	switch {
	case !protocol.IsValidTopicName(dead):
		return settingsErr("dead-letter topic %q is not a valid topic name; set dead_letter_topic", dead)
	case dead == topic:
		return settingsErr("a topic cannot be its own dead-letter topic")
	}
	return nil
}

// deadLetterTopic is where the channel's dead letters go: the setting, or "<topic>.dead" (an
// ephemeral topic's dead letters are ephemeral too, as its name must end in #ephemeral).
func (s ChannelSettings) deadLetterTopic(topic string) string {
	if s.DeadLetterTopic != "" {
		return s.DeadLetterTopic
	}
	if base, ok := strings.CutSuffix(topic, ephemeralSuffix); ok {
		return base + ".dead" + ephemeralSuffix
	}
	return topic + ".dead"
}

const ephemeralSuffix = "#ephemeral"

// TopicSettingsPatch changes some of a topic's settings: what is absent stays.
type TopicSettingsPatch struct {
	MessageTTLMs      *int64  `json:"message_ttl_ms"`
	DeadLetterExpired *bool   `json:"dead_letter_expired"`
	MaxMessages       *int64  `json:"max_messages"`
	MaxBytes          *int64  `json:"max_bytes"`
	QuotaPolicy       *string `json:"quota_policy"`
	RetainMs          *int64  `json:"retain_ms"`
	RetainBytes       *int64  `json:"retain_bytes"`
}

func (p TopicSettingsPatch) apply(s TopicSettings) TopicSettings {
	set(&s.MessageTTLMs, p.MessageTTLMs)
	set(&s.DeadLetterExpired, p.DeadLetterExpired)
	set(&s.MaxMessages, p.MaxMessages)
	set(&s.MaxBytes, p.MaxBytes)
	set(&s.QuotaPolicy, p.QuotaPolicy)
	set(&s.RetainMs, p.RetainMs)
	set(&s.RetainBytes, p.RetainBytes)
	return s
}

// ChannelSettingsPatch changes some of a channel's settings: what is absent stays.
type ChannelSettingsPatch struct {
	MaxAttempts       *int    `json:"max_attempts"`
	DeadLetterTopic   *string `json:"dead_letter_topic"`
	MessageTTLMs      *int64  `json:"message_ttl_ms"`
	DeadLetterExpired *bool   `json:"dead_letter_expired"`
}

func (p ChannelSettingsPatch) apply(s ChannelSettings) ChannelSettings {
	set(&s.MaxAttempts, p.MaxAttempts)
	set(&s.DeadLetterTopic, p.DeadLetterTopic)
	set(&s.MessageTTLMs, p.MessageTTLMs)
	set(&s.DeadLetterExpired, p.DeadLetterExpired)
	return s
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// settingsFile is what a topic's settings.json holds. A channel's settings stay in it while
// the channel exists, so that they are there again when the channel is restored.
type settingsFile struct {
	Topic    TopicSettings              `json:"topic"`
	Channels map[string]ChannelSettings `json:"channels,omitempty"`
}

const settingsFileName = "settings.json"

// readSettingsFile loads what a previous run saved; a missing file is no settings. A damaged
// one is an error: running a topic without its quota or dead-lettering because a file could
// not be read would be a silent change of behaviour.
func readSettingsFile(dir string) (settingsFile, error) {
	var f settingsFile
	b, err := os.ReadFile(filepath.Join(dir, settingsFileName))
	if errors.Is(err, os.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, err
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("%s: %w", settingsFileName, err)
	}
	return f, nil
}

// Settings returns the topic's settings.
func (t *Topic) Settings() TopicSettings {
	if s := t.settings.Load(); s != nil {
		return *s
	}
	return TopicSettings{}
}

// channelSettings returns the saved settings of a channel.
func (t *Topic) channelSettings(name string) ChannelSettings {
	t.settingsMu.Lock()
	defer t.settingsMu.Unlock()
	return t.chanSettings[name]
}

// UpdateSettings applies p to the topic's settings, persists them and puts them in force.
func (t *Topic) UpdateSettings(p TopicSettingsPatch) (TopicSettings, error) {
	t.settingsMu.Lock()
	s := p.apply(t.Settings())
	if err := s.validate(t.ephemeral); err != nil {
		t.settingsMu.Unlock()
		return TopicSettings{}, err
	}
	err := t.saveSettingsLocked(s, t.chanSettings)
	if err == nil {
		t.settings.Store(&s) // in force only once saved
	}
	t.settingsMu.Unlock()
	if err != nil {
		return TopicSettings{}, err
	}
	for _, ch := range t.Channels() {
		ch.settingsChanged()
	}
	return s, nil
}

// UpdateChannelSettings applies p to a channel's settings, persists them and puts them in
// force.
func (t *Topic) UpdateChannelSettings(ch *Channel, p ChannelSettingsPatch) (ChannelSettings, error) {
	t.settingsMu.Lock()
	s := p.apply(t.chanSettings[ch.name])
	if err := s.validate(t.name); err != nil {
		t.settingsMu.Unlock()
		return ChannelSettings{}, err
	}
	chans := maps.Clone(t.chanSettings)
	if chans == nil {
		chans = make(map[string]ChannelSettings)
	}
	if s == (ChannelSettings{}) {
		delete(chans, ch.name)
	} else {
		chans[ch.name] = s
	}
	err := t.saveSettingsLocked(t.Settings(), chans)
	if err == nil {
		t.chanSettings = chans // in force only once saved
	}
	t.settingsMu.Unlock()
	if err != nil {
		return ChannelSettings{}, err
	}
	ch.settingsChanged()
	return s, nil
}

// forgetChannelSettings drops a deleted channel's settings.
func (t *Topic) forgetChannelSettings(name string) {
	t.settingsMu.Lock()
	defer t.settingsMu.Unlock()
	if _, ok := t.chanSettings[name]; !ok {
		return
	}
	delete(t.chanSettings, name)
	if err := t.saveSettingsLocked(t.Settings(), t.chanSettings); err != nil {
		t.logger.Error("save settings", "error", err)
	}
}

// saveSettingsLocked writes settings.json with ts and chans, synced: a setting reported as
// saved survives a crash. settingsMu is held.
func (t *Topic) saveSettingsLocked(ts TopicSettings, chans map[string]ChannelSettings) error {
	if t.dir == "" {
		return nil
	}
	f := settingsFile{Topic: ts, Channels: chans}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	t.diskMu.Lock()
	defer t.diskMu.Unlock()
	if t.exiting.Load() {
		return errTopicExiting
	}
	if err := writeFileAtomic(filepath.Join(t.dir, settingsFileName), b, true); err != nil {
		return fmt.Errorf("save settings of topic %q: %w", t.name, err)
	}
	return nil
}

// effectiveTTL is the TTL in ns a channel applies, and whether expired messages are
// dead-lettered.
func effectiveTTL(ts TopicSettings, cs ChannelSettings) (ttl int64, deadLetter bool) {
	ms := ts.MessageTTLMs
	if cs.MessageTTLMs > 0 {
		ms = cs.MessageTTLMs
	}
	return ms * 1e6, ts.DeadLetterExpired || cs.DeadLetterExpired
}
