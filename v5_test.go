package steadymqtt

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
	"github.com/steadymqtt/steadymqtt/internal/testsupport/netproxy"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// v5Brokers runs f against the embedded broker and Mosquitto, both
// speaking MQTT 5.
func v5Brokers(t *testing.T, cfg broker.MosquittoConfig, f func(t *testing.T, name, url, addr string)) {
	t.Run("mochi", func(t *testing.T) {
		b := startEmbedded(t)
		f(t, "mochi", b.URL(), b.Addr())
	})
	t.Run("mosquitto", func(t *testing.T) {
		m := startMosquitto(t, cfg)
		f(t, "mosquitto", m.URL(), m.Addr())
	})
}

// sentTally counts, per proxied connection, the packets clients sent.
type sentTally struct {
	mu      sync.Mutex
	parsers map[int]*wire.Parser
	counts  map[int]map[byte]int
}

func tallySent(p *netproxy.Proxy) *sentTally {
	s := &sentTally{parsers: map[int]*wire.Parser{}, counts: map[int]map[byte]int{}}
	p.Tap(func(conn int, b []byte) {
		s.mu.Lock()
		defer s.mu.Unlock()
		ps := s.parsers[conn]
		if ps == nil {
			ps = &wire.Parser{}
			s.parsers[conn], s.counts[conn] = ps, map[byte]int{}
		}
		ps.Feed(b, func(h wire.Header) { s.counts[conn][h.Type]++ })
	})
	return s
}

func (s *sentTally) count(conn int, typ byte) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[conn][typ]
}

func (s *sentTally) total(typ byte) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.counts {
		n += c[typ]
	}
	return n
}

// A PUBACK with 0x87 (not authorized; Mosquitto's ACL on MQTT 5) is a
// definite answer: Publish returns it, classified, and the message is not
// sent again.
func TestV5PubackRefusalIsAnError(t *testing.T) {
	leakCheck(t)
	acl := filepath.Join(t.TempDir(), "acl")
	require.NoError(t, os.WriteFile(acl, []byte("user gateway\ntopic readwrite gw/#\n"), 0o600))
	m := startMosquitto(t, broker.MosquittoConfig{Users: map[string]string{"gateway": "pw"}, Extra: []string{"acl_file " + acl}})
	c := newClient(t, WithBroker(m.URL()), WithCredentials("gateway", "pw"), WithProtocol(ProtocolV5))
	connect(t, c)
	require.Equal(t, ProtocolV5, c.Health().Protocol)

	err := c.Publish(t.Context(), "forbidden/t", []byte("x"), WithQoS(1))
	require.ErrorIs(t, err, ErrNotAuthorized)
	var rc *ReasonCodeError
	require.True(t, errors.As(err, &rc), "%v", err)
	require.Equal(t, byte(0x87), rc.Code)
	require.Equal(t, "PUBACK", rc.Packet)
	require.Zero(t, c.Health().Outbox, "refused for good: not kept for another try")
	require.EqualValues(t, 1, c.Stats().Failed[1])
	require.Equal(t, StateConnected, c.State(), "a refusal is no reason to drop the connection")
	require.NoError(t, c.Publish(t.Context(), "gw/ok", []byte("x"), WithQoS(1)))
}

// A server DISCONNECT says why: mochi sends "session taken over" (0x8E)
// when another client takes the client ID.
func TestV5ServerDisconnectReasonInTheEvent(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	c := newClient(t, WithBroker(b.URL()), WithClientID("twin"), WithProtocol(ProtocolV5),
		WithBackoff(NewFullJitterBackOff(time.Second, time.Second)))
	rec := record(c)
	connect(t, c)
	other := newClient(t, WithBroker(b.URL()), WithClientID("twin"), WithProtocol(ProtocolV5))
	connect(t, other)
	lost := rec.next(t, 5*time.Second, "taken over", to(StateReconnecting))
	var rc *ReasonCodeError
	require.True(t, errors.As(lost.Err, &rc), "%v", lost.Err)
	require.Equal(t, byte(0x8E), rc.Code)
	require.Equal(t, "DISCONNECT", rc.Packet)
	require.Contains(t, lost.Err.Error(), "session taken over")
}

// QoS 2 exactly once across a reconnect: the link is cut after the
// broker's PUBREC; the next connection finds the session and sends PUBREL,
// not a second PUBLISH, and the subscriber gets the message once.
func TestV5QoS2CompletedAfterACut(t *testing.T) {
	leakCheck(t)
	v5Brokers(t, broker.MosquittoConfig{}, func(t *testing.T, name, url, addr string) {
		leakCheck(t)
		k := subscriber(t, url, "once/#", WithProtocol(ProtocolV5))
		p, err := netproxy.Start(addr)
		require.NoError(t, err)
		t.Cleanup(func() { _ = p.Close() })
		sent := tallySent(p)
		c := newClient(t, WithBroker(p.URL()), WithClientID("qos2-"+name), WithCleanSession(false),
			WithProtocol(ProtocolV5), WithBackoff(NewFullJitterBackOff(10*time.Millisecond, 50*time.Millisecond)))
		rec := record(c)
		connect(t, c)
		// The broker's PUBCOMP never comes back on this connection.
		p.DropFromBroker(func(typ byte) bool { return typ == wire.PUBCOMP })
		d := c.PublishAsync(t.Context(), "once/t", []byte("exactly"), WithQoS(2))
		require.Eventually(t, func() bool { _, dropped := p.FromBroker(wire.PUBCOMP); return dropped == 1 },
			5*time.Second, time.Millisecond, "PUBREC answered with PUBREL, PUBCOMP held back")
		p.CutAll()
		p.DropFromBroker(nil)
		back := rec.next(t, 10*time.Second, "back", func(ev Event) bool { return ev.To == StateConnected && ev.From == StateReconnecting })
		require.True(t, back.SessionPresent)
		require.NoError(t, d.Wait(t.Context()))
		require.Equal(t, 1, sent.total(wire.PUBLISH), "one PUBLISH in all")
		require.Zero(t, sent.count(2, wire.PUBLISH), "not a second PUBLISH")
		require.GreaterOrEqual(t, sent.count(2, wire.PUBREL), 1, "the next connection sends PUBREL")
		fence(t, c, "once/fence")
		require.Eventually(t, func() bool { return k.has("fence") }, 5*time.Second, time.Millisecond)
		got := 0
		for _, pl := range k.payloads() {
			if pl == "exactly" {
				got++
			}
		}
		require.Equal(t, 1, got, "the subscriber gets it exactly once")
	})
}

