package steadymqtt

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/steadymqtt/steadymqtt/internal/netif"
)

// Choosing where a connection leaves from, on a multi-homed host: at every
// attempt the preferred interfaces are checked in order (exists, up,
// carrier, an address of the wanted family), the first usable one from the
// current position is bound (SO_BINDTODEVICE on Linux, IP_BOUND_IF on
// macOS) with one of its addresses as source, and a failed attempt moves
// the position to the next. While connected, a watcher polls the host: the
// bound interface losing its link, carrier or address drops the connection
// at once (an ESTABLISHED socket on a vanished address would wait for the
// keepalive), and a more preferred interface that stayed usable for the
// fail-back period brings the connection back to it.

// Errors of interface and address selection; a *SelectionError matches
// the ones of its candidates.
var (
	ErrInterfaceNotFound    = errors.New("steadymqtt: interface not found")
	ErrInterfaceDown        = errors.New("steadymqtt: interface administratively down")
	ErrNoCarrier            = errors.New("steadymqtt: interface has no carrier")
	ErrNoUsableAddress      = errors.New("steadymqtt: interface has no usable address of the wanted family")
	ErrAddressNotAssignable = errors.New("steadymqtt: source address not assignable on this host")
	ErrNoRoute              = errors.New("steadymqtt: no route to the broker from this interface or address")
	// ErrNetworkChanged is the cause of a connection the client dropped
	// because its interface or address went away, or to fail back to a
	// preferred interface. The next attempt starts without a backoff wait.
	ErrNetworkChanged = errors.New("steadymqtt: local network changed")
)

// Family is the address family of the source address.
type Family int

const (
	// FamilyAny lets the kernel pick the source address on the bound
	// interface for the broker's address.
	FamilyAny Family = iota
	FamilyIPv4
	FamilyIPv6
)

func (f Family) String() string {
	return [...]string{"any", "IPv4", "IPv6"}[f]
}

// DefaultFailback is how long a more preferred interface must stay usable
// before the client moves back to it.
const DefaultFailback = 30 * time.Second

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

// Candidate is one interface or address considered for an attempt and, if
// it was rejected, why.
type Candidate struct {
	Interface string
	Addr      netip.Addr // the source address chosen or rejected, if any
	Err       error      // nil for the one chosen
}

func (c Candidate) String() string {
	s := c.Interface
	if c.Addr.IsValid() {
		if s != "" {
			s += " "
		}
		s += c.Addr.String()
	}
	if c.Err != nil {
		s += ": " + strings.TrimPrefix(c.Err.Error(), "steadymqtt: ")
	}
	return s
}

// SelectionError says why no interface or address could be used, with
// every candidate considered.
type SelectionError struct {
	Candidates []Candidate
}

func (e *SelectionError) Error() string {
	parts := make([]string, len(e.Candidates))
	for i, c := range e.Candidates {
		parts[i] = c.String()
	}
	return "steadymqtt: no usable interface or address: " + strings.Join(parts, "; ")
}

// Unwrap lets errors.Is match the reason of any candidate.
func (e *SelectionError) Unwrap() []error {
	out := make([]error, 0, len(e.Candidates))
	for _, c := range e.Candidates {
		if c.Err != nil {
			out = append(out, c.Err)
		}
	}
	return out
}

// choice is where one attempt leaves from.
type choice struct {
	iface string
	index int
	pos   int        // position in the preference list
	addr  netip.Addr // source address; invalid with FamilyAny
}

