package steadymqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
	"github.com/steadymqtt/steadymqtt/internal/testsupport/netproxy"
)

// requireStep checks that err names step, through errors.As, and that
// errors.Is still sees the cause.
func requireStep(t *testing.T, err error, step string, cause error) {
	t.Helper()
	require.Error(t, err)
	var se *StepError
	require.True(t, errors.As(err, &se), "not a *StepError: %v", err)
	require.Equal(t, step, se.Step, "%v", err)
	require.Contains(t, err.Error(), "["+step+"]")
	if cause != nil {
		require.ErrorIs(t, err, cause)
	}
}

func TestAttemptErrorsNameTheirStep(t *testing.T) {
	p := newPKI(t)
	tlsBroker := startEmbedded(t, broker.WithTLS(&tls.Config{Certificates: []tls.Certificate{p.serverIP.TLS}}))
	tlsURL := tlsBroker.URL()
	plain := startEmbedded(t)
	port, err := broker.FreePort()
	require.NoError(t, err)
	hole, err := netproxy.Start(plain.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = hole.Close() })
	hole.Blackhole(true)
	mosq := mosquittoBeside(t)

	tests := []struct {
		name  string
		url   string
		opts  []Option
		step  string
		cause error
	}{
		{name: "unknown host", url: "tcp://nosuch-broker.invalid:1883", step: StepDNS},
		{name: "connection refused", url: "tcp://127.0.0.1:" + itoa(port), step: StepTCP},
		{name: "no CONNACK", url: hole.URL(), opts: []Option{WithConnectTimeout(300 * time.Millisecond)}, step: StepConnect, cause: ErrConnectTimeout},
		{name: "missing interface", url: plain.URL(), opts: []Option{WithInterfaces("nosuchnic9")}, step: StepInterface, cause: ErrInterfaceNotFound},
		{name: "wrong CA", url: tlsURL, opts: []Option{WithCA(p.other.PEM)}, step: StepTLS, cause: ErrTLSUnknownAuthority},
		{name: "TLS to a plain-text port", url: strings.Replace(plain.URL(), "tcp://", "mqtts://", 1), opts: []Option{WithCA(p.ca.PEM)},
			step: StepTLS, cause: ErrTLSPlainPort},
	}
	if mosq != nil {
		tests = append(tests, struct {
			name  string
			url   string
			opts  []Option
			step  string
			cause error
		}{name: "TLS to Mosquitto's plain-text port", url: strings.Replace(mosq.URL(), "tcp://", "mqtts://", 1),
			opts: []Option{WithCA(p.ca.PEM)}, step: StepTLS, cause: ErrTLSPlainPort})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leakCheck(t)
			err := connectErr(t, tt.url, tt.opts...)
			requireStep(t, err, tt.step, tt.cause)
		})
	}
}

func TestRefusalNamesTheConnectStep(t *testing.T) {
	leakCheck(t)
	m := startMosquitto(t, broker.MosquittoConfig{Users: map[string]string{"gateway": "right"}})
	c := newClient(t, WithBroker(m.URL()), WithCredentials("gateway", "wrong"), WithGiveUpOn(ErrNotAuthorized))
	err := c.Connect(t.Context())
	requireStep(t, err, StepConnect, ErrNotAuthorized)
	h := c.Health()
	require.Equal(t, StepConnect, h.LastErrorStep)
	js, jerr := h.MarshalJSON()
	require.NoError(t, jerr)
	require.Contains(t, string(js), `"last_error_step":"connect"`)
}

// dropOnSubscribe closes every client that subscribes to filter: a
// cluster node that accepts the CONNECT and drops the client when its
// subscriptions are restored.
type dropOnSubscribe struct {
	mqtt.HookBase
	filter string
}

func (h *dropOnSubscribe) ID() string           { return "drop-on-subscribe" }
func (h *dropOnSubscribe) Provides(b byte) bool { return b == mqtt.OnSubscribe }
func (h *dropOnSubscribe) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	for _, f := range pk.Filters {
		if f.Filter == h.filter {
			cl.Stop(errors.New("dropped at subscribe"))
		}
	}
	return pk
}

func TestLossAfterSubscribeNamesTheFilter(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t, broker.WithHook(&dropOnSubscribe{filter: "cmd/#"}))
	c := newClient(t, WithBroker(b.URL()), WithBackoff(NewFullJitterBackOff(20*time.Millisecond, 50*time.Millisecond)))
	require.NoError(t, c.Subscribe(t.Context(), "cmd/#", 1, func(Message) {}))
	rec := record(c)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := c.Connect(ctx)
	requireStep(t, err, StepSubscribe, context.DeadlineExceeded)
	require.Contains(t, err.Error(), `"cmd/#"`)
	ev := rec.next(t, time.Second, "a failed attempt", func(ev Event) bool { return ev.Err != nil })
	require.Equal(t, StepSubscribe, ev.Step)
	require.Equal(t, StepSubscribe, c.Health().LastErrorStep)
}

func TestLossAfterPublishAndKeepaliveNameTheirStep(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t, broker.WithHook(&broker.KickOnTopic{Topic: "bad/t"}))
	hole, err := netproxy.Start(b.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = hole.Close() })
	c := newClient(t, WithBroker(hole.URL()), WithKeepAlive(time.Second), WithConnectTimeout(300*time.Millisecond),
		WithBackoff(NewFullJitterBackOff(20*time.Millisecond, 50*time.Millisecond)))
	rec := record(c)
	connect(t, c)

	// QoS 0: the broker closes the connection right after it.
	require.NoError(t, c.Publish(t.Context(), "bad/t", []byte("x")))
	lost := rec.next(t, 5*time.Second, "lost after a publish", to(StateReconnecting))
	requireStep(t, lost.Err, StepPublish, nil)
	require.Equal(t, StepPublish, lost.Step)
	require.Contains(t, lost.Err.Error(), "PUBLISH")
	rec.next(t, 5*time.Second, "back", to(StateConnected))

	// Nothing comes back from the broker (which still hears the client, so
	// it does not time the client out first): the keepalive notices.
	hole.DropFromBroker(func(byte) bool { return true })
	lost = rec.next(t, 5*time.Second, "lost to the keepalive", to(StateReconnecting))
	requireStep(t, lost.Err, StepKeepalive, ErrKeepaliveTimeout)

	// A later loss for another reason: connected.
	hole.DropFromBroker(nil)
	rec.next(t, 5*time.Second, "back", to(StateConnected))
	require.True(t, b.Kick(c.ClientID()))
	lost = rec.next(t, 5*time.Second, "kicked", to(StateReconnecting))
	require.NotEqual(t, StepPublish, errStep(lost.Err))
}

func errStep(err error) string {
	var se *StepError
	if errors.As(err, &se) {
		return se.Step
	}
	return ""
}
