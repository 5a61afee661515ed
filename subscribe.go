package steadymqtt

import (
	"context"
	"fmt"

	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/topic"
)

// Message is a message received on a subscription.
type Message struct {
	Topic     string
	Payload   []byte
	QoS       byte
	Retained  bool
	Duplicate bool
}

// MessageHandler receives the messages of one subscription, in order, on
// a goroutine of that subscription: a slow handler delays neither the
// connection's keepalive nor other subscriptions. A message is acknowledged
// to the broker once it is in the subscription's backlog. If the handler
// falls behind by more than the backlog (WithHandlerBacklog), messages are
// dropped, counted in Stats().HandlerDrops and reported by a
// KindHandlerOverflow event.
type MessageHandler func(Message)

// Subscribe registers h for filter and, when connected, subscribes at the
// broker and waits for its SUBACK. While disconnected the subscription is
// only registered and nil is returned: it is made at the next connection.
// The registry survives reconnects; a filter subscribed again replaces its
// handler. Shared subscriptions ($share/group/filter) are accepted; their
// messages arrive with the plain topic.
func (c *Client) Subscribe(ctx context.Context, filter string, qos byte, h MessageHandler) error {
	if _, err := topic.ValidateFilter(filter); err != nil {
		return err
	}
	if qos > 2 {
		return fmt.Errorf("%w: Subscribe: QoS %d is not 0, 1 or 2", ErrInvalidOption, qos)
	}
	if h == nil {
		return fmt.Errorf("%w: Subscribe: nil handler", ErrInvalidOption)
	}
	if c.isClosed() {
		return ErrClosed
	}
	deliver := func(m engine.Message) {
		h(Message{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retained: m.Retain, Duplicate: m.Duplicate})
	}
	if err := c.subs.Add(filter, qos, deliver); err != nil {
		return err
	}
	sess := c.liveSession()
	if sess == nil || !c.State().Up() {
		return nil // made at the next connection
	}
	return c.subs.Subscribe(ctx, sess, filter)
}

// GrantedQoS returns the QoS the broker granted for filter (brokers may
// grant less than asked: nats-server grants at most 1), and false when
// the filter is not subscribed in the current session.
func (c *Client) GrantedQoS(filter string) (byte, bool) { return c.subs.Granted(filter) }

// Unsubscribe removes filters from the registry and, when connected, from
// the broker. Messages already received for them are still handed to
// their handlers.
func (c *Client) Unsubscribe(ctx context.Context, filters ...string) error {
	for _, f := range filters {
		if _, err := topic.ValidateFilter(f); err != nil {
			return err
		}
	}
	if c.isClosed() {
		return ErrClosed
	}
	up := c.State().Up()
	if err := c.subs.Remove(filters, !up); err != nil {
		return err
	}
	sess := c.liveSession()
	if !up || sess == nil || len(filters) == 0 {
		return nil // told to the broker at the next connection, if it kept the session
	}
	return sess.Unsubscribe(ctx, filters...)
}
