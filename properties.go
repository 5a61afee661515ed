package steadymqtt

import (
	"time"

	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/keyenvelope"
)

// Properties are the MQTT 5 properties of a message that applications
// use. On a connection that speaks MQTT 3.1.1 they are not sent, and
// received messages have none.
type Properties struct {
	ContentType     string
	ResponseTopic   string
	CorrelationData []byte
	MessageExpiry   time.Duration // 0: none; whole seconds on the wire
	User            []UserProperty
}

// UserProperty is one MQTT 5 user property; a key may repeat.
type UserProperty struct{ Key, Value string }

// WithContentType sets the MQTT 5 Content Type (a MIME type).
func WithContentType(t string) PublishOption {
	return func(p *publishConfig) error { p.propsFor().ContentType = t; return nil }
}

// WithResponseTopic sets the MQTT 5 Response Topic, where a responder
// should answer (request/response).
func WithResponseTopic(t string) PublishOption {
	return func(p *publishConfig) error { p.propsFor().ResponseTopic = t; return nil }
}

// WithCorrelationData sets the MQTT 5 Correlation Data a responder sends
// back with its answer.
func WithCorrelationData(b []byte) PublishOption {
	return func(p *publishConfig) error { p.propsFor().CorrelationData = append([]byte(nil), b...); return nil }
}

// WithUserProperty adds an MQTT 5 user property; call it again for more.
func WithUserProperty(key, value string) PublishOption {
	return func(p *publishConfig) error {
		if key == keyenvelope.UserProperty {
			return optionError("WithUserProperty", "%q carries the idempotency key (WithIdempotencyKey)", key)
		}
		p.propsFor().User = append(p.propsFor().User, UserProperty{key, value})
		return nil
	}
}

// WithMessageExpiry sets the MQTT 5 Message Expiry Interval: the broker
// drops the message if it could not deliver it within d.
func WithMessageExpiry(d time.Duration) PublishOption {
	return func(p *publishConfig) error {
		if d < time.Second || d > 0xFFFFFFFF*time.Second {
			return optionError("WithMessageExpiry", "%v is out of range [1s, 4294967295s]", d)
		}
		p.propsFor().MessageExpiry = d
		return nil
	}
}

func (p *publishConfig) propsFor() *Properties {
	if p.props == nil {
		p.props = &Properties{}
	}
	return p.props
}

func (p *Properties) engine() *engine.Properties {
	if p == nil {
		return nil
	}
	out := &engine.Properties{ContentType: p.ContentType, ResponseTopic: p.ResponseTopic,
		CorrelationData: p.CorrelationData, MessageExpiry: p.MessageExpiry}
	for _, u := range p.User {
		out.User = append(out.User, engine.UserProperty{Key: u.Key, Value: u.Value})
	}
	return out
}

// fromEngine is a received message's properties; the idempotency key's own
// user property becomes Message.Key.
func fromEngine(in *engine.Properties) (props *Properties, key string) {
	if in == nil {
		return nil, ""
	}
	p := &Properties{ContentType: in.ContentType, ResponseTopic: in.ResponseTopic,
		CorrelationData: in.CorrelationData, MessageExpiry: in.MessageExpiry}
	for _, u := range in.User {
		if u.Key == keyenvelope.UserProperty && key == "" {
			key = u.Value
			continue
		}
		p.User = append(p.User, UserProperty{u.Key, u.Value})
	}
	return p, key
}
