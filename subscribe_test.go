package steadymqtt

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
	"github.com/steadymqtt/steadymqtt/internal/testsupport/netproxy"
)

// kickable is a broker whose side of a client's connection a test can cut
// at any moment: the embedded broker drops the client itself; Mosquitto,
// a separate process, is reached through a proxy that cuts both ends.
type kickable struct {
	name string
	url  string
	kick func(clientID string)
}

func kickableBrokers(t *testing.T) []kickable {
	t.Helper()
	e := startEmbedded(t)
	out := []kickable{{name: "embedded", url: e.URL(), kick: func(id string) { e.Kick(id) }}}
	if m := mosquittoBeside(t); m != nil {
		proxy, err := netproxy.Start(m.Addr())
		require.NoError(t, err)
		t.Cleanup(func() { _ = proxy.Close() })
		out = append(out, kickable{name: "mosquitto", url: proxy.URL(), kick: func(string) { proxy.CutAll() }})
	}
	return out
}

// received counts messages per topic.
type received struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *received) add(m Message) {
	r.mu.Lock()
	r.n[m.Topic]++
	r.mu.Unlock()
}

func (r *received) count(topic string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[topic]
}

// publishAllThenFence publishes once to each topic and then to fence, all
// at QoS 1 from one connection, and waits until got has the fence message:
// the broker delivers one publisher's messages to a subscriber in order,
// so by then everything before the fence has arrived or never will.
func publishAllThenFence(t *testing.T, url string, topics []string, fence string, got *received) {
	t.Helper()
	pub := newClient(t, WithBroker(url))
	connect(t, pub)
	for _, tp := range topics {
		require.NoError(t, pub.Publish(t.Context(), tp, []byte("x"), WithQoS(1)))
	}
	require.NoError(t, pub.Publish(t.Context(), fence, []byte("fence"), WithQoS(1)))
	require.Eventually(t, func() bool { return got.count(fence) == 1 }, 5*time.Second, 5*time.Millisecond)
}

// An UNSUBSCRIBE that a loss overtakes must still reach a broker that kept
// the session, or the broker delivers (and redelivers) the dropped
// filter's traffic for the life of the session.
func TestUnsubscribeRacingALossReachesTheBroker(t *testing.T) {
	leakCheck(t)
	const filters = 60
	for _, b := range kickableBrokers(t) {
		t.Run(b.name, func(t *testing.T) {
			id := "unsub-race-" + b.name
			got := &received{n: map[string]int{}}
			c := newClient(t, WithBroker(b.url), WithClientID(id), WithCleanSession(false),
				WithBackoff(backoff.NewConstantBackOff(20*time.Millisecond)))
			rec := record(c)
			connect(t, c)
			var topics []string
			for i := range filters {
				topics = append(topics, fmt.Sprintf("race/%s/%d", b.name, i))
				require.NoError(t, c.Subscribe(t.Context(), topics[i], 1, got.add))
			}
			fence := "race/" + b.name + "/fence"
			require.NoError(t, c.Subscribe(t.Context(), fence, 1, got.add))

			for _, tp := range topics {
				b.kick(id)
				require.NoError(t, c.Unsubscribe(t.Context(), tp), "the filter left the registry, whatever the connection did")
				rec.next(t, 5*time.Second, "reconnected", to(StateConnected))
			}
			require.Eventually(t, func() bool { return c.State() == StateConnected }, 5*time.Second, 5*time.Millisecond)
			publishAllThenFence(t, b.url, topics, fence, got)
			require.Zero(t, c.Stats().Unrouted, "the broker still delivers filters the application dropped")
			for _, tp := range topics {
				require.Zero(t, got.count(tp), tp)
			}
		})
	}
}

// A Subscribe that a loss overtakes stands: it returns nil and the
// subscription is made on the next connection. An error means nothing was
// registered.
func TestSubscribeRacingALossSaysWhatHappened(t *testing.T) {
	leakCheck(t)
	const rounds = 100
	for _, b := range kickableBrokers(t) {
		t.Run(b.name, func(t *testing.T) {
			id := "sub-race-" + b.name
			got := &received{n: map[string]int{}}
			c := newClient(t, WithBroker(b.url), WithClientID(id),
				WithBackoff(backoff.NewConstantBackOff(20*time.Millisecond)))
			rec := record(c)
			connect(t, c)
			var ok, failed []string
			for i := range rounds {
				tp := fmt.Sprintf("subrace/%s/%d", b.name, i)
				b.kick(id)
				if err := c.Subscribe(t.Context(), tp, 1, got.add); err != nil {
					failed = append(failed, tp)
				} else {
					ok = append(ok, tp)
				}
				rec.next(t, 5*time.Second, "reconnected", to(StateConnected))
			}
			fence := "subrace/" + b.name + "/fence"
			require.NoError(t, c.Subscribe(t.Context(), fence, 1, got.add))
			require.Eventually(t, func() bool {
				for _, tp := range ok {
					if q, active := c.GrantedQoS(tp); !active || q != 1 {
						return false
					}
				}
				return true
			}, 5*time.Second, 10*time.Millisecond, "every Subscribe that returned nil ends with an active subscription")
			for _, tp := range failed {
				_, active := c.GrantedQoS(tp)
				require.False(t, active, "%s: Subscribe failed, yet it is subscribed", tp)
			}
			publishAllThenFence(t, b.url, append(append([]string(nil), ok...), failed...), fence, got)
			for _, tp := range ok {
				require.Equal(t, 1, got.count(tp), tp)
			}
			for _, tp := range failed {
				require.Zero(t, got.count(tp), tp)
			}
			t.Logf("%d rounds: %d nil, %d errors", rounds, len(ok), len(failed))
		})
	}
}

