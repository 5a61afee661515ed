package steadymqtt

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
)

func TestGiveUpOnNamedFailures(t *testing.T) {
	t.Run("missing interface", func(t *testing.T) {
		leakCheck(t)
		c := newClient(t, WithBroker("tcp://127.0.0.1:1"), WithInterfaces("nosuchnic9"),
			WithGiveUpOn(ErrInterfaceNotFound))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := c.Connect(ctx)
		require.ErrorIs(t, err, ErrGaveUp)
		require.ErrorIs(t, err, ErrInterfaceNotFound)
		require.NoError(t, ctx.Err(), "returned before its deadline")
		require.Equal(t, StateClosed, c.State())
		require.EqualValues(t, 1, c.Stats().Attempts)
	})
	t.Run("other failures are retried", func(t *testing.T) {
		leakCheck(t)
		c := newClient(t, WithBroker("tcp://127.0.0.1:1"), WithGiveUpOn(ErrNotAuthorized),
			WithBackoff(NewFullJitterBackOff(time.Millisecond, 5*time.Millisecond)))
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		require.ErrorIs(t, c.Connect(ctx), context.DeadlineExceeded)
		require.Greater(t, c.Stats().Attempts, uint64(1))
		require.NotEqual(t, StateClosed, c.State())
	})
	t.Run("bad password on mosquitto", func(t *testing.T) {
		leakCheck(t)
		m := startMosquitto(t, broker.MosquittoConfig{Users: map[string]string{"gateway": "right"}})
		c := newClient(t, WithBroker(m.URL()), WithCredentials("gateway", "wrong"), WithGiveUpOn(ErrNotAuthorized))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := c.Connect(ctx)
		require.ErrorIs(t, err, ErrGaveUp)
		require.ErrorIs(t, err, ErrNotAuthorized)
		require.NoError(t, ctx.Err(), "returned before its deadline")
		require.Contains(t, err.Error(), "check the user name and password")
		require.NotContains(t, err.Error(), "wrong")
		require.EqualValues(t, 1, c.Stats().Attempts)
	})
}

func TestOptionsRejectNilGiveUp(t *testing.T) {
	_, err := New(WithBroker("tcp://127.0.0.1:1"), WithGiveUpOn(nil))
	require.ErrorIs(t, err, ErrInvalidOption)
}
