package steadymqtt

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
	"github.com/steadymqtt/steadymqtt/internal/testsupport/netproxy"
)

// A constant backoff makes the Delay of each event known in advance.
const retry = 150 * time.Millisecond

func TestReconnectsAfterBrokerRestart(t *testing.T) {
	brokers := map[string]func(t *testing.T) restartable{
		"embedded":  func(t *testing.T) restartable { return startEmbedded(t) },
		"mosquitto": func(t *testing.T) restartable { return killed{startMosquitto(t, broker.MosquittoConfig{})} },
	}
	for name, start := range brokers {
		t.Run(name, func(t *testing.T) {
			leakCheck(t)
			b := start(t)
			c := newClient(t, WithBroker(b.URL()), WithBackoff(backoff.NewConstantBackOff(retry)))
			rec := record(c)
			require.Equal(t, StateIdle, c.State())

			got := make(chan Message, 4)
			require.NoError(t, c.Subscribe(t.Context(), "restart/t", 1, func(m Message) { got <- m }))
			connect(t, c)
			require.Equal(t, StateConnected, c.State())
			rec.next(t, time.Second, "connected", to(StateConnected))
			h := c.Health()
			require.Equal(t, StateConnected, h.State)
			require.NotNil(t, h.LocalAddr)
			require.Equal(t, b.URL(), h.Broker)

			require.NoError(t, b.Stop())
			lost := rec.next(t, 5*time.Second, "reconnecting", to(StateReconnecting))
			require.Error(t, lost.Err)
			require.Equal(t, retry, lost.Delay)
			require.Equal(t, StateConnected, lost.From)
			// While the broker is down the state stays reconnecting, and each
			// refused attempt is reported with its error and the next delay.
			failed := rec.next(t, 5*time.Second, "failed attempt", func(ev Event) bool {
				return ev.Kind == KindState && ev.From == StateReconnecting && ev.To == StateReconnecting
			})
			require.ErrorIs(t, failed.Err, syscall.ECONNREFUSED)
			require.Equal(t, retry, failed.Delay)
			require.GreaterOrEqual(t, failed.Attempt, 1)
			require.Equal(t, StateReconnecting, c.State())
			require.Nil(t, c.Health().LocalAddr)

			require.NoError(t, b.Start())
			back := rec.next(t, 5*time.Second, "connected again", to(StateConnected))
			require.GreaterOrEqual(t, back.Attempt, failed.Attempt, "the success reports the failures before it")
			require.Equal(t, StateConnected, c.State())
			// The restarted broker lost the session; "connected" means the
			// subscription is back already.
			require.NoError(t, c.Publish(t.Context(), "restart/t", []byte("after restart"), WithQoS(1)))
			select {
			case m := <-got:
				require.Equal(t, "after restart", string(m.Payload))
			case <-time.After(5 * time.Second):
				t.Fatal("subscription not restored when connected was announced")
			}
			require.Zero(t, c.Health().Attempt)

			require.NoError(t, c.Close(t.Context()))
			rec.next(t, time.Second, "closed", to(StateClosed))
			require.Equal(t, StateClosed, c.State())
			requireConsistent(t, rec.all())
			require.ErrorIs(t, c.Connect(t.Context()), ErrClosed)
			require.ErrorIs(t, c.Publish(t.Context(), "a", nil), ErrClosed)
		})
	}
}