// refuseFilters makes the embedded broker refuse (SUBACK 0x80) every
// filter under denied/, as a broker with an ACL or a filter limit does.
type refuseFilters struct {
	mqtt.HookBase
	off atomic.Bool
}

func (*refuseFilters) ID() string           { return "refuse-filters" }
func (*refuseFilters) Provides(b byte) bool { return b == mqtt.OnSubscribe }
func (h *refuseFilters) OnSubscribe(_ *mqtt.Client, pk packets.Packet) packets.Packet {
	if h.off.Load() {
		return pk
	}
	for i, f := range pk.Filters {
		if strings.HasPrefix(f.Filter, "denied/") {
			pk.Filters[i].Filter = "denied/#/invalid" // the broker answers 0x80
		}
	}
	return pk
}

// A filter the broker refuses is not registered, and says so.
func TestRefusedSubscriptionIsNotRegistered(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t, broker.WithHook(new(refuseFilters)))
	c := newClient(t, WithBroker(b.URL()))
	connect(t, c)
	err := c.Subscribe(t.Context(), "denied/x", 1, func(Message) {})
	require.ErrorIs(t, err, ErrSubscriptionRefused)
	_, active := c.GrantedQoS("denied/x")
	require.False(t, active)
	require.NoError(t, c.Subscribe(t.Context(), "allowed/x", 1, func(Message) {}))
	q, active := c.GrantedQoS("allowed/x")
	require.True(t, active)
	require.Equal(t, byte(1), q)

	// Not registered means not made again after a reconnect either.
	rec := record(c)
	b.Kick(c.ClientID())
	rec.next(t, 5*time.Second, "reconnected", to(StateConnected))
	_, active = c.GrantedQoS("denied/x")
	require.False(t, active)
}

// A refused change of handler leaves the subscription the filter had: the
// broker still has it, and its messages still reach the old handler.
func TestRefusedResubscribeKeepsTheSubscription(t *testing.T) {
	leakCheck(t)
	hook := &refuseFilters{}
	hook.off.Store(true)
	b := startEmbedded(t, broker.WithHook(hook))
	c := newClient(t, WithBroker(b.URL()))
	connect(t, c)
	old, replacement := &received{n: map[string]int{}}, &received{n: map[string]int{}}
	require.NoError(t, c.Subscribe(t.Context(), "denied/x", 1, old.add))
	hook.off.Store(false)
	require.ErrorIs(t, c.Subscribe(t.Context(), "denied/x", 1, replacement.add), ErrSubscriptionRefused)
	q, active := c.GrantedQoS("denied/x")
	require.True(t, active, "the old subscription stands")
	require.Equal(t, byte(1), q)
	publishAllThenFence(t, b.URL(), nil, "denied/x", old)
	require.Zero(t, replacement.count("denied/x"))
	require.Zero(t, c.Stats().Unrouted)
}

