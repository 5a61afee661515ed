package steadymqtt

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
	"github.com/steadymqtt/steadymqtt/internal/testsupport/netproxy"
)

// Links are not only up or down: these tests run the client through a
// proxy that throttles the uplink, delays the downlink, or freezes
// mid-transfer, and check that the keepalive judges a live link live and a
// dead one dead.

const uplink = 200_000 // bytes per second, an LTE uplink

// bigPayload is recognisable at the subscriber.
func bigPayload(n int) []byte {
	p := bytes.Repeat([]byte("steady"), n/6+1)[:n]
	copy(p, "BIG:")
	return p
}

// countBig counts the complete big messages a subscriber gets.
func countBig(t *testing.T, url, topic string, size int) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	sub := newClient(t, WithBroker(url))
	require.NoError(t, sub.Subscribe(t.Context(), topic, 1, func(m Message) {
		if len(m.Payload) == size && bytes.HasPrefix(m.Payload, []byte("BIG:")) {
			n.Add(1)
		}
	}))
	connect(t, sub)
	return &n
}

// A 5 MB message through a 200 KB/s uplink takes 25 s, far longer than the
// 2 s keepalive: while the broker's side keeps acknowledging the bytes,
// the link is alive. (Mosquitto counts a packet still arriving as traffic;
// the embedded broker gives a packet 1.5 × keepalive to arrive whole and
// drops the client otherwise, which TestSlowUploadTheBrokerRefuses covers.)
func slowUploadIsNotTakenForADeadLink(t *testing.T) {
	const size, ka = 5 << 20, 2 * time.Second
	m := startMosquitto(t, broker.MosquittoConfig{})
	proxy, err := netproxy.Start(m.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	got := countBig(t, m.URL(), "big/t", size)

	c := newClient(t, WithBroker(proxy.URL()), WithKeepAlive(ka), WithBackoff(backoff.NewConstantBackOff(retry)))
	rec := record(c)
	connect(t, c)
	proxy.Throttle(uplink)
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	require.NoError(t, c.Publish(ctx, "big/t", bigPayload(size), WithQoS(1)))
	t.Logf("5 MB at %d B/s, keepalive %v: acknowledged after %v", uplink, ka, time.Since(start).Round(time.Millisecond))
	require.Eventually(t, func() bool { return got.Load() == 1 }, 5*time.Second, 10*time.Millisecond)
	for _, ev := range rec.all() {
		require.NotEqual(t, StateReconnecting, ev.To, "a live upload was taken for a dead link: %+v", ev)
		require.NotEqual(t, StateDegraded, ev.To, "degraded while the peer acknowledged every byte: %+v", ev)
	}
	require.EqualValues(t, 0, c.Stats().Redelivered)
	fence(t, c, "big/t")
	require.EqualValues(t, 1, got.Load(), "delivered once")
}

// The embedded broker (mochi) drops a client whose packet does not arrive
// whole within 1.5 × keepalive. The client must not resend such a message
// for ever: the broker's closing is a strike, and after three the message
// leaves the outbox as poison. The closing is the broker's, never the
// client's own keepalive.
func TestSlowUploadTheBrokerRefuses(t *testing.T) {
	leakCheck(t)
	const size, ka = 2 << 20, 2 * time.Second
	b := startEmbedded(t)
	proxy, err := netproxy.Start(b.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	c := newClient(t, WithBroker(proxy.URL()), WithKeepAlive(ka), WithBackoff(backoff.NewConstantBackOff(retry)))
	rec := record(c)
	connect(t, c)
	proxy.Throttle(uplink)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	err = c.Publish(ctx, "big/t", bigPayload(size), WithQoS(1))
	require.ErrorIs(t, err, ErrPoisonMessage)
	for _, ev := range rec.all() {
		if ev.To == StateReconnecting && ev.From != ev.To {
			require.False(t, errors.Is(ev.Err, ErrKeepaliveTimeout), "the client closed a live upload itself: %v", ev.Err)
		}
	}
}

// The same upload, and then the path dies mid-transfer: nothing is
// acknowledged any more, and the loss is reported within 1.5 × keepalive.
// Once the path heals, the message is delivered, once.
func TestUploadFrozenMidTransferIsDetected(t *testing.T) {
	leakCheck(t)
	const size, ka = 5 << 20, 2 * time.Second
	m := startMosquitto(t, broker.MosquittoConfig{})
	proxy, err := netproxy.Start(m.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	var sent atomic.Int64
	proxy.Tap(func(_ int, b []byte) { sent.Add(int64(len(b))) })
	got := countBig(t, m.URL(), "big/t", size)

	c := newClient(t, WithBroker(proxy.URL()), WithKeepAlive(ka), WithConnectTimeout(2*time.Second),
		WithBackoff(backoff.NewConstantBackOff(retry)))
	rec := record(c)
	connect(t, c)
	proxy.Throttle(uplink)
	done := make(chan error, 1)
	go func() { done <- c.Publish(t.Context(), "big/t", bigPayload(size), WithQoS(1)) }()
	// More behind it: the sender is held in paho's hand-off while the big
	// one is written, which must not delay the loss report.
	behind := make(chan error, 5)
	for i := range 5 {
		go func() { behind <- c.Publish(t.Context(), "big/behind", []byte{byte(i)}, WithQoS(1)) }()
	}

	require.Eventually(t, func() bool { return sent.Load() > 1<<20 }, 20*time.Second, 10*time.Millisecond)
	proxy.Freeze(true)
	frozen := time.Now()
	lost := rec.next(t, 2*ka, "reconnecting", to(StateReconnecting))
	require.ErrorIs(t, lost.Err, ErrKeepaliveTimeout)
	took := lost.Time.Sub(frozen)
	t.Logf("frozen after %d bytes: loss reported %v later (keepalive %v)", sent.Load(), took.Round(time.Millisecond), ka)
	require.LessOrEqual(t, took, ka*3/2, "a dead path must be left within 1.5 × keepalive")

	proxy.Throttle(0)
	proxy.Freeze(false)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("the message was not delivered after the path healed")
	}
	for range 5 {
		require.NoError(t, <-behind)
	}
	require.Eventually(t, func() bool { return got.Load() >= 1 }, 5*time.Second, 10*time.Millisecond)
	fence(t, c, "big/t")
	require.EqualValues(t, 1, got.Load(), "delivered once")
}

// proxied is a broker reached through a proxy.
type proxied struct {
	name  string
	proxy *netproxy.Proxy
}

func proxiedBrokers(t *testing.T) []proxied {
	t.Helper()
	var out []proxied
	add := func(name, addr string) {
		p, err := netproxy.Start(addr)
		require.NoError(t, err)
		t.Cleanup(func() { _ = p.Close() })
		out = append(out, proxied{name: name, proxy: p})
	}
	add("embedded", startEmbedded(t).Addr())
	if m := mosquittoBeside(t); m != nil {
		add("mosquitto", m.Addr())
	}
	return out
}

// A link degraded by a slow round trip that recovers while messages flow
// is seen to recover: the monitor measures a degraded link again whatever
// the traffic, where it used to wait for an idle half keepalive that a
// busy link never has.
func TestDegradedClearsUnderTraffic(t *testing.T) {
	leakCheck(t)
	const ka, threshold = time.Second, 20 * time.Millisecond
	for _, b := range proxiedBrokers(t) {
		t.Run(b.name, func(t *testing.T) {
			c := newClient(t, WithBroker(b.proxy.URL()), WithKeepAlive(ka), WithDegradedRTT(threshold))
			rec := record(c)
			connect(t, c)
			b.proxy.DelayFromBroker(60 * time.Millisecond)
			rec.next(t, 5*time.Second, "degraded", to(StateDegraded))

			stop := make(chan struct{})
			flowing := make(chan struct{})
			go func() {
				defer close(flowing)
				tick := time.NewTicker(20 * time.Millisecond) // 50 messages/s
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						_ = c.Publish(t.Context(), "flow/t", []byte("x"), WithQoS(1))
					}
				}
			}()
			t.Cleanup(func() { close(stop); <-flowing })
			time.Sleep(ka) // traffic flows on the slow link for a while first
			b.proxy.DelayFromBroker(0)
			healed := time.Now()
			back := rec.next(t, 5*time.Second, "connected again", to(StateConnected))
			took := back.Time.Sub(healed)
			t.Logf("degraded cleared %v after the delay went, under 50 msg/s", took.Round(time.Millisecond))
			require.Less(t, took, 1500*time.Millisecond)
			require.Less(t, c.Health().RTT, threshold)
		})
	}
}

