package steadymqtt

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/steadymqtt/steadymqtt/internal/netif"
	"github.com/steadymqtt/steadymqtt/internal/netpick"
)

// Where a connection leaves from, on a multi-homed host.

// Family is the address family of the source address on a bound
// interface.
type Family = netpick.Family

// Address families for WithAddressFamily.
const (
	// FamilyAny lets the kernel pick the source address on the bound
	// interface for the broker's address.
	FamilyAny  = netpick.FamilyAny
	FamilyIPv4 = netpick.FamilyIPv4
	FamilyIPv6 = netpick.FamilyIPv6
)

// WithInterfaces binds the connection to network interfaces in order of
// preference: each attempt uses the first usable one from the current
// position, a failed attempt moves on to the next, and the client returns to
// a more preferred one once it stayed usable for the fail-back period
// (WithFailback). Linux (SO_BINDTODEVICE; root or CAP_NET_RAW before Linux
// 5.7) and macOS (IP_BOUND_IF); elsewhere New reports errors.ErrUnsupported.
func WithInterfaces(names ...string) Option {
	return func(c *config) error {
		if !netif.Supported {
			return fmt.Errorf("%w: WithInterfaces: %w: binding to an interface is not available on this system", ErrInvalidOption, errors.ErrUnsupported)
		}
		if len(names) == 0 {
			return optionError("WithInterfaces", "no interface given")
		}
		seen := map[string]bool{}
		for _, n := range names {
			if n == "" || seen[n] {
				return optionError("WithInterfaces", "empty or repeated interface name %q", n)
			}
			seen[n] = true
		}
		c.interfaces = append([]string(nil), names...)
		return nil
	}
}

// WithAddressFamily chooses the family of the source address on the bound
// interface (default FamilyAny: whatever the kernel picks for the broker's
// address). With FamilyIPv4 or FamilyIPv6 the broker is dialled in that
// family only.
func WithAddressFamily(f Family) Option {
	return func(c *config) error {
		if f < FamilyAny || f > FamilyIPv6 {
			return optionError("WithAddressFamily", "unknown family %d", f)
		}
		c.family = f
		return nil
	}
}

// WithFailback sets how long a more preferred interface must stay usable
// before the client drops a working connection on a less preferred one to
// go back to it; a flapping link therefore causes no churn. Default 30 s.
func WithFailback(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return optionError("WithFailback", "%v must be positive", d)
		}
		c.failback = d
		return nil
	}
}

// WithSourceIP binds the client's sockets to a local address. On a
// multi-homed host this does not by itself choose the outgoing interface
// (the routing table does); see WithInterfaces.
func WithSourceIP(ip net.IP) Option {
	return func(c *config) error {
		if ip == nil || ip.IsUnspecified() {
			return optionError("WithSourceIP", "%v is not a usable source address", ip)
		}
		c.sourceIP = ip
		return nil
	}
}
