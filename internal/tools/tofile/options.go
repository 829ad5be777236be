package tofile

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/ternmq/tern/internal/logging"
	"github.com/ternmq/tern/internal/tools/toolflag"
)

// Options are nsq_to_file's settings, one per NSQ flag.
type Options struct {
	// Topics are the topics to write (--topic, repeatable). Without any, the topics are
	// discovered through the lookupds and filtered by TopicPattern.
	Topics []string
	// TopicPattern is a regular expression topics must match, unanchored (--topic-pattern).
	TopicPattern string
	// TopicRefresh is how often the lookupds are asked for new topics (--topic-refresh).
	TopicRefresh time.Duration
	// Channel is the channel to consume through (--channel).
	Channel string

	// Source is where to consume from (--nsqd-tcp-address, --lookupd-http-address).
	Source toolflag.Source
	// ConsumerOpts are go-nsq "key,value" options for the consumers (--consumer-opt).
	ConsumerOpts []string
	// MaxInFlight is how many messages may be in flight per topic; it is also the most
	// messages written between two syncs (--max-in-flight).
	MaxInFlight int
	// HTTPClientConnectTimeout and HTTPClientRequestTimeout bound the queries of the
	// lookupds' topics (--http-client-connect-timeout, --http-client-request-timeout).
	HTTPClientConnectTimeout time.Duration
	HTTPClientRequestTimeout time.Duration

	// LogPrefix starts every log line, before the structured record (--log-prefix).
	LogPrefix string
	// LogLevel is debug, info, warn, error or fatal (--log-level).
	LogLevel string

	// OutputDir is where finished files go (--output-dir).
	OutputDir string
	// WorkDir is where files are written before they are moved to OutputDir; empty means
	// OutputDir itself (--work-dir).
	WorkDir string
	// DatetimeFormat is the strftime format of <DATETIME> (--datetime-format).
	DatetimeFormat string
	// FilenameFormat names the files: <TOPIC>, <HOST>, <PID>, <DATETIME> and <REV> are
	// replaced (--filename-format).
	FilenameFormat string
	// HostIdentifier replaces the host name in <HOST>; <SHORT_HOST> and <HOSTNAME> are
	// replaced in it (--host-identifier).
	HostIdentifier string
	// GZIP compresses the files, at GZIPLevel 1..9 (--gzip, --gzip-level).
	GZIP      bool
	GZIPLevel int
	// SkipEmptyFiles avoids opening a file until there is a message for it
	// (--skip-empty-files).
	SkipEmptyFiles bool
	// RotateSize starts a new file once one is bigger than this many bytes (uncompressed
	// bytes written, with --gzip); 0 means never (--rotate-size).
	RotateSize int64
	// RotateInterval starts a new file once one is this old; 0 means never
	// (--rotate-interval).
	RotateInterval time.Duration
	// SyncInterval is the longest a written message waits for its file to be synced and
	// for its FIN (--sync-interval).
	SyncInterval time.Duration
}

// NewOptions returns NSQ's defaults.
func NewOptions() *Options {
	return &Options{
		TopicRefresh:             time.Minute,
		Channel:                  "nsq_to_file",
		MaxInFlight:              200,
		HTTPClientConnectTimeout: 2 * time.Second,
		HTTPClientRequestTimeout: 5 * time.Second,
		LogPrefix:                "[nsq_to_file] ",
		LogLevel:                 "info",
		OutputDir:                "/tmp",
		DatetimeFormat:           "%Y-%m-%d_%H",
		FilenameFormat:           "<TOPIC>.<HOST><REV>.<DATETIME>.log",
		GZIPLevel:                6,
		SyncInterval:             30 * time.Second,
	}
}

// Validate reports every problem with o at once, in NSQ's words where NSQ has them.
func (o *Options) Validate() error {
	errs := []error{o.Source.Validate(), toolflag.CheckChannel("channel", o.Channel), toolflag.CheckMaxInFlight(o.MaxInFlight)}
	if len(o.Topics) > 0 {
		errs = append(errs, toolflag.CheckTopics("topic", o.Topics))
	}
	if o.HTTPClientConnectTimeout <= 0 {
		errs = append(errs, errors.New("--http-client-connect-timeout should be positive"))
	}
	if o.HTTPClientRequestTimeout <= 0 {
		errs = append(errs, errors.New("--http-client-request-timeout should be positive"))
	}
	if o.GZIPLevel < 1 || o.GZIPLevel > 9 {
		errs = append(errs, fmt.Errorf("invalid --gzip-level value (%d), should be 1-9", o.GZIPLevel))
	}
	if len(o.Topics) == 0 && o.TopicPattern == "" {
		errs = append(errs, errors.New("--topic or --topic-pattern required"))
	}
	if len(o.Topics) == 0 && len(o.Source.LookupdHTTPAddrs) == 0 {
		errs = append(errs, errors.New("--lookupd-http-address must be specified when no --topic specified"))
	}
	if _, err := regexp.Compile(o.TopicPattern); err != nil {
		errs = append(errs, fmt.Errorf("--topic-pattern: %w", err))
	}
	if o.TopicRefresh <= 0 {
		errs = append(errs, errors.New("--topic-refresh should be positive"))
	}
	if o.SyncInterval <= 0 {
		errs = append(errs, errors.New("--sync-interval should be positive"))
	}
	if o.RotateSize < 0 {
		errs = append(errs, errors.New("--rotate-size should not be negative"))
	}
	if o.RotateInterval < 0 {
		errs = append(errs, errors.New("--rotate-interval should not be negative"))
	}
	if o.OutputDir == "" {
		errs = append(errs, errors.New("--output-dir required"))
	}
	if o.needsRev() && !strings.Contains(o.FilenameFormat, "<REV>") {
		errs = append(errs, errors.New("missing <REV> in --filename-format when gzip, rotation, or work dir enabled"))
	}
	if _, err := logging.ParseLevel(o.LogLevel); err != nil {
		errs = append(errs, errors.New("--log-level is invalid"))
	}
	_, err := toolflag.ConsumerConfig(Name, o.ConsumerOpts, o.MaxInFlight)
	return errors.Join(append(errs, err)...)
}

// workDir is --work-dir, defaulting to --output-dir.
func (o *Options) workDir() string {
	if o.WorkDir == "" {
		return o.OutputDir
	}
	return o.WorkDir
}

// needsRev reports whether files can be more than one per name, so that <REV> must tell
// them apart.
func (o *Options) needsRev() bool {
	return o.GZIP || o.RotateSize > 0 || o.RotateInterval > 0 || o.workDir() != o.OutputDir
}
