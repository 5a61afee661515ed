package steadymqtt

import (
	"context"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/testsupport/netproxy"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// publishResult is what a Publish returned, with how many PUBACKs the
// proxy had forwarded to the client at that moment.
type publishResult struct {
	err      error
	pubacks  int
	returned time.Time
}

func publishAsync(ctx context.Context, c *Client, proxy *netproxy.Proxy, topic, key string) <-chan publishResult {
	out := make(chan publishResult, 1)
	go func() {
		err := c.Publish(ctx, topic, []byte(key), WithQoS(1), WithIdempotencyKey(key))
		fw, _ := proxy.FromBroker(wire.PUBACK)
		out <- publishResult{err: err, pubacks: fw, returned: time.Now()}
	}()
	return out
}

func requirePending(t *testing.T, res <-chan publishResult, what string) {
	t.Helper()
	select {
	case r := <-res:
		t.Fatalf("%s returned %v while no PUBACK could reach the client (%d PUBACKs forwarded)", what, r.err, r.pubacks)
	default:
	}
}

// A QoS 1 Publish reports success only when a PUBACK reached the client:
// the broker acknowledging is not enough when the acknowledgement is lost
// on the way. The proxy drops every PUBACK from the broker (and nothing
// else); the publish stays pending, or ends with its context's error, until
// the link is cut, the client reconnects, the outbox sends the message
// again and that PUBACK gets through.
func TestQoS1PublishSucceedsOnlyAfterAPubackReachedTheClient(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	proxy, err := netproxy.Start(b.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })

	// Packet identifiers of the PUBACKs the proxy dropped, in order.
	dropped := make(chan uint16, 64)
	proxy.ObserveFromBroker(func(_ int, h wire.Header, isDropped bool) {
		if h.Type == wire.PUBACK && isDropped {
			dropped <- uint16(h.Head[0])<<8 | uint16(h.Head[1])
		}
	})
	proxy.DropFromBroker(func(pt byte) bool { return pt == wire.PUBACK })
	waitDropped := func(what string) uint16 {
		t.Helper()
		select {
		case id := <-dropped:
			return id
		case <-time.After(5 * time.Second):
			t.Fatalf("the broker's PUBACK for %s never reached the proxy", what)
			return 0
		}
	}

	c := newClient(t, WithBroker(proxy.URL()), WithKeepAlive(2*time.Second),
		WithBackoff(backoff.NewConstantBackOff(100*time.Millisecond)))
	rec := record(c)
	connect(t, c)
	rec.next(t, 5*time.Second, "connected", to(StateConnected))

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	// a waits throughout; b gives up while its acknowledgement is lost and
	// is retried with its key later.
	a := publishAsync(ctx, c, proxy, "ack/a", "key-a")
	idA := waitDropped("a")
	ctxB, cancelB := context.WithCancel(ctx)
	b1 := publishAsync(ctxB, c, proxy, "ack/b", "key-b")
	idB := waitDropped("b")
	require.NotEqual(t, idA, idB)

	// The broker answers a SUBSCRIBE after the PUBLISHes before it, and
	// the proxy forwards in order: once the SUBACK is in, the client has
	// read past both places where a PUBACK would have been.
	require.NoError(t, c.Subscribe(ctx, "ack/barrier", 0, func(Message) {}))
	requirePending(t, a, "Publish a")
	requirePending(t, b1, "Publish b")
	require.Equal(t, 2, c.Health().Outbox, "both messages wait for an acknowledgement")
	fw, dr := proxy.FromBroker(wire.PUBACK)
	require.Equal(t, 0, fw, "no PUBACK went to the client")
	require.Equal(t, 2, dr)

	cancelB()
	select {
	case r := <-b1:
		require.ErrorIs(t, r.err, context.Canceled, "b ends with its context's error, not with success")
		require.Zero(t, r.pubacks)
	case <-time.After(5 * time.Second):
		t.Fatal("Publish b did not end when its context did")
	}
	requirePending(t, a, "Publish a")

	// The link is cut; PUBACKs go through again from now on.
	proxy.DropFromBroker(nil)
	cutAt := time.Now()
	proxy.CutAll()
	rec.next(t, 5*time.Second, "reconnecting after the cut", to(StateReconnecting))
	rec.next(t, 10*time.Second, "connected again", to(StateConnected))

	b2 := publishAsync(ctx, c, proxy, "ack/b", "key-b") // the retry joins the queued message or finds its key settled
	for name, res := range map[string]<-chan publishResult{"a": a, "b (retry)": b2} {
		select {
		case r := <-res:
			require.NoError(t, r.err, "Publish %s after the reconnect", name)
			require.GreaterOrEqual(t, r.pubacks, 1, "Publish %s returned nil before any PUBACK reached the client", name)
			require.True(t, r.returned.After(cutAt), "Publish %s returned before the link was cut", name)
		case <-time.After(10 * time.Second):
			t.Fatalf("Publish %s did not succeed after the reconnect", name)
		}
	}
	// Each message needed a PUBACK of its own, on the new connection.
	fw, dr = proxy.FromBroker(wire.PUBACK)
	require.GreaterOrEqual(t, fw, 2)
	require.Equal(t, 2, dr, "nothing was dropped after the filter went")
	require.Equal(t, 0, c.Health().Outbox)
	require.Len(t, dropped, 0)
}

