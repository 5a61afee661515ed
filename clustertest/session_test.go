package clustertest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt"
	"github.com/steadymqtt/steadymqtt/envelope"
	"github.com/steadymqtt/steadymqtt/internal/testsupport/netproxy"
)

// keyHandler adds the idempotency key of every enveloped message to got.
func keyHandler(got *keySet) steadymqtt.MessageHandler {
	return func(m steadymqtt.Message) {
		if key, _, ok := envelope.Open(m.Payload); ok {
			got.add(key)
		}
	}
}

// otherNode is a node of c that is not n.
func otherNode(c *cluster, n *node) *node {
	for _, m := range c.nodes {
		if m != n {
			return m
		}
	}
	return nil
}

// connectedAfter returns the first event of log that entered
// StateConnected after t0, waiting for it up to within.
func connectedAfter(t *testing.T, log *eventLog, t0 time.Time, within time.Duration) steadymqtt.Event {
	t.Helper()
	var found steadymqtt.Event
	require.Eventually(t, func() bool {
		for _, ev := range log.snapshot() {
			if ev.Kind == steadymqtt.KindState && ev.To == steadymqtt.StateConnected && ev.From != ev.To && ev.Time.After(t0) {
				found = ev
				return true
			}
		}
		return false
	}, within, 20*time.Millisecond, "no connected event after %s", t0.Format("15:04:05.000"))
	return found
}

// TestClusterPersistentSessionMovesWithKill: a clean-session-false
// subscriber whose node is killed reconnects on another node, its connected
// event and Health say the broker kept the session, and it receives every
// acknowledged message, those published while it was away included. With
// a clean session (or a library that lost the flag) the test fails.
func TestClusterPersistentSessionMovesWithKill(t *testing.T) {
	leakCheck(t)
	c := needCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	sub := newClient(t, clientOptions(c.urls(), "sess-keeper", steadymqtt.WithCleanSession(false))...)
	log := recordEvents(t, sub)
	got := newKeySet()
	require.NoError(t, sub.Subscribe(ctx, "sess/data", 1, keyHandler(got)))
	require.NoError(t, sub.Connect(ctx))
	victim := connectedTo(c, sub)
	require.NotNil(t, victim)

	// The publisher stays on a node that survives.
	pubNode := otherNode(c, victim)
	pub := newClient(t, clientOptions([]string{pubNode.URL()}, "sess-feeder", steadymqtt.WithKeyEnvelope())...)
	require.NoError(t, pub.Connect(ctx))
	require.NoError(t, pub.Publish(ctx, "sess/data", []byte("x"), steadymqtt.WithQoS(1), steadymqtt.WithIdempotencyKey("warm-up")))
	require.Eventually(t, func() bool { return got.has("warm-up") }, 10*time.Second, 10*time.Millisecond, "the subscription does not deliver")

	// A message every 10 ms, without waiting for each acknowledgement, so
	// that some are sent while the subscriber is away whatever the broker
	// does meanwhile.
	type sent struct {
		key     string
		started time.Time
		d       *steadymqtt.Delivery
	}
	var (
		mu   sync.Mutex
		out  []sent
		stop = make(chan struct{})
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			key := fmt.Sprintf("gap-%d", i)
			now := time.Now()
			d := pub.PublishAsync(ctx, "sess/data", []byte("reading"), steadymqtt.WithQoS(1), steadymqtt.WithIdempotencyKey(key))
			mu.Lock()
			out = append(out, sent{key, now, d})
			mu.Unlock()
		}
	}()
	stopOnce := sync.OnceFunc(func() { close(stop); <-done })
	t.Cleanup(stopOnce)

	time.Sleep(300 * time.Millisecond)
	c.kill(victim)
	killedAt := time.Now()
	// A burst at once, while the subscriber cannot have reconnected yet.
	mu.Lock()
	for i := 0; i < 10; i++ {
		key := fmt.Sprintf("burst-%d", i)
		out = append(out, sent{key, time.Now(), pub.PublishAsync(ctx, "sess/data", []byte("reading"), steadymqtt.WithQoS(1), steadymqtt.WithIdempotencyKey(key))})
	}
	mu.Unlock()
	ev := connectedAfter(t, log, killedAt, failoverWithin)
	back := connectedTo(c, sub)
	t.Logf("killed %s; the subscriber connected again on %s after %s, session present %v", victim.name, ev.Broker, ms(ev.Time.Sub(killedAt)), ev.SessionPresent)
	require.NotEqual(t, victim.URL(), ev.Broker)
	require.True(t, ev.SessionPresent, "the connected event after the move does not report the session")
	require.NotNil(t, back)
	require.True(t, sub.Health().SessionPresent, "Health does not report the session")
	for _, e := range log.snapshot() {
		require.NotEqual(t, steadymqtt.KindSessionLost, e.Kind, "session reported lost: %v", e.Err)
	}

	time.Sleep(500 * time.Millisecond) // messages after the move too
	stopOnce()
	mu.Lock()
	all := append([]sent(nil), out...)
	mu.Unlock()
	var keys []string
	gap := 0
	for _, s := range all {
		require.NoError(t, s.d.Wait(ctx), "publish %s", s.key)
		keys = append(keys, s.key)
		if s.started.After(killedAt) && s.started.Before(ev.Time) {
			gap++
		}
	}
	t.Logf("%d messages acknowledged, %d of them published while the subscriber was away", len(keys), gap)
	require.NotZero(t, gap, "nothing was published during the gap: the test proved nothing")
	require.Eventually(t, func() bool { return len(got.missing(keys)) == 0 }, 20*time.Second, 20*time.Millisecond,
		"messages acknowledged by the broker never reached the persistent subscriber")
	if m := got.missing(keys); len(m) > 0 {
		t.Fatalf("%d of %d messages lost, e.g. %v", len(m), len(keys), m[:min(10, len(m))])
	}
}

