package steadymqtt

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/steadymqtt/steadymqtt/mqtttest"
)

func TestCloseErrorCountsWhatWasLeft(t *testing.T) {
	for _, durable := range []bool{false, true} {
		name := map[bool]string{false: "memory", true: "durable"}[durable]
		t.Run(name, func(t *testing.T) {
			leakCheck(t)
			dir := t.TempDir()
			opts := []Option{WithBroker("tcp://127.0.0.1:1")}
			if durable {
				opts = append(opts, WithDurableOutbox(dir))
			}
			c, err := New(opts...)
			require.NoError(t, err)
			var ds []*Delivery
			for i := 0; i < 3; i++ {
				ds = append(ds, c.PublishAsync(t.Context(), "left/t", []byte("x"), WithQoS(1+byte(i%2))))
			}
			require.Equal(t, 3, c.Stats().Outbox)
			require.NotZero(t, c.Stats().OutboxBytes)

			err = c.Close(t.Context())
			var ce *CloseError
			require.True(t, errors.As(err, &ce), "%v", err)
			require.ErrorIs(t, err, ErrNotDelivered)
			require.Equal(t, 3, ce.NotDelivered)
			require.Equal(t, durable, ce.Durable)
			for _, d := range ds {
				require.ErrorIs(t, d.Err(), ErrNotDelivered)
			}
			s := c.Stats()
			require.Zero(t, s.Outbox, "nothing is held after Close")
			require.Zero(t, s.OutboxBytes, "nothing is held after Close")
			if durable {
				require.Equal(t, [3]uint64{}, s.Failed, "on disk, not failed")
			} else {
				require.Equal(t, [3]uint64{0, 2, 1}, s.Failed)
			}
			if !durable {
				return
			}
			// The next start says what it found on disk.
			core, logs := observer.New(zap.InfoLevel)
			again, err := New(WithBroker("tcp://127.0.0.1:1"), WithDurableOutbox(dir), WithLogger(zap.New(core)))
			require.NoError(t, err)
			require.Equal(t, 3, again.Stats().Outbox)
			found := logs.FilterMessageSnippet("recovered").All()
			require.Len(t, found, 1)
			require.EqualValues(t, 3, found[0].ContextMap()["messages"])
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			require.ErrorIs(t, again.Close(ctx), ErrNotDelivered)
		})
	}
}

func TestCloseWithNothingLeftIsNil(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	c := newClient(t, WithBroker(b.URL()))
	connect(t, c)
	d := c.PublishAsync(t.Context(), "ok/t", []byte("x"), WithQoS(1))
	require.NoError(t, c.Close(t.Context()))
	require.NoError(t, d.Err(), "Close flushed it")
	require.EqualValues(t, 1, c.Stats().Acknowledged[1])
}

// A shutdown with a deadline on a link that stopped answering must still
// learn what was left: the flush leaves Close time to say it.
func TestCloseWithADeadlineOnAFrozenLinkCounts(t *testing.T) {
	leakCheck(t)
	b := mqtttest.NewBroker(t)
	c, err := New(WithBroker(b.URL()), WithKeepAlive(30*time.Second))
	require.NoError(t, err)
	connect(t, c)
	b.Freeze()
	defer b.Thaw()
	d := c.PublishAsync(t.Context(), "frozen/t", []byte("x"), WithQoS(1))
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	err = c.Close(ctx)
	var ce *CloseError
	require.True(t, errors.As(err, &ce), "Close said %v", err)
	require.Equal(t, 1, ce.NotDelivered)
	require.Contains(t, err.Error(), "1 message not delivered")
	require.ErrorIs(t, d.Err(), ErrNotDelivered)
}
