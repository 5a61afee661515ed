package manager

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/steadymqtt/steadymqtt/internal/dial"
	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/keepalive"
	"github.com/steadymqtt/steadymqtt/internal/netpick"
	"github.com/steadymqtt/steadymqtt/internal/tcpstat"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// hold runs a connection from CONNACK to its loss or to the manager's
// stop. The keepalive monitor starts at once; the state becomes connected
// only once the subscriptions are in place, so that "connected" means
// messages flow. upAt is zero if the connection was lost before that.
//
// The goroutines that served the connection are not waited for here: wait
// ends them, and the manager calls it only after it reported the loss, so
// a sender stuck in a hand-off cannot hold up what the state says.
func (m *Manager) hold(u *url.URL, epoch uint64, ch netpick.Choice, sess engine.Session, conn *wire.Conn) (upAt time.Time, lossErr error, stopped bool, wait func()) {
	m.cfg.Picker.Connected(ch)
	m.brokers.result(u, true)
	end := make(chan struct{})
	m.hooks.Live(sess)
	defer m.hooks.Live(nil)
	var wg sync.WaitGroup
	wait = func() {
		close(end)
		wg.Wait()
	}
	sock := dial.Socket(conn.Conn)
	ka := keepalive.Config{
		KeepAlive: m.cfg.KeepAlive, DegradedRTT: m.cfg.DegradedRTT, Clock: m.cfg.Clock,
		Upload: func() (tcpstat.Stat, bool) { return tcpstat.Read(sock) },
	}
	if s, ok := sess.(interface{ KeepAlive() time.Duration }); ok && s.KeepAlive() > 0 {
		ka.KeepAlive = s.KeepAlive() // an MQTT 5 broker's Server Keep Alive
	}
	if m.cfg.Picker.Watches() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.cfg.Picker.Watch(ch, conn, end)
		}()
	}
	if m.watchesPreferred(u) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.watchPreferred(ch, conn, end)
		}()
	}

	// The setup of the connection runs beside the keepalive, and the
	// keepalive runs here, on the manager's goroutine, until the connection
	// ends or the manager stops: an idle connection costs no goroutine of
	// its own for either.
	type setup struct {
		upAt       time.Time
		restoreErr error
	}
	ready := make(chan setup, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		var st setup
		// A restore that failed because the connection went away says
		// where it went; a refused subscription on a live one does not.
		if err := m.hooks.Restore(m.stopCtx, sess, sess.SessionPresent() && !m.cfg.CleanSession); err != nil && closed(conn) {
			st.restoreErr = err
		}
		if m.hooks.Announce != nil {
			m.announce(u, ch, sess, conn)
		}
		select {
		case <-conn.Done():
		default:
			m.hooks.Up(epoch, conn, sess.SessionPresent())
			st.upAt = m.cfg.Clock.Now()
			// Whatever was registered while the first restore ran.
			if err := m.hooks.Restore(m.stopCtx, sess, true); err != nil && closed(conn) && st.restoreErr == nil {
				st.restoreErr = err
			}
			wg.Add(1) // before ready: wait() runs only after hold returned
			go func() {
				defer wg.Done()
				m.hooks.Serve(sess, conn, end)
			}()
		}
		ready <- st
	}()
	degrade := func(why error) { m.hooks.Degrade(epoch, why) }
	keepalive.Run(ka, conn, degrade, m.stop)
	st := <-ready
	select {
	case <-m.stop:
		// The flush may take a while on a dying link: the keepalive
		// watches it meanwhile, on a goroutine of its own for that time.
		flushed := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			keepalive.Run(ka, conn, degrade, flushed)
		}()
		ctx, cancel := m.closeContext()
		m.hooks.Flush(ctx, conn)
		if m.hooks.Farewell != nil {
			m.hooks.Farewell(ctx, sess)
		}
		cancel()
		close(flushed)
		return st.upAt, nil, true, wait
	default:
	}
	var err error
	select {
	case err = <-sess.Lost(): // the keepalive returned: the connection is closed
	case <-m.stop: // an engine that never says: Close must still end
		return st.upAt, nil, true, wait
	}
	if cause := conn.Cause(); cause != nil {
		err = cause
	}
	return st.upAt, lossError(u, err, conn, st.restoreErr), false, wait
}

