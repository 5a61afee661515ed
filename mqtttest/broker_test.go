package mqtttest_test

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/testsupport/testpki"
	"github.com/steadymqtt/steadymqtt/mqtttest"
)

func TestNewBrokerCarriesMessages(t *testing.T) {
	b := mqtttest.NewBroker(t)
	require.True(t, strings.HasPrefix(b.URL(), "tcp://127.0.0.1:"), b.URL())

	sub := dial(t, b.URL(), "sub")
	pub := dial(t, b.URL(), "pub")
	got := subscribe(t, sub, "t/1")
	requireDone(t, pub.Publish("t/1", 1, false, "hello"))
	requireReceived(t, got, "hello")
	require.Equal(t, []string{"pub", "sub"}, b.Clients())
	require.True(t, b.Connected("sub"))
	require.False(t, b.Connected("nobody"))
}

func TestStopStartKeepsTheURL(t *testing.T) {
	b := mqtttest.NewBroker(t)
	url := b.URL()
	c := dial(t, url, "gw", withAutoReconnect())

	b.Stop()
	requireLost(t, c)
	require.Empty(t, b.Clients())
	other := newRaw(t, url, "other")
	tok := other.Connect()
	require.True(t, tok.WaitTimeout(wait))
	require.Error(t, tok.Error(), "a stopped broker must not take connections")

	b.Start()
	require.Equal(t, url, b.URL())
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	require.NoError(t, b.WaitConnected(ctx, "gw"), "the client reconnects to the same URL")
	// (No publish on c here: paho races with itself when a publish meets
	// the resume that follows its reconnect.)
	requireDone(t, other.Connect())
}

func TestRestartEndsConnectionsAndComesBack(t *testing.T) {
	b := mqtttest.NewBroker(t)
	c := dial(t, b.URL(), "gw")
	require.NoError(t, b.Restart())
	requireLost(t, c)
	dial(t, b.URL(), "again")

	require.NoError(t, b.Close())
	require.NoError(t, b.Close(), "a second Close does nothing")
	require.Error(t, b.Restart(), "a closed broker cannot start again")
}

func TestDropDisconnectsOneClient(t *testing.T) {
	b := mqtttest.NewBroker(t)
	gw := dial(t, b.URL(), "gw")
	other := dial(t, b.URL(), "other")

	b.Drop("gw")
	require.False(t, b.Connected("gw"), "Drop returns once the broker let the client go")
	requireLost(t, gw)
	require.Equal(t, []string{"other"}, b.Clients())
	require.True(t, other.IsConnectionOpen())
	b.Drop("nobody") // nothing to do
}

func TestWaitConnectedEndsWithItsContext(t *testing.T) {
	b := mqtttest.NewBroker(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, b.WaitConnected(ctx, "nobody"), context.Canceled)
}

func TestWithTLS(t *testing.T) {
	ca, err := testpki.NewCA("mqtttest CA")
	require.NoError(t, err)
	leaf, err := ca.Issue(testpki.Leaf{CommonName: "broker", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	require.NoError(t, err)
	b := mqtttest.NewBroker(t, mqtttest.WithTLS(&tls.Config{Certificates: []tls.Certificate{leaf.TLS}}))
	require.True(t, strings.HasPrefix(b.URL(), "ssl://"), b.URL())

	c := dial(t, b.URL(), "gw", withTLSConfig(&tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}))
	requireDone(t, c.Publish("t/1", 1, false, "over TLS"))
}

func TestWithUser(t *testing.T) {
	b := mqtttest.NewBroker(t, mqtttest.WithUser("gw", "s3cret"))
	dial(t, b.URL(), "right", withCredentials("gw", "s3cret"))

	for name, opts := range map[string][]pahoOption{
		"wrong password": {withCredentials("gw", "guess")},
		"none":           nil,
	} {
		tok := newRaw(t, b.URL(), "wrong", opts...).Connect()
		require.True(t, tok.WaitTimeout(wait), name)
		require.ErrorIs(t, tok.Error(), errBadCredentials, name)
	}
}
