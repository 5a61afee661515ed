package steadymqtt

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// An alert on "time since the last packet" matters most during an outage:
// the snapshot keeps what the last connection measured.
func TestHealthKeepsTheLastMeasurementsThroughAnOutage(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	c := newClient(t, WithBroker(b.URL()), WithKeepAlive(time.Second))
	connect(t, c)
	require.Eventually(t, func() bool { return c.Health().RTT > 0 }, 5*time.Second, 5*time.Millisecond, "a keepalive round trip")
	before := c.Health()
	require.NoError(t, b.Stop())
	require.Eventually(t, func() bool { return !c.State().Up() }, 5*time.Second, time.Millisecond)
	h := c.Health()
	require.Nil(t, h.LocalAddr, "not connected")
	require.Positive(t, h.RTT)
	require.False(t, h.LastPacketAt.IsZero())
	require.False(t, h.LastPacketAt.Before(before.LastPacketAt))
}
