package steadymqtt

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/testsupport/netproxy"
)

func TestPublishAsyncResolvesOnAckInOrder(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	k := subscriber(t, b.URL(), "async/#")
	// The publisher alone goes offline: its path swallows everything.
	p, err := netproxy.Start(b.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	c := newClient(t, WithBroker(p.URL()), WithConnectTimeout(200*time.Millisecond),
		WithBackoff(NewFullJitterBackOff(10*time.Millisecond, 50*time.Millisecond)))
	connect(t, c)
	p.Blackhole(true)
	p.CutAll()
	require.Eventually(t, func() bool { return !c.State().Up() }, 5*time.Second, time.Millisecond)

	// A sampler's deadline is short; the message must outlive it.
	short, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	var ds []*Delivery
	for i := 0; i < 20; i++ {
		d := c.PublishAsync(short, "async/t", []byte(strconv.Itoa(i)), WithQoS(1), WithIdempotencyKey("k"+strconv.Itoa(i)))
		require.Equal(t, "k"+strconv.Itoa(i), d.Key())
		ds = append(ds, d)
	}
	require.Equal(t, 20, c.Health().Outbox)
	<-short.Done()
	// Nothing reaches the broker: nothing can have been acknowledged.
	for i, d := range ds {
		select {
		case <-d.Done():
			t.Fatalf("delivery %d done while offline: %v", i, d.Err())
		default:
		}
		require.NoError(t, d.Err(), "no outcome before Done")
	}

	p.Blackhole(false)
	for i, d := range ds {
		select {
		case <-d.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("delivery %d not done after the broker came back", i)
		}
		require.NoError(t, d.Err(), "delivery %d", i)
	}
	require.EqualValues(t, 20, c.Stats().Acknowledged[1])
	require.Eventually(t, func() bool { return k.n.Load() == 20 }, 5*time.Second, time.Millisecond)
	want := make([]string, 20)
	for i := range want {
		want[i] = strconv.Itoa(i)
	}
	require.Equal(t, want, k.payloads(), "sent in the order accepted")

	// A retry of an acknowledged key is answered from the window, at once.
	d := c.PublishAsync(t.Context(), "async/t", []byte("0"), WithQoS(1), WithIdempotencyKey("k0"))
	require.NoError(t, d.Wait(t.Context()))
	require.EqualValues(t, 1, c.Stats().Deduplicated)
}

func TestPublishAsyncRefusalsAreDoneAtOnce(t *testing.T) {
	leakCheck(t)
	c := newClient(t, WithBroker("tcp://127.0.0.1:1"), WithOutboxLimit(1, 1<<20))
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name string
		d    *Delivery
		want error
	}{
		{"invalid topic", c.PublishAsync(t.Context(), "a/+", nil, WithQoS(1)), ErrInvalidTopic},
		{"invalid option", c.PublishAsync(t.Context(), "a", nil, WithQoS(3)), ErrInvalidOption},
		{"QoS 0 offline", c.PublishAsync(t.Context(), "a", nil), ErrNotConnected},
		{"ended context queues nothing", c.PublishAsync(cancelled, "a", nil, WithQoS(1)), context.Canceled},
		{"accepted", c.PublishAsync(t.Context(), "a", nil, WithQoS(1)), nil},
		{"outbox full", c.PublishAsync(t.Context(), "a", nil, WithQoS(1)), ErrOutboxFull},
	}
	for _, tc := range cases {
		if tc.want == nil {
			select {
			case <-tc.d.Done():
				t.Fatalf("%s: done while offline", tc.name)
			default:
			}
			continue
		}
		select {
		case <-tc.d.Done():
		default:
			t.Fatalf("%s: not done at once", tc.name)
		}
		require.ErrorIs(t, tc.d.Err(), tc.want, tc.name)
	}
	require.Equal(t, 1, c.Health().Outbox)

	// Close settles what was accepted.
	accepted := cases[4].d
	err := c.Close(t.Context())
	require.ErrorIs(t, err, ErrNotDelivered)
	<-accepted.Done()
	require.ErrorIs(t, accepted.Err(), ErrNotDelivered)
	require.ErrorIs(t, c.PublishAsync(t.Context(), "a", nil, WithQoS(1)).Err(), ErrClosed)
}

func TestPublishAsyncQoS0(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	k := subscriber(t, b.URL(), "async0/#")
	c := newClient(t, WithBroker(b.URL()))
	connect(t, c)
	var ds []*Delivery
	for i := 0; i < 50; i++ {
		ds = append(ds, c.PublishAsync(t.Context(), "async0/t", []byte(strconv.Itoa(i))))
	}
	for _, d := range ds {
		require.NoError(t, d.Wait(t.Context()))
	}
	require.EqualValues(t, 50, c.Stats().Acknowledged[0])
	fence(t, c, "async0/fence")
	require.Eventually(t, func() bool { return k.has("fence") }, 5*time.Second, time.Millisecond)
	require.Len(t, k.payloads(), 51)
}
