// Package broker runs real MQTT brokers for the quick start and the tests:
// the embedded mochi-mqtt server in-process, and Mosquitto or nats-server as
// child processes, each on its own loopback port.
package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Embedded is an in-process mochi-mqtt broker on a loopback port. It can be
// stopped and started again on the same port, which is how the quick start
// and the tests show a reconnect.
type Embedded struct {
	mu        sync.Mutex
	addr      string
	server    *mqtt.Server
	hooks     []mqtt.Hook
	logger    *slog.Logger
	tls       *tls.Config
	websocket bool
}

// EmbeddedOption adds behaviour to an embedded broker.
type EmbeddedOption func(*Embedded)

// WithHook adds a mochi hook (after the allow-all auth hook).
func WithHook(h mqtt.Hook) EmbeddedOption { return func(e *Embedded) { e.hooks = append(e.hooks, h) } }

// WithTLS serves TLS with cfg (set ClientAuth for mutual TLS).
func WithTLS(cfg *tls.Config) EmbeddedOption { return func(e *Embedded) { e.tls = cfg } }

// WithWebSocket serves MQTT over WebSocket instead of plain TCP.
func WithWebSocket() EmbeddedOption { return func(e *Embedded) { e.websocket = true } }

// WithLog sends the broker's log to w.
func WithLog(w io.Writer) EmbeddedOption {
	return func(e *Embedded) { e.logger = slog.New(slog.NewTextHandler(w, nil)) }
}

// StartEmbedded starts a broker on addr ("127.0.0.1:0" picks a free port).
func StartEmbedded(addr string, opts ...EmbeddedOption) (*Embedded, error) {
	e := &Embedded{addr: addr, logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, o := range opts {
		o(e)
	}
	if err := e.Start(); err != nil {
		return nil, err
	}
	return e, nil
}

// Start starts the broker again on the port it had (after Stop).
func (e *Embedded) Start() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.server != nil {
		return nil
	}
	s := mqtt.New(&mqtt.Options{InlineClient: true, Logger: e.logger})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		return err
	}
	for _, h := range e.hooks {
		if err := s.AddHook(h, nil); err != nil {
			return err
		}
	}
	if e.websocket && strings.HasSuffix(e.addr, ":0") {
		// mochi's WebSocket listener cannot tell the port it got.
		port, err := FreePort()
		if err != nil {
			return err
		}
		e.addr = net.JoinHostPort(strings.TrimSuffix(e.addr, ":0"), strconv.Itoa(port))
	}
	lc := listeners.Config{ID: listenerID, Address: e.addr, TLSConfig: e.tls}
	var l listeners.Listener = listeners.NewTCP(lc)
	if e.websocket {
		l = listeners.NewWebsocket(lc)
	}
	if err := s.AddListener(l); err != nil {
		return fmt.Errorf("embedded broker: listen on %s: %w", e.addr, err)
	}
	if err := s.Serve(); err != nil {
		_ = s.Close()
		return err
	}
	e.addr = l.Address() // keep the port for a restart
	e.server = s
	if e.websocket { // it listens on a goroutine of its own
		return waitListening(e.addr)
	}
	return nil
}

// listenerID names the one listener of an embedded broker.
const listenerID = "l"

// Stop closes the broker and every client connection.
func (e *Embedded) Stop() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.server == nil {
		return nil
	}
	// mochi 2.7.9 can deadlock in Server.Close when a client goes away
	// meanwhile (mochi #488: GetByListener takes its read lock twice, and a
	// client's removal waits between the two). Closing the listener first,
	// with the clients stopped through GetAll, leaves Close a listener
	// already closed, for which it does not look the clients up again.
	s := e.server
	s.Listeners.Close(listenerID, func(string) {
		for _, cl := range s.Clients.GetAll() {
			_ = s.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	})
	// The WebSocket listener looks its clients up at every Close: let the
	// removals finish first.
	for deadline := time.Now().Add(2 * time.Second); e.websocket && connected(s) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	e.server = nil
	// mochi 2.7.9 has a second such lock inversion in its in-flight table
	// (Inflight.NextImmediate read-locks twice): a client stuck in it keeps
	// Close waiting for ever. A stop that does not finish is reported, not
	// waited for, so a test fails instead of hanging the run.
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		return ErrStuck
	}
}

