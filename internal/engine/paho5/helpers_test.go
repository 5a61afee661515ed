package paho5

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
	"github.com/steadymqtt/steadymqtt/internal/testsupport/netproxy"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// leakCheck must be the first call of a test: cleanups run last-in
// first-out, so the check runs after the engines and brokers are gone.
func leakCheck(t *testing.T) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
}

// target is a broker a test runs against.
type target struct {
	name string
	addr string
}

func startEmbedded(t *testing.T) target {
	t.Helper()
	b, err := broker.StartEmbedded("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Stop() })
	return target{"mochi", b.Addr()}
}

// needBroker skips when a broker binary is missing, unless the
// interoperability tests are required.
func needBroker(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, broker.ErrNotInstalled) && os.Getenv("STEADYMQTT_REQUIRE_INTEROP") != "1" {
		t.Skipf("skipping: %v (set STEADYMQTT_REQUIRE_INTEROP=1 to make this a failure)", err)
	}
	require.NoError(t, err)
}

func startMosquitto(t *testing.T, cfg broker.MosquittoConfig) *broker.Process {
	t.Helper()
	p, err := broker.StartMosquitto(t.TempDir(), cfg)
	needBroker(t, err)
	t.Cleanup(func() {
		_ = p.Kill()
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", p.LogText())
		}
	})
	return p
}

// brokers is the embedded broker and, when installed, Mosquitto; each
// runs as a subtest.
func brokers(t *testing.T, cfg broker.MosquittoConfig, run func(t *testing.T, b target)) {
	t.Run("mochi", func(t *testing.T) { run(t, startEmbedded(t)) })
	t.Run("mosquitto", func(t *testing.T) {
		p := startMosquitto(t, cfg)
		run(t, target{"mosquitto", p.Addr()})
	})
}

// mochiServer is an in-process mochi broker with capabilities and hooks
// of the test's choosing. allowAll adds the allow-all auth hook first.
func mochiServer(t *testing.T, caps func(*mqtt.Capabilities), allowAll bool, hooks ...mqtt.Hook) string {
	t.Helper()
	c := mqtt.NewDefaultServerCapabilities()
	if caps != nil {
		caps(c)
	}
	s := mqtt.New(&mqtt.Options{InlineClient: true, Capabilities: c, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if allowAll {
		require.NoError(t, s.AddHook(new(auth.AllowHook), nil))
	}
	for _, h := range hooks {
		require.NoError(t, s.AddHook(h, nil))
	}
	l := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"})
	require.NoError(t, s.AddListener(l))
	require.NoError(t, s.Serve())
	t.Cleanup(func() { _ = s.Close() })
	return l.Address()
}

// gate is a mochi hook: a password, and topics no one may use.
type gate struct {
	mqtt.HookBase
	password string // "" lets everyone in
	denied   string // topic prefix refused to publish and subscribe
}

func (g *gate) ID() string { return "gate" }
func (g *gate) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}
func (g *gate) OnConnectAuthenticate(_ *mqtt.Client, pk packets.Packet) bool {
	return g.password == "" || string(pk.Connect.Password) == g.password
}
func (g *gate) OnACLCheck(_ *mqtt.Client, topic string, _ bool) bool {
	return g.denied == "" || !strings.HasPrefix(topic, g.denied)
}

// serverKeepAlive is a mochi hook that answers every CONNECT with a
// Server Keep Alive.
type serverKeepAlive struct {
	mqtt.HookBase
	seconds uint16
}

func (h *serverKeepAlive) ID() string           { return "server-keepalive" }
func (h *serverKeepAlive) Provides(b byte) bool { return b == mqtt.OnConnect }
func (h *serverKeepAlive) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	cl.State.ServerKeepalive = true
	cl.State.Keepalive = h.seconds
	return nil
}

// aclFile writes a Mosquitto ACL that lets anonymous clients use only
// topics under allowed/.
func aclFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "acl")
	require.NoError(t, os.WriteFile(p, []byte("topic readwrite allowed/#\n"), 0o600))
	return p
}