func closed(conn *wire.Conn) bool {
	select {
	case <-conn.Done():
		return true
	default:
		return false
	}
}

// lossError says where in the life of the connection it ended: the step,
// and what the client had just sent when the broker closed it without a
// word (a cluster node that drops a client while its subscriptions are
// restored reads "lost after SUBSCRIBE", not a bare EOF).
func lossError(u *url.URL, err error, conn *wire.Conn, restoreErr error) error {
	broker := u.Redacted()
	lost := func(step, after string) error {
		return &errs.StepError{Step: step, Err: fmt.Errorf("steadymqtt: connection to %s lost%s: %w", broker, after, err)}
	}
	st := conn.Stats()
	quiet := st.PacketsOut > 0 && st.SinceSent < st.SinceReceived // nothing came back after the last packet sent
	switch {
	case errors.Is(err, errs.KeepaliveTimeout):
		return lost(errs.StepKeepalive, "")
	case errors.Is(err, errs.InterfaceNotFound), errors.Is(err, errs.InterfaceDown), errors.Is(err, errs.NoCarrier):
		return lost(errs.StepInterface, "")
	case errors.Is(err, errs.NoUsableAddress):
		return lost(errs.StepAddress, "")
	case errors.Is(err, errs.NetworkChanged):
		return lost(errs.StepConnected, "")
	case restoreErr != nil:
		return lost(errs.StepSubscribe, " while subscriptions were restored ("+strings.TrimPrefix(restoreErr.Error(), "steadymqtt: ")+")")
	case quiet && st.LastSent == wire.SUBSCRIBE:
		return lost(errs.StepSubscribe, " right after a SUBSCRIBE, with no answer")
	case quiet && st.LastSent == wire.PUBLISH:
		return lost(errs.StepPublish, " right after a PUBLISH, with no answer")
	}
	return lost(errs.StepConnected, "")
}

// announce runs the Announce hook within the connect timeout, and no
// longer than the connection lasts.
func (m *Manager) announce(u *url.URL, ch netpick.Choice, sess engine.Session, conn *wire.Conn) {
	ctx, cancel := context.WithTimeout(m.stopCtx, m.cfg.ConnectTimeout)
	defer cancel()
	go func() {
		select {
		case <-conn.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	m.hooks.Announce(ctx, sess, Link{
		Broker: u.Redacted(), Interface: ch.Interface, Local: conn.LocalAddr(),
		SessionPresent: sess.SessionPresent(),
	})
}

// flushTimeout bounds how long Close without a deadline waits for the
// outbox to drain.
const flushTimeout = 5 * time.Second

// closeContext is Close's context, bounded to flushTimeout when it has no
// deadline, so that a broker that never acknowledges cannot hold Close.
func (m *Manager) closeContext() (context.Context, context.CancelFunc) {
	ctx := m.hooks.CloseContext()
	if dl, ok := ctx.Deadline(); ok {
		// The flush leaves a fifth of the time (at most 500 ms) for the
		// rest of the shutdown, so that Close can still say, within its
		// deadline, what was not delivered.
		margin := min(time.Until(dl)/5, 500*time.Millisecond)
		return context.WithDeadline(ctx, dl.Add(-margin))
	}
	return context.WithTimeout(ctx, flushTimeout)
}

// disconnect sends DISCONNECT within what Close's context allows.
func (m *Manager) disconnect(sess engine.Session) {
	quiesce := time.Second
	if dl, ok := m.hooks.CloseContext().Deadline(); ok {
		quiesce = min(max(time.Until(dl)/2, 0), 5*time.Second)
	}
	sess.Disconnect(quiesce)
}
