package mqtttest_test

import (
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/mqtttest"
)

// quiet is how long a test watches for something that must not happen.
const quiet = 300 * time.Millisecond

var errBadCredentials = packets.ErrorRefusedBadUsernameOrPassword

func TestRefuseAnswersWithTheCodeAndAcceptUndoesIt(t *testing.T) {
	b := mqtttest.NewBroker(t)
	inside := dial(t, b.URL(), "inside")
	for code, want := range map[byte]error{
		1: packets.ErrorRefusedBadProtocolVersion,
		2: packets.ErrorRefusedIDRejected,
		3: packets.ErrorRefusedServerUnavailable,
		4: packets.ErrorRefusedBadUsernameOrPassword,
		5: packets.ErrorRefusedNotAuthorised,
	} {
		b.Refuse(code)
		tok := newRaw(t, b.URL(), "gw").Connect()
		require.True(t, tok.WaitTimeout(wait), "code %d", code)
		require.ErrorIs(t, tok.Error(), want, "code %d", code)
		require.False(t, b.Connected("gw"))
	}
	require.True(t, inside.IsConnectionOpen(), "a client already connected stays")

	b.Accept()
	dial(t, b.URL(), "gw")
}

func TestRefuseZeroPanicsWithoutATest(t *testing.T) {
	b, err := mqtttest.Start()
	require.NoError(t, err)
	defer b.Close()
	require.Panics(t, func() { b.Refuse(0) })
}

func TestFreezeHoldsEveryByteUntilThaw(t *testing.T) {
	b := mqtttest.NewBroker(t)
	sub := dial(t, b.URL(), "sub")
	pub := dial(t, b.URL(), "pub")
	got := subscribe(t, sub, "t/1")

	b.Freeze()
	published := pub.Publish("t/1", 1, false, "while frozen")
	late := newRaw(t, b.URL(), "late").Connect()
	require.False(t, published.WaitTimeout(quiet), "a frozen link carries no PUBACK")
	require.False(t, late.WaitTimeout(0), "nor a CONNACK")
	require.Empty(t, got, "nor the message to the subscriber")
	require.True(t, pub.IsConnectionOpen(), "and closes nothing")

	b.Thaw()
	requireDone(t, published)
	requireReceived(t, got, "while frozen")
	requireDone(t, late)
}

func TestFreezeLeavesPingsUnanswered(t *testing.T) {
	b := mqtttest.NewBroker(t)
	c := dial(t, b.URL(), "gw", withKeepAlive(time.Second))
	b.Freeze()
	defer b.Thaw()
	requireLost(t, c) // paho gave up waiting for its PINGRESP
}

func TestAnEndWhileFrozenReachesTheClientAfterThaw(t *testing.T) {
	for name, end := range map[string]func(*mqtttest.Broker){
		"Drop": func(b *mqtttest.Broker) { b.Drop("gw") },
		"Stop": func(b *mqtttest.Broker) { b.Stop() },
	} {
		t.Run(name, func(t *testing.T) {
			b := mqtttest.NewBroker(t)
			c := dial(t, b.URL(), "gw")
			b.Freeze()
			end(b)
			require.False(t, b.Connected("gw"), "the broker let the client go")
			select {
			case err := <-c.lost:
				t.Fatalf("the client saw the end through a frozen link: %v", err)
			case <-time.After(quiet):
			}
			b.Thaw()
			requireLost(t, c)
		})
	}
}