func dial(t *testing.T, addr string) *wire.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	require.NoError(t, err)
	return wire.NewConn(c, nil)
}

func connectErr(e *Engine, conn *wire.Conn, o engine.Options) (Session, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.Connect(ctx, conn, o)
	if err != nil {
		return nil, err
	}
	return s.(Session), nil
}

// connect opens a session on a new connection to addr; it is
// disconnected when the test ends.
func connect(t *testing.T, e *Engine, addr string, o engine.Options) Session {
	t.Helper()
	s, err := connectErr(e, dial(t, addr), o)
	require.NoError(t, err)
	t.Cleanup(func() { s.Disconnect(0) })
	return s
}

// newEngine is an engine closed when the test ends.
func newEngine(t *testing.T) *Engine {
	t.Helper()
	e := New()
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// inbox collects the messages a session receives.
type inbox struct {
	mu   sync.Mutex
	msgs []engine.Message
	in   chan struct{}
}

func newInbox() *inbox { return &inbox{in: make(chan struct{}, 1)} }

func (b *inbox) on(m engine.Message) {
	b.mu.Lock()
	b.msgs = append(b.msgs, m)
	b.mu.Unlock()
	select {
	case b.in <- struct{}{}:
	default:
	}
}

func (b *inbox) all() []engine.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]engine.Message(nil), b.msgs...)
}

// wait returns once n messages came, failing after d.
func (b *inbox) wait(t *testing.T, n int, d time.Duration) []engine.Message {
	t.Helper()
	deadline := time.After(d)
	for {
		if m := b.all(); len(m) >= n {
			return m
		}
		select {
		case <-b.in:
		case <-deadline:
			require.Failf(t, "messages missing", "%d of %d came", len(b.all()), n)
		}
	}
}

// subscriber is a session on its own engine that collects what comes on
// filter.
func subscriber(t *testing.T, addr, id, filter string, qos byte) *inbox {
	t.Helper()
	box := newInbox()
	s := connect(t, newEngine(t), addr, engine.Options{ClientID: id, CleanSession: true, KeepAlive: 30 * time.Second, OnMessage: box.on})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := s.Subscribe(ctx, filter, qos)
	require.NoError(t, err)
	return box
}

func waitDone(t *testing.T, p engine.Pending, d time.Duration) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(d):
		require.FailNow(t, "no outcome in time")
	}
}

func waitLost(t *testing.T, s engine.Session, d time.Duration) error {
	t.Helper()
	select {
	case err := <-s.Lost():
		return err
	case <-time.After(d):
		require.FailNow(t, "the loss was not reported in time")
	}
	return nil
}

// tally counts the packets clients send through a proxy, per connection.
type tally struct {
	mu      sync.Mutex
	parsers map[int]*wire.Parser
	counts  map[int]map[byte]int
	dup     map[int]int // PUBLISH packets with DUP set
}

func tap(p *netproxy.Proxy) *tally {
	t := &tally{parsers: map[int]*wire.Parser{}, counts: map[int]map[byte]int{}, dup: map[int]int{}}
	p.Tap(func(conn int, b []byte) {
		t.mu.Lock()
		defer t.mu.Unlock()
		ps := t.parsers[conn]
		if ps == nil {
			ps = new(wire.Parser)
			t.parsers[conn] = ps
			t.counts[conn] = map[byte]int{}
		}
		ps.Feed(b, func(h wire.Header) {
			t.counts[conn][h.Type]++
			if h.Type == wire.PUBLISH && h.Flags&0x08 != 0 {
				t.dup[conn]++
			}
		})
	})
	return t
}

func (t *tally) count(conn int, packetType byte) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counts[conn][packetType]
}

func (t *tally) dups(conn int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dup[conn]
}

var errDeadline = context.DeadlineExceeded

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// eventually waits for cond, failing after d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			require.FailNow(t, "timed out waiting: "+what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