// A broker that answers every ping, slowly, is not dropped: a round trip
// of 0.4 × keepalive stays within what the keepalive tolerates.
func slowBrokerIsNotDropped(t *testing.T) {
	const ka, watch = 2 * time.Second, 20 * time.Second
	type run struct {
		name string
		c    *Client
		rec  *recorder
	}
	var runs []run
	for _, b := range proxiedBrokers(t) { // side by side, watched together
		b.proxy.DelayFromBroker(ka * 4 / 10)
		c := newClient(t, WithBroker(b.proxy.URL()), WithKeepAlive(ka), WithConnectTimeout(5*time.Second))
		runs = append(runs, run{b.name, c, record(c)})
		connect(t, c)
	}
	time.Sleep(watch)
	for _, r := range runs {
		for _, ev := range r.rec.all() {
			require.NotEqual(t, StateReconnecting, ev.To, "%s: a slow but answering broker was dropped: %+v", r.name, ev)
		}
		require.GreaterOrEqual(t, r.c.Health().RTT, ka*4/10, "%s: the round trip was measured", r.name)
	}
}

// Subscription changes made while a long upload holds paho's writer are
// made, not dropped: paho refuses the hand-off while its writer is busy,
// and the request goes again while the connection lasts.
func TestSubscriptionChangesDuringAnUpload(t *testing.T) {
	leakCheck(t)
	m := startMosquitto(t, broker.MosquittoConfig{})
	proxy, err := netproxy.Start(m.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	got := &received{n: map[string]int{}}
	c := newClient(t, WithBroker(proxy.URL()), WithKeepAlive(10*time.Second), WithBackoff(backoff.NewConstantBackOff(retry)))
	rec := record(c)
	for _, f := range []string{"old/x", "fence/t"} {
		require.NoError(t, c.Subscribe(t.Context(), f, 1, got.add))
	}
	connect(t, c)
	// Faster than an LTE uplink but larger than the socket buffers take,
	// so that paho's writer is held in its write for seconds.
	proxy.Throttle(1 << 20)
	uploaded := make(chan error, 1)
	go func() { uploaded <- c.Publish(t.Context(), "big/t", bigPayload(8<<20), WithQoS(1)) }()
	require.Eventually(t, func() bool { return c.Stats().Outbox == 1 }, time.Second, time.Millisecond)
	time.Sleep(time.Second) // the buffers are full: the writer waits
	var wg sync.WaitGroup
	for _, f := range []string{"new/x", "new/y"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, c.Subscribe(t.Context(), f, 1, got.add))
		}()
	}
	require.NoError(t, c.Unsubscribe(t.Context(), "old/x"))
	wg.Wait()
	require.NoError(t, <-uploaded)
	proxy.Throttle(0)
	for _, f := range []string{"new/x", "new/y"} {
		_, active := c.GrantedQoS(f)
		require.True(t, active, "%s: Subscribe returned nil, so it is made", f)
	}
	publishAllThenFence(t, m.URL(), []string{"new/x", "new/y", "old/x"}, "fence/t", got)
	require.Equal(t, 1, got.count("new/x"))
	require.Equal(t, 1, got.count("new/y"))
	require.Zero(t, got.count("old/x"))
	require.Zero(t, c.Stats().Unrouted, "the broker still holds a filter Unsubscribe said was gone")
	for _, ev := range rec.all() {
		require.NotEqual(t, StateReconnecting, ev.To, "the upload's link was lost: %+v", ev)
	}
}
