package paho5

import (
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
	"github.com/steadymqtt/steadymqtt/internal/testsupport/netproxy"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

func startProxy(t *testing.T, addr string) (*netproxy.Proxy, *tally) {
	t.Helper()
	p, err := netproxy.Start(addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p, tap(p)
}

// persistent is a client whose session outlives its connections (Clean
// Start 0, no interval named: it never expires).
func persistent(id string) engine.Options {
	return engine.Options{ClientID: id, KeepAlive: 30 * time.Second}
}

func requireOpen(t *testing.T, p engine.Pending) {
	t.Helper()
	select {
	case <-p.Done():
		require.FailNow(t, "settled early", "acked %v, err %v", p.Acked(), p.Err())
	default:
	}
}

// A QoS 2 message past PUBREC when the connection dies is completed on the
// next connection with PUBREL, never a second PUBLISH: the Pending stays
// open across the loss, then resolves Acked, and the subscriber gets the
// message once. Either the PUBREL never reached the broker, or it did and
// the PUBCOMP was lost.
func TestQoS2CompletedAcrossReconnect(t *testing.T) {
	leakCheck(t)
	for _, lost := range []string{"PUBREL", "PUBCOMP"} {
		t.Run(lost+" lost", func(t *testing.T) {
			brokers(t, broker.MosquittoConfig{}, func(t *testing.T, b target) {
				box := subscriber(t, b.addr, "sub", "exactly/once", 2)
				proxy, sent := startProxy(t, b.addr)
				e := newEngine(t)

				conn := dial(t, proxy.Addr())
				var pubrels atomic.Int32
				conn.Observe(func(d wire.Dir, h wire.Header) {
					if d == wire.Sent && h.Type == wire.PUBREL {
						pubrels.Add(1)
					}
				})
				s1, err := connectErr(e, conn, persistent("pub"))
				require.NoError(t, err)
				switch lost {
				case "PUBREL":
					// The PUBREC reaches the client; from then on nothing
					// crosses, so its PUBREL is lost.
					proxy.ObserveFromBroker(func(n int, h wire.Header, _ bool) {
						if n == 1 && h.Type == wire.PUBREC {
							proxy.Blackhole(true)
						}
					})
				case "PUBCOMP":
					proxy.DropFromBroker(func(t byte) bool { return t == wire.PUBCOMP })
				}
				p := s1.Publish(engine.Message{Topic: "exactly/once", Payload: []byte("one"), QoS: 2})
				switch lost {
				case "PUBREL":
					eventually(t, 5*time.Second, "PUBREL written", func() bool { return pubrels.Load() == 1 })
				case "PUBCOMP":
					eventually(t, 5*time.Second, "PUBCOMP dropped", func() bool { _, d := proxy.FromBroker(wire.PUBCOMP); return d == 1 })
				}
				proxy.CutAll()
				waitLost(t, s1, 5*time.Second)
				proxy.Blackhole(false)
				proxy.ObserveFromBroker(nil)
				proxy.DropFromBroker(nil)
				requireOpen(t, p)
				require.True(t, survives(p), "kept in the session state")

				s2 := connect(t, e, proxy.Addr(), persistent("pub"))
				require.True(t, s2.SessionPresent())
				waitDone(t, p, 5*time.Second)
				require.NoError(t, p.Err())
				require.True(t, p.Acked())
				require.GreaterOrEqual(t, s2.Acks(), uint64(1), "the PUBCOMP came on the second connection")

				require.Equal(t, 1, sent.count(1, wire.PUBLISH))
				require.Zero(t, sent.count(2, wire.PUBLISH), "not a second PUBLISH")
				if b.name == "mochi" && lost == "PUBREL" {
					// mochi sends its PUBREC again on the new connection,
					// which paho.golang's session state answers with a
					// second PUBREL (and mochi with PUBCOMP 0x92).
					require.GreaterOrEqual(t, sent.count(2, wire.PUBREL), 1)
				} else {
					require.Equal(t, 1, sent.count(2, wire.PUBREL), "the next connection sends PUBREL")
				}

				box.wait(t, 1, 5*time.Second)
				time.Sleep(300 * time.Millisecond)
				require.Len(t, box.all(), 1, "exactly once")
			})
		})
	}
}

// A QoS 1 message without its PUBACK is sent again from the session state
// on the next connection, with DUP set: once, not also by the outbox.
func TestQoS1ResentFromSession(t *testing.T) {
	leakCheck(t)
	brokers(t, broker.MosquittoConfig{}, func(t *testing.T, b target) {
		proxy, sent := startProxy(t, b.addr)
		e := newEngine(t)
		s1, err := connectErr(e, dial(t, proxy.Addr()), persistent("pub"))
		require.NoError(t, err)
		proxy.DropFromBroker(func(t byte) bool { return t == wire.PUBACK })
		p := s1.Publish(engine.Message{Topic: "q1", Payload: []byte("one"), QoS: 1})
		eventually(t, 5*time.Second, "PUBACK dropped", func() bool { _, d := proxy.FromBroker(wire.PUBACK); return d == 1 })
		require.Zero(t, s1.Acks(), "dropped on the way")
		proxy.CutAll()
		waitLost(t, s1, 5*time.Second)
		proxy.DropFromBroker(nil)
		requireOpen(t, p)
		require.True(t, survives(p))

		s2 := connect(t, e, proxy.Addr(), persistent("pub"))
		require.True(t, s2.SessionPresent())
		waitDone(t, p, 5*time.Second)
		require.True(t, p.Acked())
		require.Equal(t, 1, sent.count(2, wire.PUBLISH))
		require.Equal(t, 1, sent.dups(2), "sent again with DUP")
	})
}

// When the next CONNACK says session not present (here: Clean Start),
// paho.golang drops what it kept: the Pending is settled, before Connect
// returns, with an error matching errs.NotDelivered, and nothing is sent
// again.
func TestSessionNotPresentSettlesKept(t *testing.T) {
	leakCheck(t)
	addr := startEmbedded(t).addr
	proxy, sent := startProxy(t, addr)
	e := newEngine(t)
	s1, err := connectErr(e, dial(t, proxy.Addr()), persistent("pub"))
	require.NoError(t, err)
	proxy.DropFromBroker(func(t byte) bool { return t == wire.PUBACK })
	p := s1.Publish(engine.Message{Topic: "q1", Payload: []byte("one"), QoS: 1})
	eventually(t, 5*time.Second, "PUBACK dropped", func() bool { _, d := proxy.FromBroker(wire.PUBACK); return d == 1 })
	proxy.CutAll()
	waitLost(t, s1, 5*time.Second)
	proxy.DropFromBroker(nil)
	require.True(t, survives(p))

	o := persistent("pub")
	o.CleanSession = true
	s2 := connect(t, e, proxy.Addr(), o)
	require.False(t, s2.SessionPresent())
	select {
	case <-p.Done():
	default:
		require.FailNow(t, "not settled when Connect returned")
	}
	require.False(t, p.Acked())
	require.ErrorIs(t, p.Err(), errs.NotDelivered)
	require.False(t, survives(p), "to be sent again")
	time.Sleep(100 * time.Millisecond)
	require.Zero(t, sent.count(2, wire.PUBLISH))
}

// With no session after the connection (Clean Start, no interval), a
// message without its acknowledgement is settled with the loss, as on
// MQTT 3.1.1.
func TestNoSessionNoSurvival(t *testing.T) {
	leakCheck(t)
	addr := startEmbedded(t).addr
	proxy, _ := startProxy(t, addr)
	s, err := connectErr(newEngine(t), dial(t, proxy.Addr()), engine.Options{ClientID: "pub", CleanSession: true})
	require.NoError(t, err)
	require.Zero(t, s.SessionExpiry())
	proxy.DropFromBroker(func(t byte) bool { return t == wire.PUBACK })
	p := s.Publish(engine.Message{Topic: "q1", Payload: []byte("one"), QoS: 1})
	eventually(t, 5*time.Second, "PUBACK dropped", func() bool { _, d := proxy.FromBroker(wire.PUBACK); return d == 1 })
	proxy.CutAll()
	lost := waitLost(t, s, 5*time.Second)
	select {
	case <-p.Done():
	default:
		require.FailNow(t, "not settled when Lost was reported")
	}
	require.False(t, p.Acked())
	require.ErrorIs(t, p.Err(), lost)
	require.ErrorIs(t, p.Err(), io.EOF)
	require.False(t, survives(p))
}

// Engine.Close settles what was kept for a next connection.
func TestCloseSettlesKept(t *testing.T) {
	leakCheck(t)
	addr := startEmbedded(t).addr
	proxy, _ := startProxy(t, addr)
	e := New()
	s, err := connectErr(e, dial(t, proxy.Addr()), persistent("pub"))
	require.NoError(t, err)
	proxy.DropFromBroker(func(t byte) bool { return t == wire.PUBCOMP })
	p := s.Publish(engine.Message{Topic: "q2", Payload: []byte("one"), QoS: 2})
	eventually(t, 5*time.Second, "PUBCOMP dropped", func() bool { _, d := proxy.FromBroker(wire.PUBCOMP); return d == 1 })
	proxy.CutAll()
	waitLost(t, s, 5*time.Second)
	requireOpen(t, p)
	require.NoError(t, e.Close())
	waitDone(t, p, time.Second)
	require.ErrorIs(t, p.Err(), errs.Closed)
	require.False(t, survives(p))
}

// A message still waiting for its hand-off when the sender gives up on it
// (Survives on an open connection, as when the client stops) is withdrawn:
// never written, even once the window opens.
func TestWithdrawnNeverWritten(t *testing.T) {
	leakCheck(t)
	addr := mochiServer(t, func(c *mqtt.Capabilities) { c.ReceiveMaximum = 1 }, true)
	proxy, sent := startProxy(t, addr)
	s := connect(t, newEngine(t), proxy.Addr(), engine.Options{ClientID: "pub", CleanSession: true})
	proxy.DropFromBroker(func(t byte) bool { return t == wire.PUBACK })
	first := s.Publish(engine.Message{Topic: "w", Payload: []byte("1"), QoS: 1})
	second := s.Publish(engine.Message{Topic: "w", Payload: []byte("2"), QoS: 1})
	eventually(t, 5*time.Second, "PUBACK dropped", func() bool { _, d := proxy.FromBroker(wire.PUBACK); return d == 1 })
	require.False(t, survives(second), "withdrawn")
	waitDone(t, second, time.Second)
	require.ErrorIs(t, second.Err(), errs.NotConnected)
	require.False(t, survives(first), "kept, but the session ends with the connection")
	proxy.DropFromBroker(nil)
	third := s.Publish(engine.Message{Topic: "w", Payload: []byte("3"), QoS: 1})
	// The first is still unacknowledged (its PUBACK was dropped), so the
	// window of one stays full: the third waits too.
	time.Sleep(100 * time.Millisecond)
	requireOpen(t, third)
	require.Equal(t, 1, sent.count(1, wire.PUBLISH), "the withdrawn message was never written")
}

// The in-flight bound counts what an earlier connection kept: a new
// Receive Maximum below it holds new messages back.
func TestInFlightBoundCountsKept(t *testing.T) {
	e := New()
	e.limit = 2
	s := &session{e: e}
	for range 3 {
		e.kept[&pending{e: e, s: s}] = struct{}{}
	}
	ctx, cancel := contextWithTimeout(50 * time.Millisecond)
	defer cancel()
	require.ErrorIs(t, e.acquire(ctx), errDeadline)
	for p := range e.kept {
		e.forget(p)
		if len(e.kept) == 1 {
			break
		}
	}
	ctx2, cancel2 := contextWithTimeout(time.Second)
	defer cancel2()
	require.NoError(t, e.acquire(ctx2))
	ctx3, cancel3 := contextWithTimeout(50 * time.Millisecond)
	defer cancel3()
	require.True(t, errors.Is(e.acquire(ctx3), errDeadline), "one kept and one held fill a window of two")
}
