package steadymqtt

import (
	"time"

	"github.com/steadymqtt/steadymqtt/internal/manager"
)

// Protocol is the MQTT version a client speaks: 3.1.1 on
// paho.mqtt.golang, 5 on paho.golang, or negotiated.
type Protocol = manager.Protocol

// The protocols for WithProtocol.
const (
	// ProtocolAuto tries MQTT 5 and falls back to 3.1.1 when the broker
	// refuses the version (nats-server and RabbitMQ 3.x do), remembering
	// the answer per broker for the client's life.
	ProtocolAuto = manager.ProtocolAuto
	// ProtocolV311 speaks MQTT 3.1.1 only.
	ProtocolV311 = manager.ProtocolV311
	// ProtocolV5 speaks MQTT 5 only.
	ProtocolV5 = manager.ProtocolV5
)

// WithProtocol chooses the MQTT version; see DefaultProtocol. Every
// guarantee of the client holds on both. On MQTT 5, reason codes are
// classified errors (*ReasonCodeError), idempotency keys travel as a user
// property, the broker's Receive Maximum bounds the in-flight window, and a
// server's DISCONNECT says why.
func WithProtocol(p Protocol) Option {
	return func(c *config) error {
		if p < ProtocolAuto || p > ProtocolV5 {
			return optionError("WithProtocol", "%d is not ProtocolAuto, ProtocolV311 or ProtocolV5", int(p))
		}
		c.protocol = p
		return nil
	}
}

// WithSessionExpiry sets MQTT 5's Session Expiry Interval: how long the
// broker keeps a persistent session (WithCleanSession(false)) after the
// connection ends, so that a gateway restarted within it finds its
// subscriptions and queued messages. MQTT 3.1.1 brokers keep a persistent
// session until they are told otherwise; on MQTT 5 a persistent session
// without WithSessionExpiry never expires, as on 3.1.1.
func WithSessionExpiry(d time.Duration) Option {
	return func(c *config) error {
		if d < time.Second || d > 0xFFFFFFFF*time.Second {
			return optionError("WithSessionExpiry", "%v is out of range [1s, 4294967295s]", d)
		}
		c.sessionExpiry = d
		return nil
	}
}
