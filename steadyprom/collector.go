package steadyprom

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/steadymqtt/steadymqtt"
)

// NewCollector returns a Collector for the given clients, to be registered
// by the caller (prometheus.Registry.MustRegister). Each scrape reads every
// client's Health and Stats, which do no I/O, so a scrape never waits for
// the network and a closed client still reports its final state and counts.
//
// A client passed twice is collected once. Two different clients with the
// same client ID cannot be told apart by their series: registering the
// collector then fails with an error naming the ID (see the package
// documentation for WrapRegistererWith). A nil client fails registration
// the same way.
func NewCollector(clients ...*steadymqtt.Client) prometheus.Collector {
	c := &collector{}
	seen := make(map[*steadymqtt.Client]bool, len(clients))
	ids := make(map[string]bool, len(clients))
	for _, cl := range clients {
		switch {
		case cl == nil:
			c.errs = append(c.errs, fmt.Errorf("steadyprom: NewCollector: a nil client"))
			continue
		case seen[cl]:
			continue
		case ids[cl.ClientID()]:
			c.errs = append(c.errs, fmt.Errorf("steadyprom: NewCollector: two clients with client ID %q", cl.ClientID()))
			continue
		}
		seen[cl], ids[cl.ClientID()] = true, true
		c.clients = append(c.clients, newClientMetrics(cl))
	}
	return c
}

type collector struct {
	clients []*clientMetrics
	// errs are reported as invalid descriptors and metrics, which is how a
	// Collector makes Register and Gather fail: NewCollector's signature
	// has no error to return.
	errs []error
}

// Describe sends the descriptors of every client, which makes the
// collector a checked one: the registry verifies each scrape against them.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, err := range c.errs {
		ch <- prometheus.NewInvalidDesc(err)
	}
	for _, m := range c.clients {
		m.describe(ch)
	}
}

// Collect reads each client once and sends its metrics.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, err := range c.errs {
		ch <- prometheus.NewInvalidMetric(prometheus.NewInvalidDesc(err), err)
	}
	for _, m := range c.clients {
		m.collect(ch)
	}
}