func TestBlackholedLinkIsDetected(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	proxy, err := netproxy.Start(b.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })

	const ka = 2 * time.Second
	c := newClient(t, WithBroker(proxy.URL()), WithKeepAlive(ka),
		WithConnectTimeout(time.Second), WithBackoff(backoff.NewConstantBackOff(retry)))
	rec := record(c)
	connect(t, c)

	// Let a few keepalives go by: the link is healthy and RTT is measured.
	time.Sleep(ka + ka/2)
	require.Equal(t, StateConnected, c.State())
	require.Greater(t, c.Health().RTT, time.Duration(0))

	proxy.Blackhole(true)
	start := time.Now()
	deg := rec.next(t, 3*time.Second, "degraded", to(StateDegraded))
	require.ErrorIs(t, deg.Err, ErrDegraded)
	lost := rec.next(t, 3*time.Second, "reconnecting", to(StateReconnecting))
	require.ErrorIs(t, lost.Err, ErrKeepaliveTimeout)
	require.Less(t, lost.Time.Sub(start), 3*time.Second, "dead link noticed too late")
	t.Logf("keepalive %v: degraded after %v, reconnecting after %v", ka,
		deg.Time.Sub(start).Round(time.Millisecond), lost.Time.Sub(start).Round(time.Millisecond))
	require.Less(t, deg.Seq, lost.Seq)

	proxy.Blackhole(false)
	rec.next(t, 5*time.Second, "healthy again", to(StateConnected))
	requireConsistent(t, rec.all())
}

// killed stops a broker process with SIGKILL, as a crash does.
type killed struct{ *broker.Process }

func (k killed) Stop() error { return k.Kill() }

// recordingBackOff wraps a policy and remembers what the client asked.
type recordingBackOff struct {
	mu     sync.Mutex
	inner  backoff.BackOff
	resets int
}

func (r *recordingBackOff) NextBackOff() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inner.NextBackOff()
}

func (r *recordingBackOff) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resets++
	r.inner.Reset()
}

func TestKickedClientBacksOffAndDoesNotReset(t *testing.T) {
	leakCheck(t)
	kick := &broker.KickAfterConnect{}
	b := startEmbedded(t, broker.WithHook(kick))
	exp := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(100*time.Millisecond),
		backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0), // exact delays to compare with
		backoff.WithMaxInterval(time.Minute),
		backoff.WithMaxElapsedTime(0),
	)
	bo := &recordingBackOff{inner: exp}
	c := newClient(t, WithBroker(b.URL()), WithBackoff(bo), WithStableAfter(5*time.Second))
	rec := record(c)
	connect(t, c)

	// Each kick ends a connection (or an attempt, when it lands before the
	// subscriptions are restored): the delays must keep growing — 100, 200,
	// 400, 800 ms — and the next connection must come no sooner than the
	// delay announced.
	isFailure := func(ev Event) bool { return ev.Err != nil }
	for i, want := range []time.Duration{100, 200, 400, 800} {
		want *= time.Millisecond
		kicked := rec.next(t, 5*time.Second, "kicked", isFailure)
		require.Equal(t, want, kicked.Delay, "kick %d", i)
		if i < 3 {
			next := rec.next(t, 5*time.Second, "next kick", isFailure)
			require.GreaterOrEqual(t, next.Time.Sub(kicked.Time), kicked.Delay, "kick %d: came back faster than the backoff allows", i)
			rec.unread() // the next kick is the next iteration's
		}
	}
	bo.mu.Lock()
	require.Zero(t, bo.resets, "short-lived connections must not reset the backoff")
	bo.mu.Unlock()
	require.LessOrEqual(t, kick.Count(), 6)
	requireConsistent(t, rec.all())
}

