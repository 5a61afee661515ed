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
	// active: the broker acknowledged it in the current session, so a
	// reconnect that finds the session present need not subscribe again.
	active bool
}

// registry holds the subscriptions the client (re)makes after a
// reconnect, and the unsubscriptions asked for while offline, which a
// broker that kept the session must still be told about.
type registry struct {
	mu      sync.Mutex
	subs    map[string]*subscription
	dropped map[string]struct{}
}

func newRegistry() *registry {
	return &registry{subs: make(map[string]*subscription), dropped: make(map[string]struct{})}
}

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
	delete(c.subs.dropped, filter)
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
	granted := s.qos
	if st, ok := tok.(*mqtt.SubscribeToken); ok {
		// One filter per SUBSCRIBE, so the only result is ours (paho keys
		// it without the $share/group/ prefix).
		for _, g := range st.Result() {
			granted = g
		}
	}
	if granted == 0x80 {
		return fmt.Errorf("steadymqtt: subscribe %q: refused by the broker", filter)
	}
	c.subs.mu.Lock()
	s.granted, s.active = granted, true
	c.subs.mu.Unlock()
	return nil
}

// GrantedQoS returns the QoS the broker granted for filter (brokers may
// grant less than asked: nats-server grants at most 1), and false when
// the filter is not subscribed in the current session.
func (c *Client) GrantedQoS(filter string) (byte, bool) {
	c.subs.mu.Lock()
	defer c.subs.mu.Unlock()
	s, ok := c.subs.subs[filter]
	if !ok || !s.active {
		return 0, false
	}
	return s.granted, true
}

// syncSubscriptions brings the broker's session in line with the registry
// after a CONNACK: when the session is gone, everything is subscribed
// again; when it was kept, only what changed while offline.
func (c *Client) syncSubscriptions(sessionPresent bool) {
	c.subs.mu.Lock()
	todo := make(map[string]*subscription)
	for f, s := range c.subs.subs {
		if !sessionPresent {
			s.active = false
		}
		if !s.active {
			todo[f] = s
		}
	}
	var drop []string
	if sessionPresent {
		for f := range c.subs.dropped {
			drop = append(drop, f)
		}
	}
	clear(c.subs.dropped)
	c.subs.mu.Unlock()

	for f, s := range todo {
		ctx, cancel := context.WithTimeout(c.stopCtx, c.cfg.connectTimeout)
		if err := c.subscribe(ctx, f, s); err != nil {
			c.log.Warn("restoring subscription failed", zap.String("filter", f), zap.Error(err))
		}
		cancel()
	}
	if len(drop) > 0 {
		tok := c.paho.Unsubscribe(drop...)
		if !tok.WaitTimeout(c.cfg.connectTimeout) || tok.Error() != nil {
			c.log.Warn("unsubscribing what was dropped while offline failed", zap.Strings("filters", drop), zap.Error(tok.Error()))
		}
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
		c.subs.dropped[f] = struct{}{}
	}
	c.subs.mu.Unlock()
	if !c.State().Up() || len(filters) == 0 {
		return nil // told to the broker at the next connection, if it kept the session
	}
	c.subs.mu.Lock()
	for _, f := range filters {
		delete(c.subs.dropped, f)
	}
	c.subs.mu.Unlock()
	tok := c.paho.Unsubscribe(filters...)
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}
