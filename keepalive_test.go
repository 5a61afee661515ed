package steadymqtt

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/testsupport/netproxy"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// The tests that mostly watch clients for tens of seconds run side by
// side; each has clients and brokers of its own.
func TestLongWatches(t *testing.T) {
	leakCheck(t)
	for _, w := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"IdleLinkStaysConnected", idleLinkStaysConnected},
		{"IdleClientSendsOnePingPerKeepalive", idleClientSendsOnePingPerKeepalive},
		{"SlowBrokerIsNotDropped", slowBrokerIsNotDropped},
		{"SlowUploadIsNotTakenForADeadLink", slowUploadIsNotTakenForADeadLink},
		{"DegradedIdleLinkPingsOncePerKeepalive", degradedIdleLinkPingsOncePerKeepalive},
	} {
		t.Run(w.name, func(t *testing.T) {
			t.Parallel()
			w.run(t)
		})
	}
}

// A healthy idle link must stay connected. A broker that answers a
// PINGREQ within microseconds (in-process, or a Mosquitto on the same host)
// used to have its PINGRESP read before the ping was on record, which left
// the ping outstanding for ever: the pinger fell silent and the client
// declared the link dead. Both brokers run side by side for the same 30 s.
func idleLinkStaysConnected(t *testing.T) {
	const ka, idle = time.Second, 30 * time.Second
	urls := map[string]string{"embedded": startEmbedded(t).URL()}
	if p := mosquittoBeside(t); p != nil {
		urls["mosquitto"] = p.URL()
	}
	// The race is per PINGREQ: several clients per broker make a lost
	// ping likely within the window on a build that has the bug.
	const perBroker = 3
	recs := map[string]*recorder{}
	clients := map[string]*Client{}
	for name, url := range urls {
		for i := range perBroker {
			id := fmt.Sprintf("%s-%d", name, i)
			c := newClient(t, WithBroker(url), WithKeepAlive(ka), WithConnectTimeout(time.Second), WithClientID("idle-"+id))
			recs[id] = record(c)
			clients[id] = c
			connect(t, c)
		}
	}
	time.Sleep(idle)
	for name, r := range recs {
		for _, ev := range r.all() {
			require.False(t, ev.To == StateDegraded || ev.To == StateReconnecting,
				"%s: a healthy idle link left connected: %+v", name, ev)
		}
		h := clients[name].Health()
		require.Equal(t, StateConnected, h.State, name)
		require.Positive(t, h.RTT, "%s: keepalive round trips were measured", name)
		t.Logf("%s: %d events in %v idle at keepalive %v, last RTT %v", name, len(r.all()), idle, ka, h.RTT)
	}
}

// packetCounter counts the packets of one kind that clients send through
// a proxy.
type packetCounter struct {
	kind    byte
	mu      sync.Mutex
	parsers map[int]*wire.Parser
	n       int
}

func (p *packetCounter) feed(conn int, b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ps := p.parsers[conn]
	if ps == nil {
		ps = &wire.Parser{}
		p.parsers[conn] = ps
	}
	ps.Feed(b, func(h wire.Header) {
		if h.Type == p.kind {
			p.n++
		}
	})
}

func (p *packetCounter) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// One keepalive owner per connection: an idle client sends at most one
// PINGREQ per keepalive period (paho's own pinger beside the monitor's
// used to make 2.25), counted on the wire.
func idleClientSendsOnePingPerKeepalive(t *testing.T) {
	const ka, watch = 2 * time.Second, 20 * time.Second
	targets := map[string]string{"embedded": startEmbedded(t).Addr()}
	if p := mosquittoBeside(t); p != nil {
		targets["mosquitto"] = p.Addr()
	}
	counters := map[string]*packetCounter{}
	recs := map[string]*recorder{}
	for name, addr := range targets {
		proxy, err := netproxy.Start(addr)
		require.NoError(t, err)
		t.Cleanup(func() { _ = proxy.Close() })
		pc := &packetCounter{kind: wire.PINGREQ, parsers: map[int]*wire.Parser{}}
		proxy.Tap(pc.feed)
		counters[name] = pc
		c := newClient(t, WithBroker(proxy.URL()), WithKeepAlive(ka))
		recs[name] = record(c)
		connect(t, c)
	}
	start := map[string]int{}
	for name, pc := range counters {
		start[name] = pc.count()
	}
	time.Sleep(watch)
	for name, pc := range counters {
		n := pc.count() - start[name]
		t.Logf("%s: %d PINGREQs in %v at keepalive %v", name, n, watch, ka)
		require.LessOrEqual(t, n, 11, "%s: more than one PINGREQ per keepalive while idle", name)
		require.GreaterOrEqual(t, n, 9, "%s: the client must still ping about once per keepalive", name)
		for _, ev := range recs[name].all() {
			require.NotEqual(t, StateReconnecting, ev.To, "%s: the idle link was dropped: %+v", name, ev)
		}
	}
}

// A link degraded by its round trip and otherwise idle keeps one PINGREQ
// per keepalive: the faster pings that measure a degraded link again are
// for a busy one.
func degradedIdleLinkPingsOncePerKeepalive(t *testing.T) {
	const ka, watch = 4 * time.Second, 12 * time.Second
	proxy, err := netproxy.Start(startEmbedded(t).Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	pings := &packetCounter{kind: wire.PINGREQ, parsers: map[int]*wire.Parser{}}
	proxy.Tap(pings.feed)
	proxy.DelayFromBroker(300 * time.Millisecond)
	c := newClient(t, WithBroker(proxy.URL()), WithKeepAlive(ka), WithDegradedRTT(100*time.Millisecond))
	rec := record(c)
	connect(t, c)
	rec.next(t, 2*ka, "degraded", to(StateDegraded))
	start := pings.count()
	time.Sleep(watch)
	n := pings.count() - start
	t.Logf("%d PINGREQs in %v, degraded and idle, keepalive %v", n, watch, ka)
	require.LessOrEqual(t, n, 4, "more than one PINGREQ per keepalive on an idle link")
}
