// Package netpick chooses where a connection leaves from on a multi-homed
// host and keeps the bookkeeping of failing over and back.
//
// At every attempt the preferred interfaces are checked in order (exists,
// up, carrier, an address of the wanted family) from the current position,
// and the first usable one is chosen. Failed attempts move the position on
// once every broker failed from it. While connected, a watcher polls the
// host: the bound interface losing its link, carrier or address drops the
// connection at once (an ESTABLISHED socket on a vanished address would
// wait for the keepalive), and a more preferred interface that stayed
// usable for the fail-back period brings the connection back to it.
package netpick

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/steadymqtt/steadymqtt/internal/clock"
	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/netif"
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
	if f < FamilyAny || f > FamilyIPv6 {
		return fmt.Sprintf("Family(%d)", int(f))
	}
	return [...]string{"any", "IPv4", "IPv6"}[f]
}

// Config is what the picker is told by the client's options.
type Config struct {
	Interfaces []string // preference order; empty: no interface binding
	Family     Family
	Failback   time.Duration
	SourceIP   net.IP // WithSourceIP: watched for disappearing, never moved
	Brokers    int    // brokers tried from one interface before moving on
	Host       netif.Source
	Clock      clock.Clock
}

// Choice is where one attempt leaves from.
type Choice struct {
	Interface string
	Index     int
	Pos       int        // position in the preference list
	Addr      netip.Addr // source address; invalid with FamilyAny
}

// Picker owns the interface position, the failures counted on it and the
// fail-back bookkeeping. The manager calls Choose, Failed and Connected;
// the watcher of the live connection may move the position too.
type Picker struct {
	cfg Config

	mu          sync.Mutex
	pos         int         // where the next attempt starts
	fails       int         // failed attempts from pos since it was chosen
	failingBack int         // the position a fail-back is moving to, -1 if none
	misses      map[int]int // fail-backs to a position that failed, in a row
}

// New returns a picker at the most preferred interface.
func New(cfg Config) *Picker {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Host == nil {
		cfg.Host = netif.System{}
	}
	return &Picker{cfg: cfg, failingBack: -1, misses: map[int]int{}}
}

// Binds reports whether connections are bound to an interface.
func (p *Picker) Binds() bool { return len(p.cfg.Interfaces) > 0 }

// Choose returns where the next attempt leaves from: the zero Choice when
// no interfaces are configured, else the first usable one from the current
// position, or an *errs.SelectionError naming every candidate.
func (p *Picker) Choose() (Choice, error) {
	if !p.Binds() {
		return Choice{}, nil
	}
	p.mu.Lock()
	start := p.pos
	p.mu.Unlock()
	return choose(p.cfg.Host, p.cfg.Interfaces, start, p.cfg.Family)
}

// Failed records a failed attempt from ch. Once every broker failed from
// the current interface, the next attempt starts at the next one, so that
// each broker is tried from each interface.
func (p *Picker) Failed(ch Choice, chooseErr error) {
	if chooseErr != nil || !p.Binds() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failbackResult(ch.Pos, false)
	if p.fails++; p.fails >= max(p.cfg.Brokers, 1) {
		p.fails = 0
		p.pos = (ch.Pos + 1) % len(p.cfg.Interfaces)
	}
}

// Connected records that ch works: the next attempt starts there again.
func (p *Picker) Connected(ch Choice) {
	if !p.Binds() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pos, p.fails = ch.Pos, 0
	p.failbackResult(ch.Pos, true)
}

// failbackResult records how an attempt at pos went if it was a fail-back.
// mu must be held.
func (p *Picker) failbackResult(pos int, ok bool) {
	if p.failingBack != pos {
		if ok {
			delete(p.misses, pos)
		}
		return
	}
	p.failingBack = -1
	if ok {
		delete(p.misses, pos)
	} else {
		p.misses[pos]++
	}
}

// FailbackWait is how long the interface at pos must stay usable before
// the client moves back to it: the fail-back period, doubled for every
// fail-back to it that failed in a row (its link was up but its path was
// not), so that a preferred NIC with a dead upstream does not take a
// working connection down again and again.
func (p *Picker) FailbackWait(pos int) time.Duration {
	p.mu.Lock()
	n := p.misses[pos]
	p.mu.Unlock()
	return p.cfg.Failback << min(n, 6)
}

// failBackTo points the next attempt at pos, as a fail-back.
func (p *Picker) failBackTo(pos int) {
	p.mu.Lock()
	p.failingBack, p.pos = pos, pos
	p.mu.Unlock()
}

// choose returns the first usable interface of names, starting at position
// start and wrapping around.
func choose(src netif.Source, names []string, start int, fam Family) (Choice, error) {
	ifs, err := src.Interfaces()
	if err != nil {
		return Choice{}, fmt.Errorf("steadymqtt: listing interfaces: %w", err)
	}
	byName := make(map[string]netif.Interface, len(ifs))
	for _, it := range ifs {
		byName[it.Name] = it
	}
	var cands []errs.Candidate
	for k := range names {
		pos := (start + k) % len(names)
		it, ok := byName[names[pos]]
		if !ok {
			cands = append(cands, errs.Candidate{Interface: names[pos], Err: errs.InterfaceNotFound})
			continue
		}
		addr, err := usable(it, fam)
		if err != nil {
			cands = append(cands, errs.Candidate{Interface: it.Name, Err: err})
			continue
		}
		return Choice{Interface: it.Name, Index: it.Index, Pos: pos, Addr: addr}, nil
	}
	return Choice{}, &errs.SelectionError{Candidates: cands}
}

// usable checks one interface and picks its source address: a global
// address of the family if there is one; with FamilyIPv6, an IPv6
// link-local one (with the interface as zone) when nothing else is there.
func usable(it netif.Interface, fam Family) (netip.Addr, error) {
	switch {
	case !it.Up:
		return netip.Addr{}, errs.InterfaceDown
	case !it.Running:
		return netip.Addr{}, errs.NoCarrier
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
	return netip.Addr{}, fmt.Errorf("%w (%s)", errs.NoUsableAddress, fam)
}

func isLoopbackName(name string) bool { return name == "lo" || strings.HasPrefix(name, "lo0") }

// hasAddr reports whether addr is still configured on the host.
func hasAddr(src netif.Source, addr netip.Addr) (bool, error) {
	ifs, err := src.Interfaces()
	if err != nil {
		return false, err
	}
	for _, it := range ifs {
		for _, p := range it.Addrs {
			if p.Addr() == addr.WithZone("") {
				return true, nil
			}
		}
	}
	return false, nil
}
