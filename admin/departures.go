package admin

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// departureMemory is how long the admin warns about a node that left: as long as its charts
// still show it.
const departureMemory = time.Hour

// departures remembers the nsqd nodes the lookupds have listed, so that one that stops being
// listed is shown as a warning ("no longer registered") rather than silently dropped from the
// pages, as NSQ's admin does: an nsqd that is stopped, crashes or is cut off unregisters from
// the lookupds, and an operator must see that it is gone. A node that registers again, or that
// left more than departureMemory ago, is forgotten.
//
// It is the cluster's only state; its methods are safe for concurrent use.
type departures struct {
	mu sync.Mutex
	// seen maps a node's TCP address (its identity to the lookupds) to when it was last listed
	// and to its HTTP address, which names it on the pages.
	seen map[string]seenNode
}

type seenNode struct {
	httpAddr string
	last     time.Time
	gone     bool
}

// update records the nodes every lookupd just listed, at now, and returns a warning for each
// node seen before and not listed now. complete says that every lookupd answered: when one did
// not, a node registered only with it is not gone, so nothing is declared gone then.
func (d *departures) update(listed []*Producer, complete bool, now time.Time) []error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.seen == nil {
		d.seen = make(map[string]seenNode)
	}
	present := make(map[string]bool, len(listed))
	for _, p := range listed {
		present[p.TCPAddress()] = true
		d.seen[p.TCPAddress()] = seenNode{httpAddr: p.HTTPAddress(), last: now}
	}
	var warnings []error
	for key, n := range d.seen {
		switch {
		case present[key]:
		case now.Sub(n.last) > departureMemory:
			delete(d.seen, key)
		case complete || n.gone:
			n.gone = true
			d.seen[key] = n
			warnings = append(warnings, nsqdError(n.httpAddr, fmt.Errorf("%w (last seen %s, %s ago)",
				errDeparted, n.last.Format("15:04:05"), now.Sub(n.last).Round(time.Second))))
		}
	}
	slices.SortFunc(warnings, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return warnings
}

// reset forgets every node: the lookupds changed, and the old cluster's nodes did not leave.
func (d *departures) reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seen = nil
}

// errDeparted is wrapped by the warning about a node that the lookupds no longer list.
var errDeparted = errors.New("no longer registered with any nsqlookupd: stopped, crashed or cut off")