// paho completes a publish token on any acknowledgement that carries its
// packet identifier, a SUBACK too (paho #563: tokens that complete without
// a PUBACK). The proxy turns each PUBACK into a SUBACK with the same
// identifier: paho's token completes without error, yet no PUBACK crossed
// the socket, so Publish must not return nil. This is the case that the
// ack tracker's check in awaitAck exists for.
func TestQoS1PublishIgnoresATokenCompletedWithoutAPuback(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	proxy, err := netproxy.Start(b.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })

	replaced := make(chan uint16, 64)
	proxy.ObserveFromBroker(func(_ int, h wire.Header, isReplaced bool) {
		if h.Type == wire.PUBACK && isReplaced {
			replaced <- uint16(h.Head[0])<<8 | uint16(h.Head[1])
		}
	})
	proxy.ReplaceFromBroker(func(h wire.Header, pkt []byte) []byte {
		if h.Type != wire.PUBACK || h.Len != 2 {
			return pkt
		}
		// SUBACK, remaining length 3: the PUBACK's packet identifier and
		// one return code.
		return []byte{wire.SUBACK << 4, 3, pkt[2], pkt[3], 0}
	})

	c := newClient(t, WithBroker(proxy.URL()), WithKeepAlive(2*time.Second),
		WithBackoff(backoff.NewConstantBackOff(100*time.Millisecond)),
		WithProtocol(ProtocolV311)) // paho.mqtt.golang's tokens; paho.golang answers on the PUBACK itself
	rec := record(c)
	connect(t, c)
	rec.next(t, 5*time.Second, "connected", to(StateConnected))

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	a := publishAsync(ctx, c, proxy, "ack/a", "key-a")
	select {
	case <-replaced:
	case <-time.After(5 * time.Second):
		t.Fatal("the broker's PUBACK never reached the proxy")
	}
	// Past the forged SUBACK: the client has read it, and paho completed
	// the publish token on it.
	require.NoError(t, c.Subscribe(ctx, "ack/barrier", 0, func(Message) {}))
	requirePending(t, a, "Publish a")

	proxy.ReplaceFromBroker(nil)
	cutAt := time.Now()
	proxy.CutAll()
	rec.next(t, 5*time.Second, "reconnecting after the cut", to(StateReconnecting))
	rec.next(t, 10*time.Second, "connected again", to(StateConnected))
	select {
	case r := <-a:
		require.NoError(t, r.err, "Publish after the reconnect")
		require.GreaterOrEqual(t, r.pubacks, 1, "Publish returned nil before any PUBACK reached the client")
		require.True(t, r.returned.After(cutAt), "Publish returned before the link was cut")
	case <-time.After(10 * time.Second):
		t.Fatal("Publish did not succeed after the reconnect")
	}
	_, dr := proxy.FromBroker(wire.PUBACK)
	require.Equal(t, 1, dr, "one PUBACK was replaced")
}
