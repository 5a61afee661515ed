package steadymqtt

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
	"github.com/steadymqtt/steadymqtt/internal/testsupport/netproxy"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// collector subscribes a second client and keeps what it receives.
type collector struct {
	mu   sync.Mutex
	msgs []Message
	n    atomic.Int64
}

func (k *collector) add(m Message) {
	k.mu.Lock()
	k.msgs = append(k.msgs, m)
	k.mu.Unlock()
	k.n.Add(1)
}

func (k *collector) payloads() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]string, len(k.msgs))
	for i, m := range k.msgs {
		out[i] = string(m.Payload)
	}
	return out
}

// fence publishes a marker at QoS 1 and returns once the broker
// acknowledged it. A broker handles one connection's PUBLISH packets in
// order, so whatever c sent before the marker has been handled by then:
// a check that nothing more was sent needs no sleep.
func fence(t *testing.T, c *Client, topic string) {
	t.Helper()
	require.NoError(t, c.Publish(t.Context(), topic, []byte("fence"), WithQoS(1)))
}

// has reports whether the collector received payload.
func (k *collector) has(payload string) bool {
	for _, p := range k.payloads() {
		if p == payload {
			return true
		}
	}
	return false
}

func subscriber(t *testing.T, url, filter string, opts ...Option) *collector {
	t.Helper()
	k := &collector{}
	c := newClient(t, append([]Option{WithBroker(url)}, opts...)...)
	require.NoError(t, c.Subscribe(t.Context(), filter, 1, k.add))
	connect(t, c)
	return k
}

func TestPublishWaitsInTheOutboxWhileOffline(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	k := subscriber(t, b.URL(), "offline/#")
	c := newClient(t, WithBroker(b.URL()))

	// Before Connect the message waits; Publish returns once acknowledged.
	errc := make(chan error, 1)
	go func() { errc <- c.Publish(context.Background(), "offline/a", []byte("queued"), WithQoS(1)) }()
	require.Eventually(t, func() bool { return c.Health().Outbox == 1 }, time.Second, 5*time.Millisecond)
	connect(t, c)
	require.NoError(t, <-errc)
	require.Eventually(t, func() bool { return k.n.Load() == 1 }, 5*time.Second, 10*time.Millisecond)
	require.Zero(t, c.Health().Outbox)
	s := c.Stats()
	require.EqualValues(t, 1, s.Published[1])
	require.EqualValues(t, 1, s.Acknowledged[1])
}

func TestQoS0Offline(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	k := subscriber(t, b.URL(), "q0/#")

	c := newClient(t, WithBroker(b.URL()))
	require.ErrorIs(t, c.Publish(t.Context(), "q0/a", []byte("x")), ErrNotConnected)
	require.EqualValues(t, 1, c.Stats().Dropped[0], "a refused QoS 0 message is counted")

	queued := newClient(t, WithBroker(b.URL()), WithQueueQoS0())
	errc := make(chan error, 1)
	go func() { errc <- queued.Publish(context.Background(), "q0/b", []byte("kept")) }()
	require.Eventually(t, func() bool { return queued.Health().Outbox == 1 }, time.Second, 5*time.Millisecond)
	connect(t, queued)
	require.NoError(t, <-errc)
	require.Eventually(t, func() bool { return k.n.Load() == 1 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, []string{"kept"}, k.payloads())
}

func TestReplayKeepsOrder(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	k := subscriber(t, b.URL(), "order/#")
	c := newClient(t, WithBroker(b.URL()), WithInFlight(4))
	const n = 50
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, c.Publish(context.Background(), "order/t", []byte(strconv.Itoa(i)), WithQoS(1)))
		}()
		// Accepted one after the other, so the outbox order is 0..n-1.
		require.Eventually(t, func() bool { return c.Health().Outbox == i+1 }, time.Second, time.Millisecond)
	}
	connect(t, c)
	wg.Wait()
	require.Eventually(t, func() bool { return k.n.Load() == n }, 5*time.Second, 10*time.Millisecond)
	for i, p := range k.payloads() {
		require.Equal(t, strconv.Itoa(i), p)
	}
}