// chooseInterface returns the first usable interface of names, starting at
// position start and wrapping around.
func chooseInterface(src netif.Source, names []string, start int, fam Family) (choice, error) {
	ifs, err := src.Interfaces()
	if err != nil {
		return choice{}, fmt.Errorf("steadymqtt: listing interfaces: %w", err)
	}
	byName := make(map[string]netif.Interface, len(ifs))
	for _, it := range ifs {
		byName[it.Name] = it
	}
	var cands []Candidate
	for k := range names {
		pos := (start + k) % len(names)
		it, ok := byName[names[pos]]
		if !ok {
			cands = append(cands, Candidate{Interface: names[pos], Err: ErrInterfaceNotFound})
			continue
		}
		addr, err := usable(it, fam)
		if err != nil {
			cands = append(cands, Candidate{Interface: it.Name, Err: err})
			continue
		}
		return choice{iface: it.Name, index: it.Index, pos: pos, addr: addr}, nil
	}
	return choice{}, &SelectionError{Candidates: cands}
}

// usable checks one interface and picks its source address: a global
// address of the family if there is one; with FamilyIPv6, an IPv6
// link-local one (with the interface as zone) when nothing else is there.
func usable(it netif.Interface, fam Family) (netip.Addr, error) {
	switch {
	case !it.Up:
		return netip.Addr{}, ErrInterfaceDown
	case !it.Running:
		return netip.Addr{}, ErrNoCarrier
	}
	var linkLocal netip.Addr
	for _, p := range it.Addrs {
		a := p.Addr()
		if a.IsLoopback() && !isLoopbackName(it.Name) {
			continue
		}
		if (fam == FamilyIPv4 && !a.Is4()) || (fam == FamilyIPv6 && !a.Is6()) {
			continue
		}
		if a.Is6() && a.IsLinkLocalUnicast() {
			if !linkLocal.IsValid() {
				linkLocal = a.WithZone(it.Name)
			}
			continue
		}
		if fam == FamilyAny {
			return netip.Addr{}, nil // the kernel picks, per destination
		}
		return a, nil
	}
	if linkLocal.IsValid() && fam == FamilyIPv6 {
		// Only when IPv6 was asked for: a link-local address reaches only
		// its link, and an interface left with nothing else (its IPv4
		// lease gone) is not usable for a broker elsewhere.
		return linkLocal, nil
	}
	return netip.Addr{}, fmt.Errorf("%w (%s)", ErrNoUsableAddress, fam)
}

func isLoopbackName(name string) bool { return name == "lo" || strings.HasPrefix(name, "lo0") }

// hasAddr reports whether addr is still configured on the host (on iface,
// when one is named).
func hasAddr(src netif.Source, iface string, addr netip.Addr) (bool, error) {
	ifs, err := src.Interfaces()
	if err != nil {
		return false, err
	}
	for _, it := range ifs {
		if iface != "" && it.Name != iface {
			continue
		}
		for _, p := range it.Addrs {
			if p.Addr() == addr.WithZone("") {
				return true, nil
			}
		}
	}
	return false, nil
}

// classifyDialErr names what a failed dial says about the source side.
func classifyDialErr(err error, from string) error {
	var kind error
	switch {
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		kind = ErrAddressNotAssignable
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		kind = ErrNoRoute
	case errors.Is(err, syscall.ENODEV):
		kind = ErrInterfaceNotFound
	default:
		return err
	}
	return &sourceError{kind: kind, from: from, err: err}
}

// sourceError is a dial failure caused by the source side.
type sourceError struct {
	kind error
	from string
	err  error
}

func (e *sourceError) Error() string {
	return strings.TrimPrefix(e.kind.Error(), "steadymqtt: ") + " (" + e.from + "): " + e.err.Error()
}

func (e *sourceError) Is(target error) bool { return target == e.kind }
func (e *sourceError) Unwrap() error        { return e.err }

// sourceAddr turns a chosen address into the dialer's local address.
func sourceAddr(a netip.Addr) net.Addr {
	if !a.IsValid() {
		return nil
	}
	return &net.TCPAddr{IP: a.AsSlice(), Zone: a.Zone()}
}

// watchInterval is how often the host's interfaces are read while
// connected: well inside the 3 s in which a vanished link or address must
// lead to a new connection, and cheap (a netlink dump).
const watchInterval = 250 * time.Millisecond