func TestWrongCredentialsAreClassified(t *testing.T) {
	leakCheck(t)
	m := startMosquitto(t, broker.MosquittoConfig{Users: map[string]string{"gateway": "right"}})

	c := newClient(t, WithBroker(m.URL()), WithCredentials("gateway", "wrong"),
		WithBackoff(backoff.NewConstantBackOff(retry)))
	rec := record(c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := c.Connect(ctx)
	require.ErrorIs(t, err, ErrNotAuthorized)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NotContains(t, err.Error(), "wrong")

	first := rec.next(t, time.Second, "refusal", func(ev Event) bool { return ev.Err != nil })
	second := rec.next(t, time.Second, "refusal", func(ev Event) bool { return ev.Err != nil })
	for _, ev := range []Event{first, second} {
		require.Equal(t, StateConnecting, ev.From)
		require.Equal(t, StateConnecting, ev.To)
		// Mosquitto 2.0 answers a wrong password with code 5, not 4.
		require.ErrorIs(t, ev.Err, ErrNotAuthorized)
		require.ErrorIs(t, ev.Err, ErrRefused)
	}
	require.Equal(t, first.Attempt+1, second.Attempt)
	require.GreaterOrEqual(t, second.Time.Sub(first.Time), retry, "refusals retried faster than the backoff")
	require.ErrorIs(t, c.Health().LastError, ErrNotAuthorized)

	// The right password in the URL wins over WithCredentials.
	good := newClient(t, WithBroker(strings.Replace(m.URL(), "tcp://", "tcp://gateway:right@", 1)),
		WithCredentials("gateway", "wrong"))
	connect(t, good)
	require.NotContains(t, good.Health().Broker, "right")
}

func TestConnectTimesOutButKeepsTrying(t *testing.T) {
	leakCheck(t)
	port, err := broker.FreePort()
	require.NoError(t, err)
	addr := "127.0.0.1:" + itoa(port)
	c := newClient(t, WithBroker("tcp://"+addr), WithBackoff(backoff.NewConstantBackOff(retry)))
	rec := record(c)

	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	err = c.Connect(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, syscall.ECONNREFUSED)

	// The manager goes on in the background: a broker appearing later is
	// found without another Connect.
	b, err := broker.StartEmbedded(addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Stop() })
	rec.next(t, 5*time.Second, "connected", to(StateConnected))
}

func TestFailoverRotatesBrokers(t *testing.T) {
	leakCheck(t)
	port, err := broker.FreePort()
	require.NoError(t, err)
	dead := "tcp://127.0.0.1:" + itoa(port)
	b := startEmbedded(t)
	c := newClient(t, WithBroker(dead, b.URL()), WithFixedBrokerOrder(), WithBackoff(backoff.NewConstantBackOff(10*time.Millisecond)))
	rec := record(c)
	connect(t, c)
	failed := rec.next(t, time.Second, "first broker refused", func(ev Event) bool { return ev.Err != nil })
	require.Equal(t, dead, failed.Broker)
	up := rec.next(t, time.Second, "connected", to(StateConnected))
	require.Equal(t, b.URL(), up.Broker)
}

func TestGivesUpWhenBackoffStops(t *testing.T) {
	leakCheck(t)
	port, err := broker.FreePort()
	require.NoError(t, err)
	c := newClient(t, WithBroker("tcp://127.0.0.1:"+itoa(port)),
		WithBackoff(backoff.WithMaxRetries(backoff.NewConstantBackOff(10*time.Millisecond), 2)))
	events := c.Watch(t.Context())
	err = c.Connect(t.Context())
	require.ErrorIs(t, err, ErrGaveUp)
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	require.Equal(t, StateClosed, c.State())
	// Closed for good: no goroutine left waiting for Close, calls refused.
	for range events {
	}
	require.ErrorIs(t, c.Publish(t.Context(), "a", nil), ErrClosed)
	require.ErrorIs(t, c.Subscribe(t.Context(), "a", 0, func(Message) {}), ErrClosed)
	require.ErrorIs(t, c.Connect(t.Context()), ErrClosed)
}

func TestCloseFromAnEventCallback(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	c := newClient(t, WithBroker(b.URL()))
	closed := make(chan error, 1)
	c.OnStateChange(func(ev Event) {
		if ev.To == StateConnected {
			closed <- c.Close(context.Background())
		}
	})
	connect(t, c)
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(drainTimeout + 3*time.Second):
		t.Fatal("Close called from a callback hangs")
	}
	require.Equal(t, StateClosed, c.State())
}

