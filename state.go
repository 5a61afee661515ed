package steadymqtt

import (
	"fmt"
	"sync"
	"time"

	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// State is the client's connection state. There is exactly one at any time,
// and every change of it is published as an Event.
//
//	idle ──Connect──▶ connecting ──▶ connected ◀──▶ degraded
//	                                    │  ▲            │
//	                            (loss)  ▼  │            │
//	                               reconnecting ◀───────┘
//	any state ──Close──▶ closed
type State int

const (
	// StateIdle is the state before Connect.
	StateIdle State = iota
	// StateConnecting lasts from Connect until the first successful
	// connection, across failed attempts and the waits between them.
	StateConnecting
	// StateConnected means the broker accepted the connection and the link
	// answers keepalives in time.
	StateConnected
	// StateDegraded means still connected, but a keepalive answer is overdue
	// or the last round trip was above the configured threshold: the link
	// may be dying.
	StateDegraded
	// StateReconnecting lasts from a loss until the next success, across
	// failed attempts and the backoff waits.
	StateReconnecting
	// StateClosed is final: Close was called, or the backoff gave up.
	StateClosed
)

var stateNames = [...]string{"idle", "connecting", "connected", "degraded", "reconnecting", "closed"}

// String returns the lower-case name of the state.
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// MarshalText makes a State read as its name in JSON and logs.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Up reports whether the state has a live connection to the broker
// (connected or degraded).
func (s State) Up() bool { return s == StateConnected || s == StateDegraded }

// machine is the single place where the state changes. The connection
// manager, the keepalive monitor and Close all go through it; each change is
// stamped with a sequence number and published while the lock is held, so
// subscribers see changes in the order they happened.
//
// Transitions that concern a connection carry its epoch. The manager starts
// a new epoch for every attempt, so a late report about an older connection
// (paho delivers its callbacks on goroutines of their own) cannot touch the
// state of the current one.
type machine struct {
	mu      sync.Mutex
	state   State
	since   time.Time
	seq     uint64
	epoch   uint64
	broker  string
	iface   string
	attempt int // consecutive failed attempts since the last success
	lastErr error
	conn    *wire.Conn // the live connection while state.Up()
	present bool       // the live connection's CONNACK session-present flag
	// What the last connection measured, kept through an outage: the time
	// since the last packet is what an alert wants most then.
	lastRTT    time.Duration
	lastPacket time.Time
	protocol   Protocol // of the last connection; ProtocolAuto before the first
	changed    chan struct{}
	publish    func(Event)
}

func newMachine(publish func(Event)) *machine {
	return &machine{state: StateIdle, since: time.Now(), changed: make(chan struct{}), publish: publish}
}

// emit must be called with mu held. From == To is allowed: it reports a
// failed attempt that did not change the state.
func (m *machine) emit(to State, err error, delay time.Duration) {
	now := time.Now()
	m.seq++
	ev := Event{
		Seq: m.seq, Time: now, From: m.state, To: to, Err: err, Step: errs.StepOf(err),
		Attempt: m.attempt, Delay: delay, Broker: m.broker, Interface: m.iface,
	}
	if to.Up() {
		ev.SessionPresent = m.present
	}
	if m.state != to {
		m.state, m.since = to, now
		close(m.changed)
		m.changed = make(chan struct{})
	}
	m.publish(ev)
}

// health is the machine's part of a Health snapshot, and the live
// connection whose counters fill in the rest.
func (m *machine) health() (Health, *wire.Conn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Health{
		State: m.state, Since: m.since, Broker: m.broker, Interface: m.iface,
		Attempt: m.attempt, LastError: m.lastErr, LastErrorStep: errs.StepOf(m.lastErr),
		SessionPresent: m.present && m.state.Up(), RTT: m.lastRTT, LastPacketAt: m.lastPacket,
		Protocol: m.protocol,
	}, m.conn
}

// snapshot returns the state, a channel closed at the next change of
// state, and the last error.
func (m *machine) snapshot() (State, <-chan struct{}, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state, m.changed, m.lastErr
}

func (m *machine) current() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// begin is called by Connect: idle → connecting.
func (m *machine) begin() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state == StateIdle {
		m.emit(StateConnecting, nil, 0)
	}
}

// newAttempt opens a new epoch for an attempt to broker over iface.
func (m *machine) newAttempt(broker, iface string) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.epoch++
	m.broker, m.iface = broker, iface
	return m.epoch
}

// failed records a failed attempt; the state (connecting or reconnecting)
// stays and the event carries the error and the wait before the next try.
func (m *machine) failed(epoch uint64, err error, delay time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if epoch != m.epoch || m.state == StateClosed {
		return
	}
	m.attempt++
	m.lastErr = err
	m.emit(m.state, err, delay)
}

// up records a successful attempt.
func (m *machine) up(epoch uint64, conn *wire.Conn, sessionPresent bool, proto Protocol) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if epoch != m.epoch || m.state == StateClosed {
		return false
	}
	m.conn, m.present, m.protocol = conn, sessionPresent, proto
	m.emit(StateConnected, nil, 0) // the event still counts the failures before it
	m.attempt = 0
	return true
}

// forget drops the live connection, keeping what it measured.
func (m *machine) forget() {
	if m.conn != nil {
		st := m.conn.Stats()
		m.lastRTT, m.lastPacket = st.RTT, st.LastReceived
	}
	m.conn = nil
}

// lost records the loss of the connection of epoch.
func (m *machine) lost(epoch uint64, err error, delay time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if epoch != m.epoch || !m.state.Up() {
		return
	}
	m.forget()
	m.lastErr = err
	m.emit(StateReconnecting, err, delay)
}

// degrade switches between connected and degraded for the live connection
// of epoch; why is nil when the link recovered.
func (m *machine) degrade(epoch uint64, why error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if epoch != m.epoch || !m.state.Up() {
		return
	}
	switch {
	case why != nil && m.state == StateConnected:
		m.emit(StateDegraded, why, 0)
	case why == nil && m.state == StateDegraded:
		m.emit(StateConnected, nil, 0)
	}
}

// notice reports something about a message without changing the state.
func (m *machine) notice(kind EventKind, err error, topic, key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	m.publish(Event{
		Seq: m.seq, Time: time.Now(), From: m.state, To: m.state, Err: err,
		Attempt: m.attempt, Broker: m.broker, Interface: m.iface,
		Kind: kind, Topic: topic, Key: key,
	})
}

// close is final; err is set when the client closed itself (ErrGaveUp).
func (m *machine) close(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state == StateClosed {
		return
	}
	m.epoch++ // nothing that was in flight may change the state any more
	m.forget()
	if err != nil {
		m.lastErr = err
	}
	m.emit(StateClosed, err, 0)
}
