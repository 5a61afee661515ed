package mqtttest

import (
	"context"
	"fmt"
	"slices"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// presence is the broker hook that keeps which clients hold a session:
// from the moment the broker accepted their CONNECT, before the CONNACK
// goes out (so a client that has its CONNACK is known), until their
// connection is closed.
type presence struct {
	mqtt.HookBase
	mu      sync.Mutex
	clients map[string]*mqtt.Client // closed ones too, until their disconnect
	changed chan struct{}           // closed and replaced at every change
}

func newPresence() *presence {
	return &presence{clients: make(map[string]*mqtt.Client), changed: make(chan struct{})}
}

func (p *presence) ID() string { return "mqtttest-presence" }

func (p *presence) Provides(b byte) bool {
	return b == mqtt.OnSessionEstablish || b == mqtt.OnDisconnect
}

func (p *presence) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clients[cl.ID] = cl
	p.notify()
}

// OnDisconnect forgets cl, unless another connection with its ID took its
// place meanwhile (a session taken over ends after the new one began).
func (p *presence) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.clients[cl.ID] == cl {
		delete(p.clients, cl.ID)
		p.notify()
	}
}

// reset forgets every client: the broker stopped.
func (p *presence) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.clients)
	p.notify()
}

func (p *presence) notify() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// live is the client with id if its connection is open; p.mu is held.
func (p *presence) live(id string) *mqtt.Client {
	if cl := p.clients[id]; cl != nil && !cl.Closed() {
		return cl
	}
	return nil
}

func (p *presence) get(id string) *mqtt.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.live(id)
}

func (p *presence) ids() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := make([]string, 0, len(p.clients))
	for id := range p.clients {
		if p.live(id) != nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// waitLive returns once the client with id is connected, or with ctx's
// error.
func (p *presence) waitLive(ctx context.Context, id string) error {
	for {
		p.mu.Lock()
		cl, changed := p.live(id), p.changed
		p.mu.Unlock()
		if cl != nil {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("mqtttest: client %q did not connect: %w", id, ctx.Err())
		}
	}
}

// Clients returns the IDs of the clients connected to the broker now
// (their CONNECT accepted, their connection not closed), sorted. Use it to
// check that a gateway holds exactly the connections it should.
func (b *Broker) Clients() []string { return b.presence.ids() }

// Connected reports whether a client with clientID is connected to the
// broker now.
func (b *Broker) Connected(clientID string) bool { return b.presence.get(clientID) != nil }

// WaitConnected returns once a client with clientID is connected to the
// broker, or with an error when ctx ends first. Use it instead of a sleep
// after starting a client, a Drop or a Start.
func (b *Broker) WaitConnected(ctx context.Context, clientID string) error {
	return b.presence.waitLive(ctx, clientID)
}
