package steadymqtt

import (
	"context"
	"encoding/json"
	"errors"
	"runtime/debug"
	"time"

	"go.uber.org/zap"

	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/manager"
	"github.com/steadymqtt/steadymqtt/internal/topic"
)

// Presence: a fleet watches gateways/+/status. The will alone can say
// "offline" but never "online", nor which link a gateway is on; so the
// client publishes a retained "online" message on every connection before
// anything else, leaves a retained "offline" will, and publishes "offline"
// itself on Close (a clean DISCONNECT makes the broker drop the will).

// WithPresence publishes the client's presence on topic: a retained QoS 1
// JSON message, {"status":"online", "client_id", "broker", "interface",
// "local_addr", "session_present", "since", "version"}, on every
// connection before anything else is sent; "offline" as the will, which
// the broker publishes when the client vanishes; and "offline" on Close.
// It sets the will, so it cannot be combined with WithWill.
func WithPresence(topicName string) Option {
	return func(c *config) error {
		if err := topic.Validate(topicName); err != nil {
			return errors.Join(optionError("WithPresence", "%q is not a topic to publish to", topicName), err)
		}
		c.presence = topicName
		return nil
	}
}

// Presence is the JSON document of WithPresence.
type Presence struct {
	Status         string    `json:"status"` // "online" or "offline"
	ClientID       string    `json:"client_id"`
	Broker         string    `json:"broker,omitempty"` // redacted
	Interface      string    `json:"interface,omitempty"`
	LocalAddr      string    `json:"local_addr,omitempty"`
	SessionPresent bool      `json:"session_present,omitempty"`
	Since          time.Time `json:"since,omitzero"`   // when it came online or went offline
	Reason         string    `json:"reason,omitempty"` // offline: "closed" or "connection lost"
	Version        string    `json:"version"`          // of steadymqtt
}

func (p Presence) encode() []byte {
	b, _ := json.Marshal(p) // strings, a bool and a time: cannot fail
	return b
}

// presenceWill is the offline message the broker keeps for the client.
func presenceWill(topicName, clientID string) *engine.Message {
	p := Presence{Status: "offline", ClientID: clientID, Reason: "connection lost", Version: version()}
	return &engine.Message{Topic: topicName, Payload: p.encode(), QoS: 1, Retain: true}
}

// announce publishes "online" on a new connection.
func (c *Client) announce(ctx context.Context, sess engine.Session, l manager.Link) {
	p := Presence{
		Status: "online", ClientID: c.cfg.clientID, Broker: l.Broker, Interface: l.Interface,
		SessionPresent: l.SessionPresent, Since: c.cfg.clock.Now().UTC(), Version: version(),
	}
	if l.Local != nil {
		p.LocalAddr = l.Local.String()
	}
	c.sendPresence(ctx, sess, p)
}

// farewell publishes "offline" before a graceful DISCONNECT.
func (c *Client) farewell(ctx context.Context, sess engine.Session) {
	p := Presence{Status: "offline", ClientID: c.cfg.clientID, Since: c.cfg.clock.Now().UTC(), Reason: "closed", Version: version()}
	c.sendPresence(ctx, sess, p)
}

// sendPresence goes straight to the session, ahead of the outbox: the
// presence message says what the link is now, so replaying it later, or
// after messages queued while offline, would say something stale. A failure
// is logged, not retried: the next connection announces itself again.
func (c *Client) sendPresence(ctx context.Context, sess engine.Session, p Presence) {
	pend := sess.Publish(engine.Message{Topic: c.cfg.presence, Payload: p.encode(), QoS: 1, Retain: true})
	select {
	case <-pend.Done():
		if pend.Acked() {
			return
		}
		c.log.Warn("presence message not acknowledged", zap.String("status", p.Status), zap.Error(pend.Err()))
	case <-ctx.Done():
		c.log.Warn("presence message not acknowledged in time", zap.String("status", p.Status), zap.Error(ctx.Err()))
	}
}

// OnConnect calls fn each time the client has a new connection (the event
// entering StateConnected from connecting or reconnecting, not a recovery
// from degraded), after its subscriptions are restored and its presence
// announced. It is the place for an application's own birth messages: fn
// runs on a goroutine of its own, as OnStateChange subscribers do, so it may
// call Publish and wait for the acknowledgement. Messages it publishes go
// out after those already in the outbox.
func (c *Client) OnConnect(fn func(Event)) (cancel func()) {
	return c.subscribeEvents(func(ev Event) bool {
		return ev.Kind == KindState && ev.To == StateConnected &&
			(ev.From == StateConnecting || ev.From == StateReconnecting)
	}, fn)
}

// version is this module's version as the binary was built with it.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == modulePath {
				return d.Version
			}
		}
		if bi.Main.Path == modulePath && bi.Main.Version != "" {
			return bi.Main.Version
		}
	}
	return "(devel)"
}

const modulePath = "github.com/steadymqtt/steadymqtt"
