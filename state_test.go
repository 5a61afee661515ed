package steadymqtt

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// machineView is everything a report could change in a machine.
type machineView struct {
	state   State
	since   time.Time
	seq     uint64
	epoch   uint64
	broker  string
	iface   string
	attempt int
	lastErr error
	conn    *wire.Conn
	changed <-chan struct{}
}

func viewOf(m *machine) machineView {
	m.mu.Lock()
	defer m.mu.Unlock()
	return machineView{
		state: m.state, since: m.since, seq: m.seq, epoch: m.epoch, broker: m.broker, iface: m.iface,
		attempt: m.attempt, lastErr: m.lastErr, conn: m.conn, changed: m.changed,
	}
}

// testMachine is a machine whose events are kept. The machine publishes
// under its lock, and the tests call it from one goroutine.
type testMachine struct {
	*machine
	events []Event
}

func newTestMachine() *testMachine {
	tm := &testMachine{}
	tm.machine = newMachine(func(ev Event) { tm.events = append(tm.events, ev) })
	return tm
}

func (m *testMachine) epochNow() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.epoch
}

var (
	errStaleTest  = errors.New("late report about an old connection")
	errFirstTry   = errors.New("first attempt failed")
	errSlowLink   = errors.New("keepalive overdue")
	errLinkGone   = errors.New("link lost")
	errGaveUpTest = errors.New("gave up")
)

// A report is one of the calls that the connection manager and the
// keepalive monitor make with an epoch.
type stateReport struct {
	name string
	do   func(m *machine, epoch uint64)
}

var stateReports = []stateReport{
	{"failed", func(m *machine, e uint64) { m.failed(e, errStaleTest, time.Second) }},
	{"up", func(m *machine, e uint64) { m.up(e, nil, false, ProtocolV311) }},
	{"lost", func(m *machine, e uint64) { m.lost(e, errStaleTest, time.Second) }},
	{"degrade", func(m *machine, e uint64) { m.degrade(e, errStaleTest) }},
	{"recover", func(m *machine, e uint64) { m.degrade(e, nil) }},
}

func reportNamed(t *testing.T, name string) stateReport {
	t.Helper()
	for _, r := range stateReports {
		if r.name == name {
			return r
		}
	}
	t.Fatalf("no report %q", name)
	return stateReport{}
}

// Situations in which the attempt of the returned epoch was superseded by a
// newer one. Each leaves the machine in a state where the same report with
// the current epoch would change something (checked by the test), so that
// only the epoch can make the old report harmless.
var supersededSituations = []struct {
	name    string
	setup   func(m *machine) (stale uint64)
	reports []string // the reports that the current epoch would act on
}{
	{
		name: "new attempt under way while connecting",
		setup: func(m *machine) uint64 {
			m.begin()
			old := m.newAttempt("tcp://a:1883", "eth0")
			m.newAttempt("tcp://b:1883", "wwan0")
			return old
		},
		reports: []string{"failed", "up"},
	},
	{
		name: "earlier attempt failed, new attempt under way",
		setup: func(m *machine) uint64 {
			m.begin()
			old := m.newAttempt("tcp://a:1883", "eth0")
			m.failed(old, errFirstTry, 10*time.Millisecond)
			m.newAttempt("tcp://b:1883", "wwan0")
			return old
		},
		reports: []string{"failed", "up"},
	},
	{
		name: "new attempt under way while reconnecting",
		setup: func(m *machine) uint64 {
			m.begin()
			old := m.newAttempt("tcp://a:1883", "eth0")
			m.up(old, nil, false, ProtocolV311)
			m.lost(old, errLinkGone, 10*time.Millisecond)
			m.newAttempt("tcp://a:1883", "wwan0")
			return old
		},
		reports: []string{"failed", "up"},
	},
	{
		name: "new connection up",
		setup: func(m *machine) uint64 {
			m.begin()
			old := m.newAttempt("tcp://a:1883", "eth0")
			m.up(old, nil, false, ProtocolV311)
			m.lost(old, errLinkGone, 10*time.Millisecond)
			cur := m.newAttempt("tcp://a:1883", "wwan0")
			m.up(cur, nil, false, ProtocolV311)
			return old
		},
		reports: []string{"failed", "up", "lost", "degrade"},
	},
	{
		name: "new connection up after the old attempt failed",
		setup: func(m *machine) uint64 {
			m.begin()
			old := m.newAttempt("tcp://a:1883", "eth0")
			m.failed(old, errFirstTry, 10*time.Millisecond)
			cur := m.newAttempt("tcp://b:1883", "wwan0")
			m.up(cur, nil, false, ProtocolV311)
			return old
		},
		reports: []string{"failed", "up", "lost", "degrade"},
	},
	{
		name: "new connection degraded",
		setup: func(m *machine) uint64 {
			m.begin()
			old := m.newAttempt("tcp://a:1883", "eth0")
			m.up(old, nil, false, ProtocolV311)
			m.lost(old, errLinkGone, 10*time.Millisecond)
			cur := m.newAttempt("tcp://a:1883", "wwan0")
			m.up(cur, nil, false, ProtocolV311)
			m.degrade(cur, errSlowLink)
			return old
		},
		reports: []string{"failed", "up", "lost", "recover"},
	},
}

