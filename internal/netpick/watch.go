package netpick

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/steadymqtt/steadymqtt/internal/clock"
	"github.com/steadymqtt/steadymqtt/internal/errs"
)

// WatchInterval is how often the host's interfaces are read while
// connected: well inside the 3 s in which a vanished link or address must
// lead to a new connection, and cheap (a netlink dump).
const WatchInterval = 250 * time.Millisecond

// Closer is the live connection as the watcher sees it.
type Closer interface {
	LocalAddr() net.Addr
	CloseWithError(error) error
}

// Watches reports whether a connection needs watching: it is bound to an
// interface or a source address.
func (p *Picker) Watches() bool { return p.Binds() || p.cfg.SourceIP != nil }

// Watch polls the host while a connection bound by ch (or by a source
// address) is up, until stop is closed. It closes the connection, with a
// cause wrapping errs.NetworkChanged, when the bound interface loses its
// link, carrier or source address, or when a more preferred interface has
// been usable for its fail-back wait (and then points the next attempt at
// it).
func (p *Picker) Watch(ch Choice, conn Closer, stop <-chan struct{}) {
	local := localAddrOf(conn)
	var since []time.Time // per preference position before ch.Pos: usable since
	if p.Binds() {
		since = make([]time.Time, ch.Pos)
	}
	for {
		if !clock.Wait(p.cfg.Clock, WatchInterval, stop, nil) {
			return
		}
		if why := p.boundGone(ch, local); why != nil {
			_ = conn.CloseWithError(fmt.Errorf("%w: %w", errs.NetworkChanged, why))
			return
		}
		now := p.cfg.Clock.Now()
		for pos := range since {
			best, err := choose(p.cfg.Host, p.cfg.Interfaces[pos:pos+1], 0, p.cfg.Family)
			if err != nil {
				since[pos] = time.Time{}
				continue
			}
			if since[pos].IsZero() {
				since[pos] = now
			}
			if wait := p.FailbackWait(pos); now.Sub(since[pos]) >= wait {
				p.failBackTo(pos)
				_ = conn.CloseWithError(fmt.Errorf("%w: preferred interface %s usable again for %v, moving back from %s",
					errs.NetworkChanged, best.Interface, wait, ch.Interface))
				return
			}
		}
	}
}

func localAddrOf(conn Closer) netip.Addr {
	if ta, ok := conn.LocalAddr().(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

// boundGone says why the connection's interface or source address is no
// longer usable, or nil.
func (p *Picker) boundGone(ch Choice, local netip.Addr) error {
	if ch.Interface != "" {
		now, err := choose(p.cfg.Host, []string{ch.Interface}, 0, p.cfg.Family)
		var sel *errs.SelectionError
		switch {
		case errors.As(err, &sel) && len(sel.Candidates) == 1:
			return fmt.Errorf("interface %s: %w", ch.Interface, sel.Candidates[0].Err)
		case err != nil:
			return nil // a failed read is no evidence; try again next tick
		case now.Index != ch.Index:
			// Deleted and made again (a modem re-enumerated): the socket is
			// bound to an index that no longer exists.
			return fmt.Errorf("%w: interface %s was re-created (index %d, now %d)", errs.InterfaceNotFound, ch.Interface, ch.Index, now.Index)
		}
	}
	if !local.IsValid() {
		return nil
	}
	// Anywhere on the host: with FamilyAny the kernel may have picked a
	// source configured on another interface (a route's src on lo).
	ok, err := hasAddr(p.cfg.Host, local)
	if err != nil || ok {
		return nil
	}
	return fmt.Errorf("%w: source address %s is gone from the host", errs.NoUsableAddress, local)
}
