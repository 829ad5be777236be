package toolflag

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/ternmq/tern/nsq"
)

// Source is where a tool consumes from: nsqds by TCP address, or the nsqds that lookupds
// list, by the lookupds' HTTP addresses. As in NSQ, exactly one kind is given.
type Source struct {
	// NSQDTCPAddrs are --nsqd-tcp-address's, "host:port".
	NSQDTCPAddrs []string
	// LookupdHTTPAddrs are --lookupd-http-address's, "host:port" or a URL.
	LookupdHTTPAddrs []string
}

// Flag names of a Source.
const (
	FlagNSQDTCPAddress     = "nsqd-tcp-address"
	FlagLookupdHTTPAddress = "lookupd-http-address"
)

// Flags defines --nsqd-tcp-address and --lookupd-http-address on fs, writing into s.
func (s *Source) Flags(fs *flag.FlagSet) {
	StringsVar(fs, &s.NSQDTCPAddrs, FlagNSQDTCPAddress, "nsqd TCP address (may be given multiple times)")
	StringsVar(fs, &s.LookupdHTTPAddrs, FlagLookupdHTTPAddress, "lookupd HTTP address (may be given multiple times)")
}

// Validate reports NSQ's errors for a missing source, or both kinds given.
func (s *Source) Validate() error {
	var errs []error
	switch {
	case len(s.NSQDTCPAddrs) == 0 && len(s.LookupdHTTPAddrs) == 0:
		errs = append(errs, errors.New("--nsqd-tcp-address or --lookupd-http-address required"))
	case len(s.NSQDTCPAddrs) > 0 && len(s.LookupdHTTPAddrs) > 0:
		errs = append(errs, errors.New("use --nsqd-tcp-address or --lookupd-http-address not both"))
	}
	for _, a := range s.NSQDTCPAddrs {
		if a == "" || strings.Contains(a, "://") {
			errs = append(errs, fmt.Errorf("--nsqd-tcp-address %q: want host:port", a))
		}
	}
	for _, a := range s.LookupdHTTPAddrs {
		if a == "" {
			errs = append(errs, errors.New("--lookupd-http-address: empty address"))
		}
	}
	return errors.Join(errs...)
}

// Connect connects c to the source: to every nsqd, failing if one cannot be reached (as
// NSQ's tools do), or to every lookupd, which c then polls.
func (s *Source) Connect(ctx context.Context, c *nsq.Consumer) error {
	for _, a := range s.NSQDTCPAddrs {
		if err := c.ConnectToNSQD(ctx, a); err != nil {
			return fmt.Errorf("connect to nsqd %s: %w", a, err)
		}
	}
	for _, a := range s.LookupdHTTPAddrs {
		if err := c.ConnectToNSQLookupd(a); err != nil {
			return fmt.Errorf("lookupd %s: %w", a, err)
		}
	}
	return nil
}