func TestMachineIgnoresReportsAboutSupersededAttempts(t *testing.T) {
	for _, sit := range supersededSituations {
		for _, name := range sit.reports {
			rep := reportNamed(t, name)
			t.Run(fmt.Sprintf("%s/%s", sit.name, rep.name), func(t *testing.T) {
				// Control: with the current epoch the report does act, so
				// nothing but the epoch can make the late one harmless.
				ctl := newTestMachine()
				sit.setup(ctl.machine)
				before, n := viewOf(ctl.machine), len(ctl.events)
				rep.do(ctl.machine, ctl.epochNow())
				require.Greater(t, len(ctl.events), n, "control: %s with the current epoch emits an event", rep.name)
				require.NotEqual(t, before, viewOf(ctl.machine), "control: %s with the current epoch changes the machine", rep.name)

				m := newTestMachine()
				stale := sit.setup(m.machine)
				require.Less(t, stale, m.epochNow(), "the attempt was superseded")
				before, n = viewOf(m.machine), len(m.events)
				beforeEvents := append([]Event(nil), m.events...)
				changed := before.changed

				if rep.name == "up" {
					require.False(t, m.up(stale, nil, false, ProtocolV311), "up about a superseded attempt must be refused")
				} else {
					rep.do(m.machine, stale)
				}

				require.Equal(t, beforeEvents, m.events[:n], "earlier events untouched")
				require.Len(t, m.events, n, "%s about superseded epoch %d (current %d) published %v",
					rep.name, stale, before.epoch, m.events[n:])
				after := viewOf(m.machine)
				require.Equal(t, before.state, after.state, "state")
				require.Equal(t, before.attempt, after.attempt, "attempt counter")
				require.Equal(t, before, after, "nothing in the machine changes")
				require.Equal(t, before.state, m.current())
				st, ch, lastErr := m.snapshot()
				require.Equal(t, before.state, st)
				require.Equal(t, before.lastErr, lastErr)
				require.Equal(t, changed, ch, "the change channel is still the same")
				select {
				case <-changed:
					t.Fatal("the change channel was closed by a report about a superseded attempt")
				default:
				}
			})
		}
	}
}

// Situations that end in close: afterwards no report, of any epoch, may
// change anything.
var closedSituations = []struct {
	name  string
	setup func(m *machine) (last uint64) // the epoch of the last attempt
	err   error
}{
	{
		name:  "closed before Connect",
		setup: func(m *machine) uint64 { return 0 },
	},
	{
		name: "closed while connecting",
		setup: func(m *machine) uint64 {
			m.begin()
			return m.newAttempt("tcp://a:1883", "eth0")
		},
	},
	{
		name: "closed while connected",
		setup: func(m *machine) uint64 {
			m.begin()
			e := m.newAttempt("tcp://a:1883", "eth0")
			m.up(e, nil, false, ProtocolV311)
			return e
		},
	},
	{
		name: "closed while degraded",
		setup: func(m *machine) uint64 {
			m.begin()
			e := m.newAttempt("tcp://a:1883", "eth0")
			m.up(e, nil, false, ProtocolV311)
			m.degrade(e, errSlowLink)
			return e
		},
	},
	{
		name: "gave up while reconnecting",
		setup: func(m *machine) uint64 {
			m.begin()
			e := m.newAttempt("tcp://a:1883", "eth0")
			m.up(e, nil, false, ProtocolV311)
			m.lost(e, errLinkGone, 10*time.Millisecond)
			e = m.newAttempt("tcp://a:1883", "eth0")
			m.failed(e, errFirstTry, 10*time.Millisecond)
			return e
		},
		err: errGaveUpTest,
	},
}

func TestMachineIgnoresEveryReportAfterClose(t *testing.T) {
	for _, sit := range closedSituations {
		t.Run(sit.name, func(t *testing.T) {
			m := newTestMachine()
			last := sit.setup(m.machine)
			n := len(m.events)
			m.close(sit.err)
			require.Len(t, m.events, n+1, "close emits one event")
			ev := m.events[n]
			require.Equal(t, StateClosed, ev.To)
			require.ErrorIs(t, ev.Err, sit.err)
			closedAt := m.epochNow()

			// Every epoch there is: before the last attempt, the last
			// attempt's, the one close opened, and later ones.
			epochs := []uint64{0, last, closedAt, closedAt + 1, closedAt + 100}
			if last > 0 {
				epochs = append(epochs, last-1)
			}
			before := viewOf(m.machine)
			for _, rep := range stateReports {
				for _, e := range epochs {
					if rep.name == "up" {
						require.False(t, m.up(e, nil, false, ProtocolV311), "up(%d) after close must be refused", e)
					} else {
						rep.do(m.machine, e)
					}
					require.Len(t, m.events, n+1, "%s(%d) after close published %v", rep.name, e, m.events[n+1:])
					require.Equal(t, before, viewOf(m.machine), "%s(%d) after close changed the machine", rep.name, e)
				}
			}
			// begin and a second close change nothing either.
			m.begin()
			m.close(errors.New("again"))
			require.Len(t, m.events, n+1)
			require.Equal(t, before, viewOf(m.machine))
			require.Equal(t, StateClosed, m.current())
			_, _, lastErr := m.snapshot()
			require.Equal(t, before.lastErr, lastErr)
		})
	}
}

