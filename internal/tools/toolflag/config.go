package toolflag

import (
	"errors"
	"fmt"

	"github.com/ternmq/tern/internal/protocol"
	"github.com/ternmq/tern/nsq"
)

// ConsumerConfig returns the Config of a tool's consumers: Tern's defaults, the tool's user
// agent, maxInFlight (its --max-in-flight), then the --consumer-opt options, of which
// max_in_flight is refused in favour of --max-in-flight.
func ConsumerConfig(tool string, opts []string, maxInFlight int) (*nsq.Config, error) {
	cfg := nsq.NewConfig()
	cfg.UserAgent = UserAgent(tool)
	cfg.MaxInFlight = maxInFlight
	err := ApplyOptions(cfg, ForConsumer, opts, map[string]string{"max_in_flight": "max-in-flight"})
	return cfg, err
}

// ProducerConfig returns the Config of a tool's producers: Tern's defaults, the tool's user
// agent, then the --producer-opt options, of which those only a consumer uses
// (max_in_flight, max_attempts, sample_rate, ...) are refused, each named.
func ProducerConfig(tool string, opts []string) (*nsq.Config, error) {
	cfg := nsq.NewConfig()
	cfg.UserAgent = UserAgent(tool)
	err := ApplyOptions(cfg, ForProducer, opts, nil)
	return cfg, err
}

// CheckTopics reports an empty list (NSQ's "--topic required") and every invalid topic
// name, naming the flag.
func CheckTopics(flagName string, topics []string) error {
	if len(topics) == 0 {
		return fmt.Errorf("--%s required", flagName)
	}
	var errs []error
	for _, t := range topics {
		if !protocol.IsValidTopicName(t) {
			errs = append(errs, fmt.Errorf("--%s %q is not a valid topic name", flagName, t))
		}
	}
	return errors.Join(errs...)
}

// CheckChannel reports an empty or invalid channel name, naming the flag.
func CheckChannel(flagName, channel string) error {
	switch {
	case channel == "":
		return fmt.Errorf("--%s required", flagName)
	case !protocol.IsValidChannelName(channel):
		return fmt.Errorf("--%s %q is not a valid channel name", flagName, channel)
	}
	return nil
}

// CheckMaxInFlight reports a --max-in-flight below 1.
func CheckMaxInFlight(n int) error {
	if n < 1 {
		return fmt.Errorf("--max-in-flight %d: want 1 or more", n)
	}
	return nil
}
