// Package manager is the one retry loop of a client.
//
// One round: the broker policy names the next broker → the interface
// picker says where the connection leaves from → an attempt dials
// (internal/dial), wraps the socket in the stream observer (internal/wire)
// and runs the engine's MQTT handshake (internal/engine) → on CONNACK the
// keepalive monitor and the network watcher start, the subscriptions are
// restored, the state becomes connected and the sender serves the outbox →
// the connection is held until it is lost → the backoff says how long to
// wait → next round.
//
// The manager reports everything through Hooks and writes no state of the
// client's; the state machine there decides what each report means.
package manager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/steadymqtt/steadymqtt/internal/clock"
	"github.com/steadymqtt/steadymqtt/internal/dial"
	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/netpick"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// Config is what the manager is told by the client's options.
type Config struct {
	Brokers        []*url.URL
	ClientID       string
	Username       string // WithCredentials; user information in a URL wins
	Password       string
	CleanSession   bool
	Will           *engine.Message
	KeepAlive      time.Duration
	DegradedRTT    time.Duration
	ConnectTimeout time.Duration
	StableAfter    time.Duration
	Backoff        backoff.BackOff
	TLS            *dial.TLSOptions
	SourceIP       net.IP
	Picker         *netpick.Picker
	Engine         engine.Engine // MQTT 3.1.1
	EngineV5       engine.Engine // MQTT 5; nil: 3.1.1 only
	Protocol       Protocol
	Learned        *Learned      // ProtocolAuto: brokers that refused MQTT 5
	SessionExpiry  time.Duration // MQTT 5
	OnDisconnect   func(*errs.ReasonCodeError, string)
	Clock          clock.Clock
	OnMessage      func(engine.Message)
	// FixedOrder keeps the brokers in the order given instead of an order
	// of this client's own.
	FixedOrder bool
	// Failback is how long the preferred broker must be reachable before a
	// client connected elsewhere goes back to it; 0: it stays.
	Failback time.Duration
	// GiveUp says whether a failed attempt's error is one the user wants the
	// client to stop on rather than retry (WithGiveUpOn); nil: never.
	GiveUp func(error) bool
}

// Hooks are the manager's reports. Each is called from the manager's
// goroutines; none may block for long.
type Hooks struct {
	// The state machine's reports, each about one attempt's epoch.
	Attempt func(broker, iface string) (epoch uint64)
	Failed  func(epoch uint64, err error, delay time.Duration)
	Up      func(epoch uint64, conn *wire.Conn, sessionPresent bool)
	Lost    func(epoch uint64, err error, delay time.Duration)
	Degrade func(epoch uint64, why error) // why nil: healthy again

	// The live session, for the calls that need one (QoS 0 publish,
	// subscribe); nil when it ended.
	Live func(sess engine.Session)
	// Restore brings the broker's subscriptions in line after CONNACK.
	Restore func(ctx context.Context, sess engine.Session, present bool) error
	// Serve runs the sender until end is closed.
	Serve func(sess engine.Session, conn *wire.Conn, end <-chan struct{})
	// Announce, when set, runs on every new connection once its
	// subscriptions are in place and before anything else is sent (the
	// presence message); ctx ends with the connection.
	Announce func(ctx context.Context, sess engine.Session, l Link)
	// Flush waits, at Close, until the outbox is empty or ctx ends.
	Flush func(ctx context.Context, conn *wire.Conn)
	// Farewell, when set, runs at Close on a live connection after Flush
	// and before DISCONNECT.
	Farewell func(ctx context.Context, sess engine.Session)
	// CloseContext is the context Close was called with.
	CloseContext func() context.Context
}

// Link is what Announce is told about a connection that came up.
type Link struct {
	Broker         string // redacted URL
	Interface      string
	Local          net.Addr
	SessionPresent bool
}

// Manager runs the loop.
type Manager struct {
	cfg     Config
	hooks   Hooks
	brokers *rotation
	stop    <-chan struct{}
	stopCtx context.Context
}

