package sender

import (
	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/keyenvelope"
	"github.com/steadymqtt/steadymqtt/internal/outbox"
)

// toWire is the message as the live connection's protocol carries it: on
// MQTT 5 the idempotency key travels as a user property and the payload is
// the application's; on 3.1.1, with the envelope on, the key is sealed into
// the payload. The outbox keeps the application's payload, so one record
// serves either protocol (a record written sealed by an earlier version is
// recognised, not sealed twice).
func (s *Sender) toWire(e *outbox.Entry, version byte) engine.Message {
	m := engine.Message{Topic: e.Topic, Payload: e.Payload, QoS: e.QoS, Retain: e.Retain, Props: e.Props}
	if e.Key == "" {
		return m
	}
	key, body, sealed := keyenvelope.Open(e.Payload)
	sealed = sealed && key == e.Key
	switch {
	case version >= 5:
		if sealed {
			m.Payload = body
		}
		props := engine.Properties{}
		if e.Props != nil {
			props = *e.Props
		}
		props.User = append(append([]engine.UserProperty(nil), props.User...), engine.UserProperty{Key: keyenvelope.UserProperty, Value: e.Key})
		m.Props = &props
	case s.cfg.Envelope && !sealed:
		m.Payload = keyenvelope.Seal(e.Key, e.Payload)
	}
	return m
}