func TestPersistentSessionGetsOfflineSubscriptions(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	// A first run leaves a session on the broker.
	first := newClient(t, WithBroker(b.URL()), WithClientID("persistent"), WithCleanSession(false))
	connect(t, first)
	require.NoError(t, first.Subscribe(t.Context(), "old/topic", 1, func(Message) {}))
	require.NoError(t, first.Close(t.Context()))

	// The next run subscribes before connecting; the broker still has the
	// session, and must learn the new filter and forget the dropped one.
	got := make(chan Message, 4)
	second := newClient(t, WithBroker(b.URL()), WithClientID("persistent"), WithCleanSession(false))
	require.NoError(t, second.Subscribe(t.Context(), "new/topic", 1, func(m Message) { got <- m }))
	require.NoError(t, second.Unsubscribe(t.Context(), "old/topic"))
	connect(t, second)
	require.Eventually(t, func() bool { _, ok := second.GrantedQoS("new/topic"); return ok }, 5*time.Second, 10*time.Millisecond)

	pub := newClient(t, WithBroker(b.URL()))
	connect(t, pub)
	require.NoError(t, pub.Publish(t.Context(), "old/topic", []byte("stale"), WithQoS(1)))
	require.NoError(t, pub.Publish(t.Context(), "new/topic", []byte("fresh"), WithQoS(1)))
	select {
	case m := <-got:
		require.Equal(t, "fresh", string(m.Payload))
	case <-time.After(5 * time.Second):
		t.Fatal("the subscription made offline never reached the broker")
	}
}

func TestBlockedSubscriberDelaysNobody(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	c := newClient(t, WithBroker(b.URL()), WithClientID("blocked-sub"),
		WithBackoff(backoff.NewConstantBackOff(10*time.Millisecond)), WithEventBuffer(2))

	release := make(chan struct{})
	blocked := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	var afterRelease []Event
	c.OnStateChange(func(ev Event) {
		once.Do(func() { close(blocked); <-release }) // stuck on the first event
		mu.Lock()
		afterRelease = append(afterRelease, ev)
		mu.Unlock()
	})
	rec := record(c)
	connect(t, c)
	<-blocked

	// Several reconnects while that subscriber is stuck.
	for i := 0; i < 3; i++ {
		rec.next(t, 2*time.Second, "up", to(StateConnected))
		require.Eventually(t, func() bool { return b.Kick("blocked-sub") }, 2*time.Second, 5*time.Millisecond)
		rec.next(t, 2*time.Second, "lost", to(StateReconnecting))
	}
	rec.next(t, 2*time.Second, "up", to(StateConnected))
	require.Equal(t, StateConnected, c.State())
	require.Equal(t, StateConnected, c.Health().State)

	close(release)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := len(afterRelease)
		return n > 1 && afterRelease[n-1].To == StateConnected
	}, 2*time.Second, 10*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	dropped := 0
	for _, ev := range afterRelease {
		dropped += ev.Dropped
	}
	require.Greater(t, dropped, 0, "the laggard should have been told it missed events")
	last := afterRelease[len(afterRelease)-1]
	require.Equal(t, int(last.Seq), len(afterRelease)+dropped, "every event either delivered or counted")
}

func TestPanickingSubscriberIsLoggedAndKeepsReceiving(t *testing.T) {
	leakCheck(t)
	core, logs := observer.New(zap.InfoLevel)
	b := startEmbedded(t)
	c := newClient(t, WithBroker(b.URL()), WithLogger(zap.New(core)))
	var mu sync.Mutex
	var seen []State
	c.OnStateChange(func(ev Event) {
		mu.Lock()
		seen = append(seen, ev.To)
		mu.Unlock()
		if ev.To == StateConnecting {
			panic("subscriber bug")
		}
	})
	connect(t, c)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == 2 && seen[1] == StateConnected
	}, 2*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return logs.FilterMessageSnippet("panicked").Len() == 1 }, time.Second, 10*time.Millisecond)
}

func TestWatchDeliversUntilClosed(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	c := newClient(t, WithBroker(b.URL()))
	ch := c.Watch(t.Context())
	connect(t, c)
	require.Equal(t, StateConnecting, (<-ch).To)
	require.Equal(t, StateConnected, (<-ch).To)
	go func() { _ = c.Close(context.Background()) }()
	require.Equal(t, StateClosed, (<-ch).To)
	_, open := <-ch
	require.False(t, open, "Watch channel must be closed after the final event")

	// A watcher whose context ends is released too.
	c2 := newClient(t, WithBroker(b.URL()))
	ctx, cancel := context.WithCancel(t.Context())
	ch2 := c2.Watch(ctx)
	cancel()
	_, open = <-ch2
	require.False(t, open)
}