func TestMachineActsOnReportsAboutTheCurrentAttempt(t *testing.T) {
	m := newTestMachine()
	require.Equal(t, StateIdle, m.current())
	_, idle, _ := m.snapshot()

	type step struct {
		do      func()
		from    State
		to      State
		err     error
		attempt int
		delay   time.Duration
		broker  string
		iface   string
	}
	var e1, e2, e3 uint64
	steps := []step{
		{do: m.begin, from: StateIdle, to: StateConnecting},
		{do: func() {
			e1 = m.newAttempt("tcp://a:1883", "eth0")
			m.failed(e1, errFirstTry, 100*time.Millisecond)
		}, from: StateConnecting, to: StateConnecting, err: errFirstTry, attempt: 1, delay: 100 * time.Millisecond, broker: "tcp://a:1883", iface: "eth0"},
		{do: func() {
			e2 = m.newAttempt("tcp://b:1883", "wwan0")
			require.True(t, m.up(e2, nil, false, ProtocolV311))
		}, from: StateConnecting, to: StateConnected, attempt: 1, broker: "tcp://b:1883", iface: "wwan0"},
		{do: func() { m.degrade(e2, errSlowLink) }, from: StateConnected, to: StateDegraded, err: errSlowLink, broker: "tcp://b:1883", iface: "wwan0"},
		{do: func() { m.degrade(e2, nil) }, from: StateDegraded, to: StateConnected, broker: "tcp://b:1883", iface: "wwan0"},
		{do: func() { m.lost(e2, errLinkGone, 200*time.Millisecond) }, from: StateConnected, to: StateReconnecting, err: errLinkGone, delay: 200 * time.Millisecond, broker: "tcp://b:1883", iface: "wwan0"},
		{do: func() {
			e3 = m.newAttempt("tcp://a:1883", "eth0")
			m.failed(e3, errFirstTry, 300*time.Millisecond)
		}, from: StateReconnecting, to: StateReconnecting, err: errFirstTry, attempt: 1, delay: 300 * time.Millisecond, broker: "tcp://a:1883", iface: "eth0"},
		{do: func() {
			e3 = m.newAttempt("tcp://a:1883", "eth0")
			require.True(t, m.up(e3, nil, false, ProtocolV311))
		}, from: StateReconnecting, to: StateConnected, attempt: 1, broker: "tcp://a:1883", iface: "eth0"},
		{do: func() { m.close(nil) }, from: StateConnected, to: StateClosed, broker: "tcp://a:1883", iface: "eth0"},
	}
	var lastSeq uint64
	changed := idle
	for i, s := range steps {
		n := len(m.events)
		s.do()
		require.Len(t, m.events, n+1, "step %d emits one event", i)
		ev := m.events[n]
		require.Greater(t, ev.Seq, lastSeq, "step %d: Seq increases", i)
		require.Equal(t, lastSeq+1, ev.Seq, "step %d: no Seq skipped", i)
		lastSeq = ev.Seq
		require.Equal(t, s.from, ev.From, "step %d: From", i)
		require.Equal(t, s.to, ev.To, "step %d: To", i)
		require.Equal(t, s.err, ev.Err, "step %d: Err", i)
		require.Equal(t, s.attempt, ev.Attempt, "step %d: Attempt", i)
		require.Equal(t, s.delay, ev.Delay, "step %d: Delay", i)
		require.Equal(t, s.broker, ev.Broker, "step %d: Broker", i)
		require.Equal(t, s.iface, ev.Interface, "step %d: Interface", i)
		require.False(t, ev.Time.IsZero(), "step %d: Time", i)
		require.Equal(t, s.to, m.current(), "step %d: current", i)

		st, ch, _ := m.snapshot()
		require.Equal(t, s.to, st)
		if s.from != s.to {
			select {
			case <-changed:
			default:
				t.Fatalf("step %d: the change channel of %v was not closed on %v → %v", i, s.from, s.from, s.to)
			}
			require.NotEqual(t, changed, ch, "step %d: a new change channel", i)
		} else {
			require.Equal(t, changed, ch, "step %d: no change of state, same channel", i)
		}
		changed = ch
	}
	requireConsistent(t, m.events) // a failed attempt (From == To) keeps the chain

	// The attempt counter counts failures since the last success, and the
	// last error is kept.
	v := viewOf(m.machine)
	require.Equal(t, 0, v.attempt)
	require.Equal(t, errFirstTry, v.lastErr)
}
