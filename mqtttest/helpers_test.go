package mqtttest_test

import (
	"crypto/tls"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait bounds every wait for something that must happen.
const wait = 5 * time.Second

// rawClient is a plain paho client with no retry of its own, and a channel
// that gets its connection loss.
type rawClient struct {
	paho.Client
	lost chan error
}

type pahoOption func(*paho.ClientOptions)

func withCredentials(user, password string) pahoOption {
	return func(o *paho.ClientOptions) { o.SetUsername(user).SetPassword(password) }
}

func withTLSConfig(cfg *tls.Config) pahoOption {
	return func(o *paho.ClientOptions) { o.SetTLSConfig(cfg) }
}

func withKeepAlive(d time.Duration) pahoOption {
	return func(o *paho.ClientOptions) { o.SetKeepAlive(d).SetPingTimeout(d) }
}

func withAutoReconnect() pahoOption {
	return func(o *paho.ClientOptions) {
		o.SetAutoReconnect(true).SetMaxReconnectInterval(100 * time.Millisecond)
	}
}

func newRaw(t *testing.T, url, id string, opts ...pahoOption) *rawClient {
	t.Helper()
	c := &rawClient{lost: make(chan error, 16)}
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).
		SetProtocolVersion(4). // no fallback to 3.1 after a refusal
		SetAutoReconnect(false).SetConnectTimeout(wait).
		SetKeepAlive(time.Minute).
		SetConnectionLostHandler(func(_ paho.Client, err error) { c.lost <- err })
	for _, opt := range opts {
		opt(o)
	}
	c.Client = paho.NewClient(o)
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

// dial connects a new raw client and fails the test if it cannot.
func dial(t *testing.T, url, id string, opts ...pahoOption) *rawClient {
	t.Helper()
	c := newRaw(t, url, id, opts...)
	requireDone(t, c.Connect())
	return c
}

// requireDone waits for tok and requires it to have succeeded.
func requireDone(t *testing.T, tok paho.Token) {
	t.Helper()
	require.True(t, tok.WaitTimeout(wait), "no answer within %v", wait)
	require.NoError(t, tok.Error())
}

// requireLost waits for c to see its connection end.
func requireLost(t *testing.T, c *rawClient) {
	t.Helper()
	select {
	case <-c.lost:
	case <-time.After(wait):
		t.Fatalf("the client saw no connection loss within %v", wait)
	}
}

// subscribe subscribes c to topicName and returns the payloads it gets.
func subscribe(t *testing.T, c *rawClient, topicName string) <-chan string {
	t.Helper()
	got := make(chan string, 16)
	requireDone(t, c.Subscribe(topicName, 1, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) }))
	return got
}

func requireReceived(t *testing.T, got <-chan string, want string) {
	t.Helper()
	select {
	case p := <-got:
		require.Equal(t, want, p)
	case <-time.After(wait):
		t.Fatalf("%q not received within %v", want, wait)
	}
}