// TestClusterSessionLostEvent: the broker reports no session for a
// clean-session-false client when, while the client was away, another
// connection with its client ID and a clean session wiped it. The client
// reaches its node through a proxy that the test cuts, so that the other
// connection, made to another node, finishes before the client is back.
// Away without the wipe, the session is kept and no event may come; after
// the wipe the event must come, and the subscriptions must work again.
func TestClusterSessionLostEvent(t *testing.T) {
	leakCheck(t)
	c := needCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	home, elsewhere := c.nodes[0], c.nodes[1]
	path, err := netproxy.Start(home.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = path.Close() })

	const id = "sess-lost"
	sub := newClient(t, clientOptions([]string{path.URL()}, id, steadymqtt.WithCleanSession(false))...)
	log := recordEvents(t, sub)
	got := newKeySet()
	require.NoError(t, sub.Subscribe(ctx, "lost/data", 1, keyHandler(got)))
	require.NoError(t, sub.Connect(ctx))

	// away cuts the client off, runs during while it cannot come back, and
	// lets it come back.
	away := func(during func()) time.Time {
		path.Blackhole(true)
		path.CutAll()
		require.Eventually(t, func() bool { return !sub.State().Up() }, 5*time.Second, 5*time.Millisecond)
		if during != nil {
			during()
		}
		path.Blackhole(false)
		return time.Now()
	}

	// Away, and the broker (asked on another node) still has the session.
	t1 := away(func() {
		present, err := probeConnect(elsewhere.Addr(), id, false, 10*time.Second)
		require.NoError(t, err)
		require.True(t, present, "the broker has no session for %s after it went away", id)
	})
	kept := connectedAfter(t, log, t1, failoverWithin)
	require.True(t, kept.SessionPresent, "back after an absence that kept the session, but session present is false")

	// Away, and a clean-session connection with the same ID wipes it.
	t2 := away(func() {
		_, err := probeConnect(elsewhere.Addr(), id, true, 10*time.Second)
		require.NoError(t, err)
	})
	var lost steadymqtt.Event
	require.Eventually(t, func() bool {
		for _, ev := range log.snapshot() {
			if ev.Kind == steadymqtt.KindSessionLost && ev.Time.After(t2) {
				lost = ev
				return true
			}
		}
		return false
	}, failoverWithin, 20*time.Millisecond, "no session-lost event after the session was wiped")
	t.Logf("session-lost event %s after the client could reconnect: %v", ms(lost.Time.Sub(t2)), lost.Err)
	require.Error(t, lost.Err)

	// Events are ordered: from the first return to the session-lost event,
	// nothing reported a lost session, and the connection just before the
	// event had no session.
	var wiped steadymqtt.Event
	for _, ev := range log.snapshot() {
		if ev.Seq <= kept.Seq || ev.Seq >= lost.Seq {
			continue
		}
		require.NotEqual(t, steadymqtt.KindSessionLost, ev.Kind, "session reported lost after an absence that kept it")
		if ev.Kind == steadymqtt.KindState && ev.To == steadymqtt.StateConnected && ev.From != ev.To {
			wiped = ev
		}
	}
	require.NotZero(t, wiped.Seq, "no connected event before the session-lost event")
	require.False(t, wiped.SessionPresent)
	require.False(t, sub.Health().SessionPresent)

	// The subscription was made again on the new session.
	pub := newClient(t, clientOptions([]string{elsewhere.URL()}, "lost-feeder", steadymqtt.WithKeyEnvelope())...)
	require.NoError(t, pub.Connect(ctx))
	require.NoError(t, pub.Publish(ctx, "lost/data", []byte("x"), steadymqtt.WithQoS(1), steadymqtt.WithIdempotencyKey("after-loss")))
	require.Eventually(t, func() bool { return got.has("after-loss") }, 10*time.Second, 10*time.Millisecond,
		"the subscription was not made again after the session was lost")
}
