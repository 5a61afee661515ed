package steadymqtt

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
	"github.com/steadymqtt/steadymqtt/internal/testsupport/netproxy"
)

// watcher is an independent raw paho subscriber: what a fleet dashboard
// sees. It subscribes again after each reconnect, so a restarted broker's
// retained messages reach it too.
type watcher struct {
	mu   sync.Mutex
	msgs []mqtt.Message
	seen chan struct{}
}

func watch(t *testing.T, url, filter string) *watcher {
	t.Helper()
	w := &watcher{seen: make(chan struct{}, 1000)}
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID("watcher-" + t.Name()).
		SetAutoReconnect(true).SetMaxReconnectInterval(100 * time.Millisecond).SetConnectRetry(true).
		SetConnectRetryInterval(50 * time.Millisecond)
	o.SetOnConnectHandler(func(c mqtt.Client) {
		c.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) {
			w.mu.Lock()
			w.msgs = append(w.msgs, m)
			w.mu.Unlock()
			w.seen <- struct{}{}
		})
	})
	c := mqtt.NewClient(o)
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	t.Cleanup(func() { c.Disconnect(100) })
	return w
}

// wait takes messages in order until one satisfies ok.
func (w *watcher) wait(t *testing.T, timeout time.Duration, what string, ok func(topic string, p Presence) bool) Presence {
	t.Helper()
	deadline := time.After(timeout)
	for {
		w.mu.Lock()
		for len(w.msgs) > 0 {
			m := w.msgs[0]
			w.msgs = w.msgs[1:]
			var p Presence
			if json.Unmarshal(m.Payload(), &p) == nil && ok(m.Topic(), p) {
				w.mu.Unlock()
				return p
			}
		}
		w.mu.Unlock()
		select {
		case <-w.seen:
		case <-deadline:
			t.Fatalf("watcher: no %s within %v", what, timeout)
		}
	}
}

func status(s string) func(string, Presence) bool {
	return func(_ string, p Presence) bool { return p.Status == s }
}

func TestPresenceOnMosquitto(t *testing.T) {
	leakCheck(t)
	m := startMosquitto(t, broker.MosquittoConfig{})
	w := watch(t, m.URL(), "gw/+/status")

	c := newClient(t, WithBroker(m.URL()), WithClientID("gw-7"), WithPresence("gw/gw-7/status"),
		WithKeepAlive(time.Second), WithBackoff(NewFullJitterBackOff(20*time.Millisecond, 100*time.Millisecond)))
	connected := make(chan Event, 4)
	c.OnConnect(func(ev Event) { connected <- ev })
	connect(t, c)
	first := w.wait(t, 5*time.Second, "online", status("online"))
	require.Equal(t, "gw-7", first.ClientID)
	require.Equal(t, m.URL(), first.Broker)
	require.NotEmpty(t, first.LocalAddr)
	require.NotEmpty(t, first.Version)
	<-connected

	// kill -9 of the broker: the client comes back and says so, retained.
	require.NoError(t, m.Kill())
	require.NoError(t, m.Start())
	again := w.wait(t, 10*time.Second, "online again", status("online"))
	require.False(t, again.Since.Before(first.Since))
	select {
	case ev := <-connected:
		require.Equal(t, StateReconnecting, ev.From)
	case <-time.After(5 * time.Second):
		t.Fatal("OnConnect not called for the reconnect")
	}

	// A graceful Close says offline itself.
	require.NoError(t, c.Close(t.Context()))
	off := w.wait(t, 5*time.Second, "offline", status("offline"))
	require.Equal(t, "closed", off.Reason)
}

func TestPresenceComesBeforeTheOutbox(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	w := watch(t, b.URL(), "#")
	// Only the client's path goes dark; the watcher stays subscribed.
	p, err := netproxy.Start(b.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	c := newClient(t, WithBroker(p.URL()), WithClientID("gw-8"), WithPresence("gw/gw-8/status"),
		WithConnectTimeout(200*time.Millisecond), WithBackoff(NewFullJitterBackOff(20*time.Millisecond, 100*time.Millisecond)))
	connect(t, c)
	w.wait(t, 5*time.Second, "online", status("online"))

	p.Blackhole(true)
	p.CutAll()
	require.Eventually(t, func() bool { return !c.State().Up() }, 5*time.Second, time.Millisecond)
	lost := w.wait(t, 5*time.Second, "the will", status("offline"))
	require.Equal(t, "connection lost", lost.Reason)
	var ds []*Delivery
	for i := 0; i < 5; i++ {
		ds = append(ds, c.PublishAsync(t.Context(), "gw/gw-8/data", []byte(`{"n":1}`), WithQoS(1)))
	}
	p.Blackhole(false)
	for _, d := range ds {
		require.NoError(t, d.Wait(t.Context()))
	}
	// The first message from the client on its new connection is "online",
	// then the replay.
	first := w.wait(t, 5*time.Second, "first message after reconnect", func(string, Presence) bool { return true })
	require.Equal(t, "online", first.Status, "presence must precede the replay")
	for i := 0; i < 5; i++ {
		w.wait(t, 5*time.Second, "replayed data", func(topic string, _ Presence) bool { return topic == "gw/gw-8/data" })
	}
}

func TestPresenceWillAfterClientKill(t *testing.T) {
	leakCheck(t)
	m := startMosquitto(t, broker.MosquittoConfig{})
	w := watch(t, m.URL(), "gw/+/status")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "STEADYMQTT_CHILD=presence", "STEADYMQTT_BROKER="+m.URL())
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "online", strings.TrimSpace(line))
	w.wait(t, 5*time.Second, "online", status("online"))

	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	// Keepalive 1 s: Mosquitto gives up on the client within 1.5 s and
	// publishes the will.
	off := w.wait(t, 10*time.Second, "offline will", status("offline"))
	require.Equal(t, "presence-child", off.ClientID)
	require.Equal(t, "connection lost", off.Reason)
}

// childPresence is the client killed by TestPresenceWillAfterClientKill.
func childPresence(url string) int {
	c, err := New(WithBroker(url), WithClientID("presence-child"), WithPresence("gw/presence-child/status"),
		WithKeepAlive(time.Second))
	if err != nil {
		return 1
	}
	if err := c.Connect(context.Background()); err != nil {
		return 1
	}
	println := func(s string) { _, _ = os.Stdout.WriteString(s + "\n") }
	println("online")
	select {} // until SIGKILL
}

func TestPresenceOptions(t *testing.T) {
	_, err := New(WithBroker("tcp://127.0.0.1:1"), WithPresence("gw/+/status"))
	require.ErrorIs(t, err, ErrInvalidOption)
	_, err = New(WithBroker("tcp://127.0.0.1:1"), WithPresence("gw/1/status"), WithWill("gw/1/status", nil, 1, true))
	require.ErrorIs(t, err, ErrInvalidOption)
}