// watchNetwork polls the host while a connection bound by ch (or by
// WithSourceIP) is up. It closes the connection, with a cause wrapping
// ErrNetworkChanged, when the bound interface loses its link, carrier or
// source address, or when a more preferred interface has been usable for
// the fail-back period (and then points the next attempt at it).
func (c *Client) watchNetwork(ch choice, conn netConnCloser, stop <-chan struct{}) {
	local := localAddrOf(conn)
	var since []time.Time // per preference position before ch.pos: usable since
	if len(c.cfg.interfaces) > 0 {
		since = make([]time.Time, ch.pos)
	}
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if why := c.boundGone(ch, local); why != nil {
			_ = conn.CloseWithError(fmt.Errorf("%w: %w", ErrNetworkChanged, why))
			return
		}
		now := time.Now()
		for pos := range since {
			best, err := chooseInterface(c.cfg.netSource, c.cfg.interfaces[pos:pos+1], 0, c.cfg.family)
			if err != nil {
				since[pos] = time.Time{}
				continue
			}
			if since[pos].IsZero() {
				since[pos] = now
			}
			if wait := c.failbackWait(pos); now.Sub(since[pos]) >= wait {
				c.failingBack.Store(int32(pos))
				c.ifacePos.Store(int32(pos))
				_ = conn.CloseWithError(fmt.Errorf("%w: preferred interface %s usable again for %v, moving back from %s",
					ErrNetworkChanged, best.iface, wait, ch.iface))
				return
			}
		}
	}
}

// failbackWait is how long the interface at pos must stay usable before
// the client moves back to it: the fail-back period, doubled for every
// fail-back to it that failed in a row (its link was up but its path was
// not), so that a preferred NIC with a dead upstream does not take a
// working connection down again and again.
func (c *Client) failbackWait(pos int) time.Duration {
	c.failbackMu.Lock()
	n := c.failbackMisses[pos]
	c.failbackMu.Unlock()
	return c.cfg.failback << min(n, 6)
}

// failbackResult records how an attempt at pos went if it was a fail-back.
func (c *Client) failbackResult(pos int, ok bool) {
	if !c.failingBack.CompareAndSwap(int32(pos), -1) {
		if ok {
			c.failbackMu.Lock()
			delete(c.failbackMisses, pos)
			c.failbackMu.Unlock()
		}
		return
	}
	c.failbackMu.Lock()
	if ok {
		delete(c.failbackMisses, pos)
	} else {
		c.failbackMisses[pos]++
	}
	c.failbackMu.Unlock()
}

type netConnCloser interface {
	LocalAddr() net.Addr
	CloseWithError(error) error
}

func localAddrOf(conn netConnCloser) netip.Addr {
	if ta, ok := conn.LocalAddr().(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

// boundGone says why the connection's interface or source address is no
// longer usable, or nil.
func (c *Client) boundGone(ch choice, local netip.Addr) error {
	if ch.iface != "" {
		now, err := chooseInterface(c.cfg.netSource, []string{ch.iface}, 0, c.cfg.family)
		var sel *SelectionError
		switch {
		case errors.As(err, &sel) && len(sel.Candidates) == 1:
			return fmt.Errorf("interface %s: %w", ch.iface, sel.Candidates[0].Err)
		case err != nil:
			return nil // a failed read is no evidence; try again next tick
		case now.index != ch.index:
			// Deleted and made again (a modem re-enumerated): the socket is
			// bound to an index that no longer exists.
			return fmt.Errorf("%w: interface %s was re-created (index %d, now %d)", ErrInterfaceNotFound, ch.iface, ch.index, now.index)
		}
	}
	if !local.IsValid() {
		return nil
	}
	// Anywhere on the host: with FamilyAny the kernel may have picked a
	// source configured on another interface (a route's src on lo).
	ok, err := hasAddr(c.cfg.netSource, "", local)
	if err != nil || ok {
		return nil
	}
	return fmt.Errorf("%w: source address %s is gone from the host", ErrNoUsableAddress, local)
}