// New returns a manager that stops when stop ends; attempts in progress
// (a dial, a handshake) end with it.
func New(cfg Config, hooks Hooks, stop context.Context) *Manager {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	return &Manager{cfg: cfg, hooks: hooks, brokers: newRotation(cfg.Brokers, cfg.ClientID, cfg.FixedOrder), stop: stop.Done(), stopCtx: stop}
}

// instantRetryAfter is how long a connection must have lasted for its loss
// to a local network change to be retried without a backoff wait.
const instantRetryAfter = time.Second

// Run is the loop. It returns when stop ends (nil), or when the backoff
// gave up or an attempt failed with an error the client must not retry (an
// error wrapping errs.GaveUp and the cause).
func (m *Manager) Run() error {
	for {
		r := m.round(m.brokers.next())
		if r.stopped {
			return nil
		}
		delay, ok := m.delayAfter(r)
		if r.upAt.IsZero() && m.cfg.GiveUp != nil && m.cfg.GiveUp(r.err) {
			ok = false
		}
		if r.upAt.IsZero() { // failed, or lost while its subscriptions were being restored
			m.cfg.Picker.Failed(r.choice, r.chooseErr)
			if ok {
				m.hooks.Failed(r.epoch, r.err, delay)
			}
		} else {
			m.hooks.Lost(r.epoch, r.err, delay)
		}
		if r.wait != nil {
			r.wait()
		}
		if !ok {
			return fmt.Errorf("%w: %w", errs.GaveUp, r.err)
		}
		if !m.sleep(delay) {
			return nil
		}
	}
}

// result is how one round ended.
type result struct {
	epoch     uint64
	choice    netpick.Choice
	chooseErr error
	upAt      time.Time // when "connected" was announced, zero if never
	err       error
	stopped   bool
	wait      func() // ends what served the connection; nil if it never came up
}

// round makes one attempt and, if it connects, holds the connection until
// it is lost or the manager stops.
func (m *Manager) round(u *url.URL) result {
	var r result
	r.choice, r.chooseErr = m.cfg.Picker.Choose()
	r.epoch = m.hooks.Attempt(u.Redacted(), r.choice.Interface)
	sess, conn, err := m.attempt(u, r.choice, r.chooseErr)
	if m.stopping() {
		if err == nil {
			m.disconnect(sess)
		}
		r.stopped = true
		return r
	}
	if err != nil {
		m.brokers.result(u, false)
		r.err = err
		return r
	}
	r.upAt, r.err, r.stopped, r.wait = m.hold(u, r.epoch, r.choice, sess, conn)
	if r.stopped {
		r.wait()
		m.disconnect(sess)
	}
	return r
}

// delayAfter is the wait before the next attempt; false when the backoff
// gave up.
func (m *Manager) delayAfter(r result) (time.Duration, bool) {
	stable := false
	if !r.upAt.IsZero() {
		up := clock.Since(m.cfg.Clock, r.upAt)
		// Only a connection that proved stable earns a fresh backoff; a
		// broker that kicks the client right after CONNACK must meet
		// growing delays, not a tight loop.
		if stable = up >= m.cfg.StableAfter; stable {
			m.cfg.Backoff.Reset()
		}
		// A connection dropped because the local network changed (the
		// interface or address went away, or a fail-back) is not the
		// broker's doing: the next attempt goes at once, elsewhere; unless
		// the change keeps coming right after connecting.
		if errors.Is(r.err, errs.NetworkChanged) && up >= instantRetryAfter {
			return 0, true
		}
	}
	if !m.brokers.ended(stable) {
		return m.brokers.hop(), true // another endpoint of this round
	}
	d := m.cfg.Backoff.NextBackOff()
	if d == backoff.Stop {
		return 0, false
	}
	return max(d, 0), true
}

func (m *Manager) sleep(d time.Duration) bool {
	t := m.cfg.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return true
	case <-m.stop:
		return false
	}
}

func (m *Manager) stopping() bool {
	select {
	case <-m.stop:
		return true
	default:
		return false
	}
}
