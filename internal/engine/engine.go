// Package engine is the seam between the connection manager and an MQTT
// protocol implementation. An engine speaks MQTT over a connection that
// the dial stage opened and the wire stage observes; it never dials, never
// reconnects and never pings: one manager owns the retries and one monitor
// the keepalive.
//
// The shape fits both paho.mqtt.golang (MQTT 3.1.1: given the connection
// through its open-connection hook, acknowledgements confirmed on the wire
// because its tokens are not proof) and paho.golang's paho package (MQTT 5:
// ClientConfig.Conn, PublishResponse with reason codes).
package engine

import (
	"context"
	"time"

	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// Engine makes sessions of one protocol version.
type Engine interface {
	// Connect sends CONNECT over conn and waits for CONNACK, or until ctx
	// ends. A refusal is an *errs.ConnectRefusedError. On error, conn is
	// closed.
	Connect(ctx context.Context, conn *wire.Conn, o Options) (Session, error)
}

// Options are the CONNECT fields and the receive path of one session.
type Options struct {
	ClientID           string
	Username, Password string
	CleanSession       bool
	KeepAlive          time.Duration // sent in CONNECT; the engine itself does not ping
	Will               *Message
	// SessionExpiry is MQTT 5's Session Expiry Interval (0: the session
	// ends with the connection, unless CleanSession is false, when an
	// engine of MQTT 5 asks for the longest); MQTT 3.1.1 ignores it.
	SessionExpiry time.Duration
	// OnMessage receives every PUBLISH from the broker, in order, on the
	// engine's receive path: it must not block. The engine acknowledges
	// the message once OnMessage returns.
	OnMessage func(Message)
	// OnDisconnect receives a server's DISCONNECT (MQTT 5), before the
	// session's Lost reports the loss.
	OnDisconnect func(*errs.ReasonCodeError, string) // the reason; the server reference, if any
}

// Message is one application message, either way.
type Message struct {
	Topic     string
	Payload   []byte
	QoS       byte
	Retain    bool
	Duplicate bool
	// MQTT 5 properties; an engine of 3.1.1 ignores them on the way out
	// and leaves them empty on the way in.
	Props *Properties
}

// Properties are the MQTT 5 properties of a message that applications use.
type Properties struct {
	ContentType     string
	ResponseTopic   string
	CorrelationData []byte
	MessageExpiry   time.Duration // 0: none
	User            []UserProperty
}

// UserProperty is one MQTT 5 user property; a key may repeat.
type UserProperty struct{ Key, Value string }

// Session is one MQTT connection, from CONNACK to its loss.
type Session interface {
	// SessionPresent is the CONNACK's session-present flag.
	SessionPresent() bool
	// Publish hands m to the connection and returns at once; messages
	// handed over one after the other are written in that order.
	Publish(m Message) Pending
	// Subscribe subscribes to one filter and returns the QoS granted.
	Subscribe(ctx context.Context, filter string, qos byte) (granted byte, err error)
	// Unsubscribe removes filters at the broker.
	Unsubscribe(ctx context.Context, filters ...string) error
	// Disconnect sends DISCONNECT, waiting at most quiesce for work in
	// progress, and closes the connection.
	Disconnect(quiesce time.Duration)
	// Acks counts the acknowledgements (PUBACK, PUBCOMP) received so far on
	// this connection: the sender tells a message after which the broker
	// acknowledged nothing from one that was collateral.
	Acks() uint64
	// Lost delivers, once, why the connection ended; the connection is
	// closed by then (the keepalive, which runs until it closes, is what
	// the manager waits on).
	Lost() <-chan error
	// Version is the protocol level spoken: 4 (3.1.1) or 5.
	Version() byte
	// ReceiveMaximum is how many QoS 1 and 2 messages the broker takes
	// unacknowledged at once (MQTT 5 CONNACK); 0: no limit said.
	ReceiveMaximum() int
	// ClientID is the client identifier in use: the broker may assign one
	// (MQTT 5) when the CONNECT had none.
	ClientID() string
}

// Pending is one published message on its way.
type Pending interface {
	// Done is closed when the message has an outcome on this connection;
	// with a persistent session it may stay open when the connection ends.
	Done() <-chan struct{}
	// Acked reports, after Done, whether the broker's acknowledgement
	// (PUBACK, PUBCOMP; for QoS 0, the write) was seen for it. Only then is
	// the message delivered.
	Acked() bool
	// Err is why the message was not acknowledged, after Done.
	Err() error
	// Refused reports whether the connection refused the hand-off at once
	// (its writer was busy): nothing was written and nothing after it was
	// handed over, so the message may be handed over again.
	Refused() bool
}