// Keys travel as a user property on MQTT 5, so a v5 subscriber's
// DedupeHandler (envelope package) can drop repeats without an envelope,
// and the payload stays the application's.
func TestV5KeyAndPropertiesTravel(t *testing.T) {
	leakCheck(t)
	v5Brokers(t, broker.MosquittoConfig{}, func(t *testing.T, name, url, _ string) {
		leakCheck(t)
		got := make(chan Message, 1)
		sub := newClient(t, WithBroker(url), WithProtocol(ProtocolV5))
		require.NoError(t, sub.Subscribe(t.Context(), "props/t", 1, func(m Message) { got <- m }))
		connect(t, sub)
		pub := newClient(t, WithBroker(url), WithProtocol(ProtocolV5), WithKeyEnvelope())
		connect(t, pub)
		require.NoError(t, pub.Publish(t.Context(), "props/t", []byte(`{"t":21}`), WithQoS(1), WithIdempotencyKey("k-1"),
			WithContentType("application/json"), WithResponseTopic("props/reply"), WithCorrelationData([]byte{7}),
			WithUserProperty("site", "north")))
		m := <-got
		require.Equal(t, `{"t":21}`, string(m.Payload), "no envelope on MQTT 5")
		require.Equal(t, "k-1", m.Key)
		require.NotNil(t, m.Properties)
		require.Equal(t, "application/json", m.Properties.ContentType)
		require.Equal(t, "props/reply", m.Properties.ResponseTopic)
		require.Equal(t, []byte{7}, m.Properties.CorrelationData)
		require.Equal(t, []UserProperty{{"site", "north"}}, m.Properties.User)
	})
}

// A session outlives the gateway's process on MQTT 5 for its expiry: the
// process exits, messages are published meanwhile, and the next process
// finds the session and gets them.
func TestV5SessionSurvivesAGatewayRestart(t *testing.T) {
	leakCheck(t)
	v5Brokers(t, broker.MosquittoConfig{}, func(t *testing.T, name, url, _ string) {
		run := func(phase string) []string {
			t.Helper()
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "STEADYMQTT_CHILD="+phase, "STEADYMQTT_BROKER="+url, "STEADYMQTT_DIR=expiry-"+name)
			out, err := cmd.Output()
			require.NoError(t, err, "%s: %s", phase, out)
			var lines []string
			sc := bufio.NewScanner(strings.NewReader(string(out)))
			for sc.Scan() {
				lines = append(lines, sc.Text())
			}
			return lines
		}
		require.Equal(t, []string{"subscribed session=false"}, run("expiry-first"))
		pub := newClient(t, WithBroker(url), WithProtocol(ProtocolV5))
		connect(t, pub)
		for i := 0; i < 3; i++ {
			require.NoError(t, pub.Publish(t.Context(), "expiry/t", []byte(fmt.Sprint("while away ", i)), WithQoS(1)))
		}
		second := run("expiry-second")
		require.Equal(t, "session=true", second[0])
		// What the session queued is all there; mochi hands a resumed
		// session's queue over in no particular order.
		require.ElementsMatch(t, []string{"while away 0", "while away 1", "while away 2"}, second[1:])
	})
}

// childExpiry is the gateway process of TestV5SessionSurvivesAGatewayRestart.
func childExpiry(phase, url, id string) int {
	c, err := New(WithBroker(url), WithClientID(id), WithProtocol(ProtocolV5), WithCleanSession(false),
		WithSessionExpiry(60*time.Second))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	got := make(chan string, 8)
	if err := c.Subscribe(context.Background(), "expiry/t", 1, func(m Message) { got <- string(m.Payload) }); err != nil {
		fmt.Println("error", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		fmt.Println("error", err)
		return 1
	}
	present := c.Health().SessionPresent
	if phase == "expiry-first" {
		fmt.Printf("subscribed session=%v\n", present)
	} else {
		fmt.Printf("session=%v\n", present)
		for i := 0; i < 3; i++ {
			select {
			case m := <-got:
				fmt.Println(m)
			case <-ctx.Done():
				fmt.Println("error: only", i, "messages")
				return 1
			}
		}
	}
	if err := c.Close(context.Background()); err != nil {
		fmt.Println("error", err)
		return 1
	}
	return 0
}