func TestRetryAfterContextEndDoesNotSendTwice(t *testing.T) {
	leakCheck(t)
	count := &broker.CountPublishes{}
	b := startEmbedded(t, broker.WithHook(count))
	c := newClient(t, WithBroker(b.URL()), WithBackoff(backoff.NewConstantBackOff(retry)))
	connect(t, c)
	require.NoError(t, b.Stop())
	require.Eventually(t, func() bool { return c.State() == StateReconnecting }, 5*time.Second, 5*time.Millisecond)

	// The application gives up waiting, then retries with the same key.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := c.Publish(ctx, "retry/t", []byte("once"), WithQoS(1), WithIdempotencyKey("order-17"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Equal(t, 1, c.Health().Outbox, "the message stays queued")

	require.NoError(t, b.Start())
	require.NoError(t, c.Publish(t.Context(), "retry/t", []byte("once"), WithQoS(1), WithIdempotencyKey("order-17")))
	// Acknowledged now; within the window, a third call sends nothing.
	require.NoError(t, c.Publish(t.Context(), "retry/t", []byte("once"), WithQoS(1), WithIdempotencyKey("order-17")))
	fence(t, c, "retry/t")
	require.Equal(t, 1, count.Count("retry/t", "once"))
	require.EqualValues(t, 2, c.Stats().Deduplicated)
}

func TestConcurrentCallersWithOneKeyCauseOneSend(t *testing.T) {
	leakCheck(t)
	count := &broker.CountPublishes{}
	b := startEmbedded(t, broker.WithHook(count))
	c := newClient(t, WithBroker(b.URL()))
	connect(t, c)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, c.Publish(context.Background(), "dedupe/t", []byte("one"), WithQoS(1), WithIdempotencyKey("k")))
		}()
	}
	wg.Wait()
	s := c.Stats()
	fence(t, c, "dedupe/t")
	require.Equal(t, 1, count.Count("dedupe/t", "one"))
	require.EqualValues(t, 1, s.Published[1])
	require.EqualValues(t, 19, s.Deduplicated)
}

