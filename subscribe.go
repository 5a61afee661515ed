package steadymqtt

import (
	"context"
	"errors"
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
	// Properties are the MQTT 5 properties; nil on MQTT 3.1.1.
	Properties *Properties
	// Key is the publisher's idempotency key when an MQTT 5 publisher sent
	// it (as a user property); envelope.DedupeHandler drops repeats by it.
	Key string
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
// broker and waits for its SUBACK. The registry survives reconnects: the
// subscription is made again whenever the broker lost the session. A
// filter subscribed again replaces its handler. Shared subscriptions
// ($share/group/filter) are accepted; their messages arrive with the plain
// topic.
//
// What it returns says what happened to the subscription: nil once it is
// registered and either granted by the broker or, with no connection up
// (or one lost before the SUBACK), to be made at the next connection. An
// error means it is not registered (ErrInvalidTopic, ErrInvalidOption,
// ErrClosed, or ErrSubscriptionRefused when the broker refused it: then a
// subscription the filter had before stands, handler and all), except
// for ctx's own error: then the caller stopped waiting, and, as with a
// Publish whose ctx ended, the subscription stands and is made.
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
		props, key := fromEngine(m.Props)
		h(Message{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retained: m.Retain, Duplicate: m.Duplicate,
			Properties: props, Key: key})
	}
	undo, err := c.subs.Add(filter, qos, deliver)
	if err != nil {
		return err
	}
	sess := c.liveSession()
	if sess == nil || !c.State().Up() {
		return nil // made at the next connection
	}
	switch err := c.subs.Subscribe(ctx, sess, filter); {
	case errors.Is(err, ErrSubscriptionRefused):
		undo() // not registered; a subscription the filter had before stands
		return err
	case err != nil && ctx.Err() != nil:
		return ctx.Err()
	default:
		// Granted, or the connection went before the SUBACK came: the
		// registry makes it on the next one (the broker's session, if it
		// kept one, holds it already or gets it then).
		return nil
	}
}

// GrantedQoS returns the QoS the broker granted for filter (brokers may
// grant less than asked: nats-server grants at most 1), and false when
// the filter is not subscribed in the current session.
func (c *Client) GrantedQoS(filter string) (byte, bool) { return c.subs.Granted(filter) }

// Unsubscribe removes filters from the registry and, when connected, from
// the broker, waiting for its UNSUBACK. Messages already received for them
// are still handed to their handlers. If there is no connection, or it is
// lost before the UNSUBACK, a broker that kept the session is told at the
// next connection, and Unsubscribe returns nil: the filters are gone from
// the registry either way. It returns an error only for an invalid filter,
// a closed client, or ctx's own error (the caller stopped waiting; the
// broker is still told).
func (c *Client) Unsubscribe(ctx context.Context, filters ...string) error {
	for _, f := range filters {
		if _, err := topic.ValidateFilter(f); err != nil {
			return err
		}
	}
	if c.isClosed() {
		return ErrClosed
	}
	rm, err := c.subs.Remove(filters)
	if err != nil {
		return err
	}
	sess := c.liveSession()
	if sess == nil || !c.State().Up() || len(filters) == 0 {
		return nil // told at the next connection, if the broker kept the session
	}
	if err := sess.Unsubscribe(ctx, filters...); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return nil // lost before the UNSUBACK: told at the next connection
	}
	c.subs.Confirm(rm, filters)
	return nil
}