func TestSlowHandlerDoesNotKillTheConnection(t *testing.T) {
	leakCheck(t)
	m := startMosquitto(t, broker.MosquittoConfig{})
	c := newClient(t, WithBroker(m.URL()), WithKeepAlive(2*time.Second))
	rec := record(c)
	release := make(chan struct{})
	var slowGot atomic.Int64
	require.NoError(t, c.Subscribe(t.Context(), "slow", 1, func(Message) {
		if slowGot.Add(1) == 1 {
			select { // the first message takes 10 s
			case <-release:
			case <-time.After(10 * time.Second):
			}
		}
	}))
	fast := &collector{}
	require.NoError(t, c.Subscribe(t.Context(), "fast", 1, fast.add))
	connect(t, c)

	pub := newClient(t, WithBroker(m.URL()))
	connect(t, pub)
	// More QoS 1 messages for the slow handler than Mosquitto keeps in
	// flight to one client (20): acknowledging only after the handler would
	// stall the fast subscription behind them.
	for i := 0; i < 30; i++ {
		require.NoError(t, pub.Publish(t.Context(), "slow", []byte("x"), WithQoS(1)))
	}
	require.Eventually(t, func() bool { return slowGot.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
	for i := 0; i < 20; i++ { // through five keepalives while the slow handler sleeps
		require.NoError(t, pub.Publish(t.Context(), "fast", []byte(strconv.Itoa(i)), WithQoS(1)))
		require.Eventually(t, func() bool { return fast.n.Load() == int64(i+1) }, 2*time.Second, 5*time.Millisecond,
			"the fast subscription stalled behind the slow one")
		time.Sleep(500 * time.Millisecond)
	}
	close(release)
	require.Eventually(t, func() bool { return slowGot.Load() == 30 }, 5*time.Second, 5*time.Millisecond)
	for _, ev := range rec.all() {
		require.NotEqual(t, StateReconnecting, ev.To, "disconnected while a handler was slow: %v", ev.Err)
	}
}

func TestHandlerBacklogOverflowIsCounted(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	c := newClient(t, WithBroker(b.URL()), WithHandlerBacklog(2))
	rec := record(c)
	release := make(chan struct{})
	var handled atomic.Int64
	require.NoError(t, c.Subscribe(t.Context(), "burst", 0, func(Message) { <-release; handled.Add(1) }))
	connect(t, c)
	pub := newClient(t, WithBroker(b.URL()))
	connect(t, pub)
	for i := 0; i < 10; i++ {
		require.NoError(t, pub.Publish(t.Context(), "burst", []byte{byte(i)}))
	}
	require.Eventually(t, func() bool { return c.Stats().Received == 10 }, 5*time.Second, 5*time.Millisecond)
	close(release)
	s := c.Stats()
	// One in the handler, two in the backlog, the rest counted.
	require.EqualValues(t, 7, s.HandlerDrops)
	ev := rec.next(t, time.Second, "overflow", func(ev Event) bool { return ev.Kind == KindHandlerOverflow })
	require.Equal(t, "burst", ev.Topic)
	require.Eventually(t, func() bool { return handled.Load() == 3 }, time.Second, 5*time.Millisecond)
}

func TestSharedSubscription(t *testing.T) {
	leakCheck(t)
	m := startMosquitto(t, broker.MosquittoConfig{})
	a, b := &collector{}, &collector{}
	for i, k := range []*collector{a, b} {
		c := newClient(t, WithBroker(m.URL()), WithClientID(fmt.Sprintf("replica-%d", i)))
		require.NoError(t, c.Subscribe(t.Context(), "$share/gateways/jobs/+", 1, k.add))
		connect(t, c)
		granted, ok := c.GrantedQoS("$share/gateways/jobs/+")
		require.True(t, ok)
		require.EqualValues(t, 1, granted)
	}
	pub := newClient(t, WithBroker(m.URL()))
	connect(t, pub)
	const n = 40
	for i := 0; i < n; i++ {
		require.NoError(t, pub.Publish(t.Context(), "jobs/"+strconv.Itoa(i), []byte("j"), WithQoS(1)))
	}
	require.Eventually(t, func() bool { return a.n.Load()+b.n.Load() == n }, 5*time.Second, 10*time.Millisecond)
	require.Positive(t, a.n.Load(), "work is spread over the replicas")
	require.Positive(t, b.n.Load(), "work is spread over the replicas")
	a.mu.Lock()
	require.Regexp(t, `^jobs/\d+$`, a.msgs[0].Topic, "messages arrive with the plain topic")
	a.mu.Unlock()
}

// A persistent session is reported as it is: kept after a kick, lost
// after the broker restarted without it, each in the connected event and
// Health, and a lost one with an event of its own.
func TestSessionPresentIsReported(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	got := &received{n: map[string]int{}}
	c := newClient(t, WithBroker(b.URL()), WithClientID("persist"), WithCleanSession(false),
		WithBackoff(backoff.NewConstantBackOff(20*time.Millisecond)))
	rec := record(c)
	require.NoError(t, c.Subscribe(t.Context(), "session/t", 1, got.add))
	connect(t, c)
	first := rec.next(t, time.Second, "connected", to(StateConnected))
	require.False(t, first.SessionPresent, "a new session")

	b.Kick(c.ClientID())
	kept := rec.next(t, 5*time.Second, "connected after a kick", to(StateConnected))
	require.True(t, kept.SessionPresent, "the broker kept the session")
	require.True(t, c.Health().SessionPresent)

	require.NoError(t, b.Stop()) // the embedded broker keeps sessions in memory only
	require.NoError(t, b.Start())
	lost := rec.next(t, 5*time.Second, "connected after the restart", to(StateConnected))
	require.False(t, lost.SessionPresent)
	ev := rec.next(t, time.Second, "session lost", func(ev Event) bool { return ev.Kind == KindSessionLost })
	require.Greater(t, ev.Seq, lost.Seq)
	for _, e := range rec.all() {
		if e.Kind == KindSessionLost {
			require.Equal(t, ev.Seq, e.Seq, "reported once, for the restart only")
		}
	}
	publishAllThenFence(t, b.URL(), nil, "session/t", got) // the subscription was made again
}