func TestOutboxFull(t *testing.T) {
	for _, dropOldest := range []bool{false, true} {
		t.Run(fmt.Sprintf("dropOldest=%v", dropOldest), func(t *testing.T) {
			leakCheck(t)
			opts := []Option{WithBroker("tcp://127.0.0.1:1"), WithOutboxLimit(3, 1<<20)}
			if dropOldest {
				opts = append(opts, WithDropOldest())
			}
			c := newClient(t, opts...)
			rec := record(c)
			results := make([]chan error, 3)
			for i := range results {
				results[i] = make(chan error, 1)
				go func() { results[i] <- c.Publish(context.Background(), "full/t", []byte{byte(i)}, WithQoS(1)) }()
				require.Eventually(t, func() bool { return c.Health().Outbox == i+1 }, time.Second, time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			err := c.Publish(ctx, "full/t", []byte{3}, WithQoS(1))
			if !dropOldest {
				require.ErrorIs(t, err, ErrOutboxFull)
				require.Equal(t, 3, c.Health().Outbox)
				require.Zero(t, c.Stats().Dropped[1])
				return
			}
			require.ErrorIs(t, err, context.DeadlineExceeded, "accepted, waiting")
			require.ErrorIs(t, <-results[0], ErrDropped)
			ev := rec.next(t, time.Second, "dropped", func(ev Event) bool { return ev.Kind == KindMessageDropped })
			require.Equal(t, "full/t", ev.Topic)
			require.ErrorIs(t, ev.Err, ErrDropped)
			require.EqualValues(t, 1, c.Stats().Dropped[1])
			require.Equal(t, 3, c.Health().Outbox)
		})
	}
}

func TestCloseReportsWhatWasNotDelivered(t *testing.T) {
	leakCheck(t)
	c, err := New(WithBroker("tcp://127.0.0.1:1"))
	require.NoError(t, err)
	errc := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() { errc <- c.Publish(context.Background(), "unsent/t", []byte("x"), WithQoS(1)) }()
	}
	require.Eventually(t, func() bool { return c.Health().Outbox == 2 }, time.Second, time.Millisecond)
	err = c.Close(t.Context())
	require.ErrorIs(t, err, ErrNotDelivered)
	require.Contains(t, err.Error(), "2 messages")
	require.ErrorIs(t, <-errc, ErrNotDelivered)
	require.ErrorIs(t, <-errc, ErrNotDelivered)
}

func TestCloseFlushesTheOutbox(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	k := subscriber(t, b.URL(), "flush/#")
	c := newClient(t, WithBroker(b.URL()), WithInFlight(1))
	connect(t, c)
	for i := 0; i < 20; i++ {
		go func() { _ = c.Publish(context.Background(), "flush/t", []byte("m"), WithQoS(1)) }()
	}
	require.Eventually(t, func() bool { return c.Stats().Published[1] == 20 }, time.Second, time.Millisecond)
	require.NoError(t, c.Close(t.Context()))
	require.Eventually(t, func() bool { return k.n.Load() == 20 }, 5*time.Second, 10*time.Millisecond)
}

func TestPoisonMessageLeavesTheOutbox(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t, broker.WithHook(&broker.KickOnTopic{Topic: "poison"}))
	k := subscriber(t, b.URL(), "fine/#")
	c := newClient(t, WithBroker(b.URL()), WithBackoff(backoff.NewConstantBackOff(20*time.Millisecond)))
	rec := record(c)
	// Queued offline: the poison message first, good ones behind it, so
	// that they are in flight with it each time the broker hangs up.
	errs := make([]chan error, 6)
	for i := range errs {
		errs[i] = make(chan error, 1)
		topic := "fine/" + strconv.Itoa(i)
		if i == 0 {
			topic = "poison"
		}
		go func() {
			errs[i] <- c.Publish(context.Background(), topic, []byte("m"), WithQoS(1), WithIdempotencyKey(topic))
		}()
		require.Eventually(t, func() bool { return c.Health().Outbox == i+1 }, time.Second, time.Millisecond)
	}
	connect(t, c)
	require.ErrorIs(t, <-errs[0], ErrPoisonMessage)
	for i := 1; i < len(errs); i++ {
		require.NoError(t, <-errs[i], "message %d behind the poison one", i)
	}
	ev := rec.next(t, time.Second, "poison event", func(ev Event) bool { return ev.Kind == KindPoisonMessage })
	require.Equal(t, "poison", ev.Topic)
	// The poison verdict comes before the manager reports that last loss;
	// count the losses once the client is back.
	rec.next(t, 5*time.Second, "connected after the poison message left", to(StateConnected))
	require.Eventually(t, func() bool { return k.n.Load() >= 5 }, 5*time.Second, 10*time.Millisecond)

	// The connection settles; a retry of the poison message gets the same
	// answer without another send.
	kicks := 0
	for _, e := range rec.all() {
		if e.Kind == KindState && e.To == StateReconnecting && e.From != e.To { // state changes, not the poison notice
			kicks++
		}
	}
	require.ErrorIs(t, c.Publish(t.Context(), "poison", []byte("m"), WithQoS(1), WithIdempotencyKey("poison")), ErrPoisonMessage)
	require.NoError(t, c.Publish(t.Context(), "fine/after", []byte("good"), WithQoS(1)))
	require.Equal(t, StateConnected, c.State())
	after := 0
	for _, e := range rec.all() {
		if e.Kind == KindState && e.To == StateReconnecting && e.From != e.To { // state changes, not the poison notice
			after++
		}
	}
	require.Equal(t, kicks, after, "the retry caused another kick")
	require.Equal(t, DefaultPoisonAfter, kicks)
	require.EqualValues(t, 1, c.Stats().Dropped[1])
}

