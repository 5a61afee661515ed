package steadymqtt

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/mqtttest"
)

// The public test kit, used the way a gateway's tests use it.

func TestKitBrokerRestartAndDrop(t *testing.T) {
	leakCheck(t)
	b := mqtttest.NewBroker(t)
	c := newClient(t, WithBroker(b.URL()), WithClientID("gw"),
		WithBackoff(NewFullJitterBackOff(20*time.Millisecond, 100*time.Millisecond)))
	rec := record(c)
	connect(t, c)
	rec.next(t, 5*time.Second, "connected", to(StateConnected))

	b.Stop()
	rec.next(t, 5*time.Second, "reconnecting after Stop", to(StateReconnecting))
	b.Start()
	rec.next(t, 5*time.Second, "connected after Start", to(StateConnected))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, c.Publish(ctx, "gw/status", []byte("back"), WithQoS(1)))

	b.Drop("gw")
	rec.next(t, 5*time.Second, "reconnecting after Drop", to(StateReconnecting))
	rec.next(t, 5*time.Second, "connected after Drop", to(StateConnected))
	require.NoError(t, b.WaitConnected(ctx, "gw"))
	requireConsistent(t, rec.all())
}

func TestKitBrokerRefuseIsNotAuthorized(t *testing.T) {
	leakCheck(t)
	b := mqtttest.NewBroker(t)
	b.Refuse(5)
	c := newClient(t, WithBroker(b.URL()),
		WithBackoff(NewFullJitterBackOff(20*time.Millisecond, 100*time.Millisecond)))

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := c.Connect(ctx)
	require.ErrorIs(t, err, ErrNotAuthorized)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	var refused *ConnectRefusedError
	var reason *ReasonCodeError
	switch {
	case errors.As(err, &refused): // MQTT 3.1.1
		require.Equal(t, byte(5), refused.Code)
	case errors.As(err, &reason): // MQTT 5: the same refusal in its code
		require.Equal(t, byte(0x87), reason.Code)
	default:
		t.Fatalf("not a refusal: %v", err)
	}

	b.Accept()
	connect(t, c) // the client kept trying, and gets in now
}
