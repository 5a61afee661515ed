package steadymqtt

import (
	"context"
	"fmt"
	"sync"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"go.uber.org/zap"
)

// Message is a message received on a subscription.
type Message struct {
	Topic     string
	Payload   []byte
	QoS       byte
	Retained  bool
	Duplicate bool
}

// MessageHandler receives the messages of one subscription. It runs off the
// network goroutine, so a slow handler does not stall the connection.
type MessageHandler func(Message)

type subscription struct {
	qos     byte
	granted byte
	handler MessageHandler
}

// registry holds the subscriptions the client restores after a reconnect
// whenever the broker did not keep the session.
type registry struct {
	mu   sync.Mutex
	subs map[string]*subscription
}

func newRegistry() *registry { return &registry{subs: make(map[string]*subscription)} }

// Subscribe registers h for filter and, when connected, subscribes at the
// broker and waits for its SUBACK. While disconnected the subscription is
// only registered and nil is returned: it is made at the next connection.
// The registry survives reconnects; a filter subscribed again replaces its
// handler.
func (c *Client) Subscribe(ctx context.Context, filter string, qos byte, h MessageHandler) error {
	if err := validateFilter(filter); err != nil {
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
	s := &subscription{qos: qos, handler: h}
	c.subs.mu.Lock()
	c.subs.subs[filter] = s
	c.subs.mu.Unlock()
	if !c.State().Up() {
		return nil
	}
	return c.subscribe(ctx, filter, s)
}

func (c *Client) subscribe(ctx context.Context, filter string, s *subscription) error {
	h := s.handler
	tok := c.paho.Subscribe(filter, s.qos, func(_ mqtt.Client, m mqtt.Message) {
		h(Message{Topic: m.Topic(), Payload: m.Payload(), QoS: m.Qos(), Retained: m.Retained(), Duplicate: m.Duplicate()})
	})
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("steadymqtt: subscribe %q: %w", filter, err)
	}
	if st, ok := tok.(*mqtt.SubscribeToken); ok {
		if granted, ok := st.Result()[filter]; ok {
			if granted == 0x80 {
				return fmt.Errorf("steadymqtt: subscribe %q: refused by the broker", filter)
			}
			c.subs.mu.Lock()
			s.granted = granted
			c.subs.mu.Unlock()
		}
	}
	return nil
}

// restoreSubscriptions subscribes again to everything registered; called on
// a new connection whose session the broker did not keep.
func (c *Client) restoreSubscriptions() {
	c.subs.mu.Lock()
	all := make(map[string]*subscription, len(c.subs.subs))
	for f, s := range c.subs.subs {
		all[f] = s
	}
	c.subs.mu.Unlock()
	for f, s := range all {
		ctx, cancel := context.WithTimeout(c.stopCtx, c.cfg.connectTimeout)
		if err := c.subscribe(ctx, f, s); err != nil {
			c.log.Warn("restoring subscription failed", zap.String("filter", f), zap.Error(err))
		}
		cancel()
	}
}

// Unsubscribe removes filters from the registry and, when connected, from
// the broker.
func (c *Client) Unsubscribe(ctx context.Context, filters ...string) error {
	for _, f := range filters {
		if err := validateFilter(f); err != nil {
			return err
		}
	}
	if c.isClosed() {
		return ErrClosed
	}
	c.subs.mu.Lock()
	for _, f := range filters {
		delete(c.subs.subs, f)
	}
	c.subs.mu.Unlock()
	if !c.State().Up() || len(filters) == 0 {
		return nil
	}
	tok := c.paho.Unsubscribe(filters...)
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}
