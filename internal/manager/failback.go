package manager

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/steadymqtt/steadymqtt/internal/clock"
	"github.com/steadymqtt/steadymqtt/internal/dial"
	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/netpick"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// watchPreferred runs while the client is connected to an endpoint other
// than its preferred one. It probes the preferred endpoint with a TCP
// connection from the same interface or source address every quarter of
// the hold; once it has been reachable for the whole hold, it points the
// next attempt at it and closes the current connection, with a cause that
// wraps errs.NetworkChanged so the next attempt goes at once.
func (m *Manager) watchPreferred(ch netpick.Choice, conn *wire.Conn, end <-chan struct{}) {
	preferred := m.brokers.preferred()
	hold := m.brokers.hold(m.cfg.Failback)
	every := max(hold/4, 100*time.Millisecond)
	probe := *preferred
	probe.Scheme, probe.User, probe.Path, probe.RawQuery = "tcp", nil, "", ""
	target := dial.Target{URL: &probe, Interface: ch.Interface, IfIndex: ch.Index, Source: ch.Addr, SourceIP: m.cfg.SourceIP}
	var since time.Time // reachable since; zero while not
	for {
		if !clock.Wait(m.cfg.Clock, every, end, conn.Done()) {
			return
		}
		if !m.reachable(target, every) {
			since = time.Time{}
			continue
		}
		now := m.cfg.Clock.Now()
		if since.IsZero() {
			since = now
		}
		if now.Sub(since) >= hold {
			m.brokers.failBack()
			_ = conn.CloseWithError(fmt.Errorf("%w: preferred broker %s reachable again for %v, moving back",
				errs.NetworkChanged, preferred.Redacted(), hold.Round(time.Millisecond)))
			return
		}
	}
}

// reachable reports whether a TCP connection to t opens within timeout.
func (m *Manager) reachable(t dial.Target, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(m.stopCtx, timeout)
	defer cancel()
	c, err := dial.Dial(ctx, t)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// watchesPreferred says whether the connection to u needs the watcher.
func (m *Manager) watchesPreferred(u *url.URL) bool {
	return m.cfg.Failback > 0 && len(m.brokers.urls) > 1 && u != m.brokers.preferred()
}