func TestIdempotencyKeyConflict(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	c := newClient(t, WithBroker(b.URL()))
	connect(t, c)
	require.NoError(t, c.Publish(t.Context(), "t", []byte("first"), WithQoS(1), WithIdempotencyKey("k")))
	err := c.Publish(t.Context(), "t", []byte("second"), WithQoS(1), WithIdempotencyKey("k"))
	require.ErrorIs(t, err, ErrIdempotencyConflict)
}

func TestQueuedPayloadIsCopied(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	k := subscriber(t, b.URL(), "copy/t")
	c := newClient(t, WithBroker(b.URL()))
	buf := []byte("original")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, c.Publish(ctx, "copy/t", buf, WithQoS(1)), context.DeadlineExceeded)
	copy(buf, "REUSED!!") // the application reuses its buffer
	connect(t, c)
	require.Eventually(t, func() bool { return k.n.Load() == 1 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, []string{"original"}, k.payloads())
}

func TestWillAndRetained(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	proxy, err := netproxy.Start(b.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })

	// The retained message reaches a subscriber that comes later.
	pub := newClient(t, WithBroker(b.URL()))
	connect(t, pub)
	require.NoError(t, pub.Publish(t.Context(), "status/gw1", []byte("online"), WithQoS(1), WithRetain()))
	late := &collector{}
	c := newClient(t, WithBroker(b.URL()))
	require.NoError(t, c.Subscribe(t.Context(), "status/#", 1, late.add))
	connect(t, c)
	require.Eventually(t, func() bool { return late.n.Load() == 1 }, 5*time.Second, 10*time.Millisecond)
	late.mu.Lock()
	require.True(t, late.msgs[0].Retained)
	late.mu.Unlock()

	// A client that vanishes without DISCONNECT leaves its will.
	gw := newClient(t, WithBroker(proxy.URL()), WithClientID("gw2"), WithWill("status/gw2", []byte("gone"), 1, false))
	connect(t, gw)
	require.NoError(t, proxy.Close()) // the link dies under the client
	require.Eventually(t, func() bool {
		for _, p := range late.payloads() {
			if p == "gone" {
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond, "the broker did not publish the will")
}

// A message that cannot be one MQTT packet is refused at once, before it is
// queued, copied or sent, at every QoS; and one over WithMaxPacketSize the
// same way.
func TestOversizePayloadIsRefusedAtOnce(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	proxy, err := netproxy.Start(b.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	publishes := &packetCounter{kind: wire.PUBLISH, parsers: map[int]*wire.Parser{}}
	proxy.Tap(publishes.feed)
	c := newClient(t, WithBroker(proxy.URL()), WithOutboxLimit(10, 1<<30), WithMaxPacketSize(1<<20))
	connect(t, c)

	huge := make([]byte, 300<<20)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, q := range []byte{0, 1, 2} {
		start := time.Now()
		err := c.Publish(t.Context(), "big/t", huge, WithQoS(q))
		require.ErrorIs(t, err, ErrPayloadTooLarge, "QoS %d", q)
		require.Less(t, time.Since(start), 100*time.Millisecond, "QoS %d: refused at once", q)
	}
	// Over the configured packet limit, though MQTT could carry it.
	err = c.Publish(t.Context(), "big/t", huge[:2<<20], WithQoS(1))
	require.ErrorIs(t, err, ErrPayloadTooLarge)
	require.Contains(t, err.Error(), "WithMaxPacketSize")
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(huge)
	require.Less(t, int64(after.HeapAlloc)-int64(before.HeapAlloc), int64(8<<20), "the refused payload was copied and kept")

	fence(t, c, "big/t")
	require.Equal(t, 1, publishes.count(), "only the fence reached the wire")
	require.Zero(t, c.Stats().Outbox)
}