func TestHealthHandlers(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	c := newClient(t, WithBroker(b.URL()), WithClientID("probe-me"), WithBackoff(backoff.NewConstantBackOff(retry)))
	rec := record(c)
	ready := httptest.NewServer(ReadinessHandler(c))
	t.Cleanup(ready.Close)
	live := httptest.NewServer(LivenessHandler(c))
	t.Cleanup(live.Close)

	get := func(srv *httptest.Server) (int, ProbeReport) {
		t.Helper()
		resp, err := http.Get(srv.URL)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		var raw struct {
			OK      bool                       `json:"ok"`
			Clients map[string]json.RawMessage `json:"clients"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&raw))
		rep := ProbeReport{OK: raw.OK, Clients: map[string]Health{}}
		for id, h := range raw.Clients {
			var s struct {
				State string `json:"state"`
			}
			require.NoError(t, json.Unmarshal(h, &s))
			known := false
			for st := StateIdle; st <= StateClosed; st++ {
				if st.String() == s.State {
					rep.Clients[id], known = Health{State: st}, true
				}
			}
			require.True(t, known, "unknown state %q", s.State)
		}
		require.Contains(t, rep.Clients, "probe-me")
		return resp.StatusCode, rep
	}

	code, rep := get(ready)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, StateIdle, rep.Clients["probe-me"].State)

	connect(t, c)
	code, rep = get(ready)
	require.Equal(t, http.StatusOK, code)
	require.True(t, rep.OK)
	require.Equal(t, StateConnected, rep.Clients["probe-me"].State)

	require.NoError(t, b.Stop())
	rec.next(t, 5*time.Second, "reconnecting", to(StateReconnecting))
	code, rep = get(ready)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, StateReconnecting, rep.Clients["probe-me"].State)
	code, _ = get(live)
	require.Equal(t, http.StatusOK, code, "a reconnecting client is alive")

	require.NoError(t, b.Start())
	rec.next(t, 5*time.Second, "connected", to(StateConnected))
	code, _ = get(ready)
	require.Equal(t, http.StatusOK, code)

	require.NoError(t, c.Close(t.Context()))
	code, _ = get(live)
	require.Equal(t, http.StatusServiceUnavailable, code)
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// paho completes a failed Connect's token before it resets its own status;
// an immediate retry must still be a real attempt, not a paho status error.
func TestImmediateRetriesAreRealAttempts(t *testing.T) {
	leakCheck(t)
	port, err := broker.FreePort()
	require.NoError(t, err)
	c := newClient(t, WithBroker("tcp://127.0.0.1:"+itoa(port)),
		WithBackoff(backoff.WithMaxRetries(&backoff.ZeroBackOff{}, 300)), WithEventBuffer(1000))
	rec := record(c)
	require.ErrorIs(t, c.Connect(t.Context()), ErrGaveUp)
	rec.next(t, 5*time.Second, "closed", to(StateClosed))
	n := 0
	for _, ev := range rec.all() {
		if ev.Err != nil && ev.To != StateClosed {
			n++
			require.ErrorIs(t, ev.Err, syscall.ECONNREFUSED, "attempt %d", ev.Attempt)
		}
	}
	require.Equal(t, 300, n)
}

func TestInteropPublishSubscribe(t *testing.T) {
	brokers := map[string]func(t *testing.T) string{
		"embedded":  func(t *testing.T) string { return startEmbedded(t).URL() },
		"mosquitto": func(t *testing.T) string { return startMosquitto(t, broker.MosquittoConfig{}).URL() },
		"nats": func(t *testing.T) string {
			p, err := broker.StartNATS(t.TempDir())
			needBroker(t, err)
			t.Cleanup(func() { _ = p.Kill() })
			return p.URL()
		},
	}
	for name, start := range brokers {
		t.Run(name, func(t *testing.T) {
			leakCheck(t)
			opts := []Option{WithBroker(start(t)), WithClientID("interop-" + name)}
			if name == "nats" { // it speaks only 3.1.1: negotiation must land there
				opts = append(opts, WithProtocol(ProtocolAuto))
			}
			c := newClient(t, opts...)
			connect(t, c)
			if name == "nats" {
				require.Equal(t, ProtocolV311, c.Health().Protocol)
			}
			got := make(chan Message, 1)
			require.NoError(t, c.Subscribe(t.Context(), "interop/+/data", 1, func(m Message) { got <- m }))
			require.NoError(t, c.Publish(t.Context(), "interop/"+name+"/data", []byte("payload"), WithQoS(1)))
			select {
			case m := <-got:
				require.Equal(t, "interop/"+name+"/data", m.Topic)
				require.Equal(t, []byte("payload"), m.Payload)
				require.EqualValues(t, 1, m.QoS)
			case <-time.After(5 * time.Second):
				t.Fatal("message not received")
			}
			require.Equal(t, StateConnected, c.State())

			// Brokers may grant less than asked; nats-server grants at most 1.
			require.NoError(t, c.Subscribe(t.Context(), "interop/q2", 2, func(Message) {}))
			granted, ok := c.GrantedQoS("interop/q2")
			require.True(t, ok)
			if name == "nats" {
				require.EqualValues(t, 1, granted)
			} else {
				require.EqualValues(t, 2, granted)
			}
		})
	}
}

// With several endpoints, a loss sends the client to another one at once:
// the backoff (5 s here) is for a whole round of endpoints that failed.
func TestFailoverToAnotherEndpointDoesNotWaitTheBackoff(t *testing.T) {
	leakCheck(t)
	brokers := map[string]*broker.Embedded{}
	var urls []string
	for range 3 {
		b := startEmbedded(t)
		brokers[b.URL()] = b
		urls = append(urls, b.URL())
	}
	c := newClient(t, WithBroker(urls...), WithBackoff(backoff.NewConstantBackOff(5*time.Second)))
	rec := record(c)
	connect(t, c)
	on := c.Health().Broker
	require.NoError(t, brokers[on].Stop())
	lost := rec.next(t, 5*time.Second, "lost", to(StateReconnecting))
	require.Less(t, lost.Delay, 100*time.Millisecond, "the next endpoint is tried at once")
	back := rec.next(t, 2*time.Second, "connected elsewhere", to(StateConnected))
	require.NotEqual(t, on, back.Broker)
	t.Logf("moved from %s to %s in %v", on, back.Broker, back.Time.Sub(lost.Time).Round(time.Millisecond))
}

// Connected elsewhere, a client returns to its preferred endpoint once
// that one has been reachable for the hold, not before.
func TestReturnsToThePreferredEndpoint(t *testing.T) {
	leakCheck(t)
	a, b := startEmbedded(t), startEmbedded(t)
	const hold = 500 * time.Millisecond
	c := newClient(t, WithBroker(a.URL(), b.URL()), WithFixedBrokerOrder(), WithBrokerFailback(hold),
		WithBackoff(backoff.NewConstantBackOff(100*time.Millisecond)))
	rec := record(c)
	connect(t, c)
	require.Equal(t, a.URL(), rec.next(t, time.Second, "on a", to(StateConnected)).Broker)
	require.NoError(t, a.Stop())
	moved := rec.next(t, 5*time.Second, "on b", to(StateConnected))
	require.Equal(t, b.URL(), moved.Broker)

	require.NoError(t, a.Start())
	upAt := time.Now()
	back := rec.next(t, 5*time.Second, "back on a", func(ev Event) bool { return ev.To == StateConnected && ev.From != ev.To && ev.Broker == a.URL() })
	waited := back.Time.Sub(upAt)
	t.Logf("back on the preferred endpoint %v after it returned (hold %v, up to half again at random)", waited.Round(time.Millisecond), hold)
	require.GreaterOrEqual(t, waited, hold, "moved back before the hold")
	lostOnB := 0
	for _, ev := range rec.all() {
		if ev.Kind == KindState && ev.From.Up() && ev.To == StateReconnecting && ev.Broker == b.URL() {
			lostOnB++
			require.ErrorIs(t, ev.Err, ErrNetworkChanged, "the move back is the client's own")
		}
	}
	require.Equal(t, 1, lostOnB)
}