// ErrStuck is returned by Stop when the broker did not stop within 10 s.
var ErrStuck = errors.New("embedded broker: mochi did not stop within 10 s (a lock inversion in mochi 2.7.9)")

// connected reports whether a network client is still being removed.
func connected(s *mqtt.Server) bool {
	for _, cl := range s.Clients.GetAll() {
		if !cl.Net.Inline {
			return true
		}
	}
	return false
}

// Addr is host:port of the listener.
func (e *Embedded) Addr() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.addr
}

// URL is the URL of the listener: tcp://, ssl://, ws:// or wss://.
func (e *Embedded) URL() string {
	scheme := map[[2]bool]string{{false, false}: "tcp", {false, true}: "ssl", {true, false}: "ws", {true, true}: "wss"}
	return scheme[[2]bool{e.websocket, e.tls != nil}] + "://" + e.Addr()
}

// Kick drops the client with id from the broker side, as a broker does to a
// client whose ID another client just took. It reports whether the client
// was connected.
func (e *Embedded) Kick(id string) bool {
	e.mu.Lock()
	s := e.server
	e.mu.Unlock()
	if s == nil {
		return false
	}
	cl, ok := s.Clients.Get(id)
	if !ok || cl.Closed() {
		return false
	}
	cl.Stop(packets.ErrSessionTakenOver)
	return true
}

// ClientRemote returns the source address the broker sees for client id.
func (e *Embedded) ClientRemote(id string) (net.Addr, bool) {
	e.mu.Lock()
	s := e.server
	e.mu.Unlock()
	if s == nil {
		return nil, false
	}
	cl, ok := s.Clients.Get(id)
	if !ok || cl.Closed() {
		return nil, false
	}
	addr, err := net.ResolveTCPAddr("tcp", cl.Net.Remote)
	if err != nil {
		return nil, false
	}
	return addr, true
}

// KickAfterConnect is a hook that drops every client right after its
// CONNACK: a broker that accepts and then throws the client out (an ACL
// kick, a duplicate client ID), forever.
type KickAfterConnect struct {
	mqtt.HookBase
	mu    sync.Mutex
	count int
}

// ID names the hook.
func (h *KickAfterConnect) ID() string { return "kick-after-connect" }

// Provides says which events the hook handles.
func (h *KickAfterConnect) Provides(b byte) bool { return b == mqtt.OnSessionEstablished }

// OnSessionEstablished drops the client once its CONNACK went out.
func (h *KickAfterConnect) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.mu.Lock()
	h.count++
	h.mu.Unlock()
	cl.Stop(packets.ErrNotAuthorized)
}

// Count is how many sessions were established (and kicked).
func (h *KickAfterConnect) Count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.count
}

func waitListening(addr string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("embedded broker: nothing listens on %s: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// KickOnTopic drops a client as soon as it publishes to Topic: a broker
// that cannot take a message (too large, a QoS it does not support, an
// ACL that disconnects).
type KickOnTopic struct {
	mqtt.HookBase
	Topic string
}

// ID names the hook.
func (h *KickOnTopic) ID() string { return "kick-on-topic" }

// Provides says which events the hook handles.
func (h *KickOnTopic) Provides(b byte) bool { return b == mqtt.OnPublish }

// OnPublish drops the publisher of Topic before the message goes anywhere.
func (h *KickOnTopic) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.TopicName == h.Topic {
		cl.Stop(packets.ErrRejectPacket)
		return pk, packets.ErrRejectPacket
	}
	return pk, nil
}

// CountPublishes counts the PUBLISH packets the broker received, by topic
// and payload.
type CountPublishes struct {
	mqtt.HookBase
	mu     sync.Mutex
	counts map[string]int
}

// ID names the hook.
func (h *CountPublishes) ID() string { return "count-publishes" }

// Provides says which events the hook handles.
func (h *CountPublishes) Provides(b byte) bool { return b == mqtt.OnPublish }

// OnPublish counts.
func (h *CountPublishes) OnPublish(_ *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	h.mu.Lock()
	if h.counts == nil {
		h.counts = make(map[string]int)
	}
	h.counts[pk.TopicName+" "+string(pk.Payload)]++
	h.mu.Unlock()
	return pk, nil
}

// Count is how many PUBLISH packets came with topic and payload.
func (h *CountPublishes) Count(topic, payload string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counts[topic+" "+payload]
}
