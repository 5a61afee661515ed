package steadymqtt

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/keyenvelope"
	"github.com/steadymqtt/steadymqtt/internal/outbox"
	"github.com/steadymqtt/steadymqtt/internal/topic"
)

// One publish, QoS 1 or 2: Publish validates and puts the message in the
// outbox (on disk first with a durable outbox) and waits for its outcome.
// The sender (internal/sender) hands it to the live connection's engine in
// outbox order; only the broker's acknowledgement seen on that connection
// takes it out of the outbox and makes Publish return nil.

// PublishOption configures one Publish. Like Option, an invalid value is
// an error (wrapping ErrInvalidOption) that Publish returns before
// anything is queued or sent.
type PublishOption func(*publishConfig) error

type publishConfig struct {
	qos    byte
	retain bool
	key    string
	props  *Properties
}

// WithQoS sets the quality of service: 0 (default), 1 or 2.
func WithQoS(q byte) PublishOption {
	return func(p *publishConfig) error {
		if q > 2 {
			return optionError("WithQoS", "%d is not 0, 1 or 2", q)
		}
		p.qos = q
		return nil
	}
}

// WithRetain asks the broker to keep the message as the topic's retained
// message.
func WithRetain() PublishOption {
	return func(p *publishConfig) error { p.retain = true; return nil }
}

// WithIdempotencyKey names the message. A second Publish with the same key
// while the first is pending waits for the same outcome and sends nothing;
// after the first was acknowledged, within the idempotency window
// (WithIdempotencyWindow), it returns nil without sending. An application
// that retries a Publish whose context ended therefore never sends twice.
// A key is at most MaxKeyLength bytes.
func WithIdempotencyKey(key string) PublishOption {
	return func(p *publishConfig) error {
		if len(key) > MaxKeyLength {
			return optionError("WithIdempotencyKey", "a key of %d bytes; at most %d", len(key), MaxKeyLength)
		}
		p.key = key // "" means none
		return nil
	}
}

// MaxKeyLength bounds an idempotency key: it is stored with its message
// and remembered after it, so it should name the message, not carry it.
const MaxKeyLength = 1024

// Publish sends payload to topic.
//
// QoS 0 returns once the message was written to the connection; while
// offline it returns ErrNotConnected (unless WithQueueQoS0). QoS 1 and 2
// put the message in the outbox, in order, and return nil only once the
// broker acknowledged it (PUBACK / PUBCOMP seen on the connection). While
// offline they wait in the outbox. If ctx ends first, Publish returns ctx's
// error and the message stays queued: it will be sent, and a retry with the
// same idempotency key waits for that same send. PublishAsync does the same
// without waiting.
//
// Errors: ErrInvalidTopic, ErrInvalidOption, ErrOutboxFull, ErrDropped,
// ErrPoisonMessage, ErrClosed, ErrNotDelivered, ErrIdempotencyConflict,
// ErrPayloadTooLarge.
func (c *Client) Publish(ctx context.Context, topicName string, payload []byte, opts ...PublishOption) error {
	d := c.submit(ctx, topicName, payload, opts)
	if d.written != nil {
		select {
		case <-d.written:
		case <-ctx.Done():
			return ctx.Err()
		}
		d.settle()
	}
	select {
	case <-d.done:
		return d.result()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// submit does all of Publish but the wait: the message is refused, sent
// (QoS 0 now) or in the outbox when it returns.
func (c *Client) submit(ctx context.Context, topicName string, payload []byte, opts []PublishOption) *Delivery {
	var p publishConfig
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&p); err != nil {
			return resolved(p.key, err)
		}
	}
	if err := topic.Validate(topicName); err != nil {
		return resolved(p.key, err)
	}
	if c.isClosed() {
		return resolved(p.key, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return resolved(p.key, err) // nothing queued: the caller gave up first
	}
	// Sizes first, before anything is copied, queued or sent: a message
	// that cannot go out must not cost a connection or sit on the heap.
	sealed := p.key != "" && c.cfg.envelope
	if err := c.checkSize(topicName, len(payload), p, sealed); err != nil {
		return resolved(p.key, err)
	}
	// The key is sealed into the payload (3.1.1 with WithKeyEnvelope) or
	// carried as a user property (MQTT 5) by the sender, once the
	// connection's protocol is known; the outbox keeps the payload as given.
	if p.qos == 0 && !c.cfg.queueQoS0 {
		if p.key == "" {
			return c.publishNow(topicName, payload, p)
		}
		// A keyed QoS 0 message goes through the outbox, so that concurrent
		// calls with its key make one send, but only while connected.
		if !c.State().Up() {
			c.stats.dropped[0].Add(1)
			return resolved(p.key, ErrNotConnected)
		}
	}
	// The outbox keeps the payload until it is acknowledged, maybe long
	// after Publish returned: it must not see the caller reuse its buffer.
	m := outbox.Message{Topic: topicName, Payload: bytes.Clone(payload), QoS: p.qos, Retain: p.retain, Key: p.key, Props: p.props.engine()}
	res, err := c.outbox.Add(m)
	for _, d := range res.Dropped {
		c.stats.dropped[d.QoS].Add(1)
		c.m.notice(KindMessageDropped, ErrDropped, d.Topic, d.Key)
	}
	switch {
	case errors.Is(err, outbox.ErrFull):
		return resolved(p.key, fmt.Errorf("%w: %d messages, %d bytes waiting", ErrOutboxFull, c.outbox.Len(), c.outbox.Bytes()))
	case errors.Is(err, outbox.ErrClosed):
		return resolved(p.key, ErrClosed)
	case errors.Is(err, outbox.ErrConflict):
		return resolved(p.key, fmt.Errorf("%w: key %q", ErrIdempotencyConflict, p.key))
	case err != nil:
		return resolved(p.key, fmt.Errorf("steadymqtt: publish to %q: %w", topicName, err))
	case res.Settled:
		c.stats.deduplicated.Add(1)
		return resolved(p.key, res.Prior) // nil when delivered; the same failure when it failed
	case res.Joined:
		c.stats.deduplicated.Add(1)
	default:
		c.stats.published[p.qos].Add(1)
	}
	e := res.Entry
	return &Delivery{key: p.key, done: e.Done(), result: func() error { return outcome(e) }}
}

// The largest MQTT packets: the remaining length is at most four bytes of
// seven bits (MQTT 3.1.1 section 2.2.3), the fixed header at most five.
const (
	maxRemaining = 268_435_455
	maxPacket    = maxRemaining + 5
)

// checkSize refuses a message that cannot be one PUBLISH packet, or one
// over WithMaxPacketSize, and a queued one larger than the whole outbox.
func (c *Client) checkSize(topicName string, payload int, p publishConfig, sealed bool) error {
	body := payload
	if sealed {
		body += keyenvelope.Overhead(p.key)
	}
	remaining := 2 + len(topicName) + body
	if p.qos > 0 {
		remaining += 2 // packet identifier
	}
	packet := 1 + uvarintLen(remaining) + remaining
	switch {
	case remaining > maxRemaining:
		return fmt.Errorf("%w: a PUBLISH of %d bytes to %q; one MQTT packet carries at most %d", ErrPayloadTooLarge, packet, topicName, maxPacket)
	case c.cfg.maxPacket > 0 && packet > c.cfg.maxPacket:
		return fmt.Errorf("%w: a PUBLISH of %d bytes to %q, over WithMaxPacketSize(%d)", ErrPayloadTooLarge, packet, topicName, c.cfg.maxPacket)
	}
	queued := p.qos > 0 || c.cfg.queueQoS0 || p.key != ""
	if size := len(topicName) + body + len(p.key); queued && size > c.cfg.outboxBytes {
		return fmt.Errorf("%w: a message of %d bytes is larger than the outbox limit of %d bytes (WithOutboxLimit)", ErrOutboxFull, size, c.cfg.outboxBytes)
	}
	return nil
}

func uvarintLen(n int) int {
	k := 1
	for ; n >= 0x80; n >>= 7 {
		k++
	}
	return k
}

func outcome(e *outbox.Entry) error {
	switch err := e.Err(); {
	case err == nil:
		return nil
	case errors.Is(err, outbox.ErrDropped):
		return ErrDropped
	default:
		return err
	}
}

// publishNow hands a QoS 0 message straight to the live connection. The
// delivery it returns is settled by whoever waits for the write: Publish
// itself, or a goroutine of PublishAsync.
func (c *Client) publishNow(topicName string, payload []byte, p publishConfig) *Delivery {
	sess := c.liveSession()
	if sess == nil || !c.State().Up() {
		c.stats.dropped[0].Add(1)
		return resolved("", ErrNotConnected)
	}
	c.stats.published[0].Add(1)
	pend := sess.Publish(engine.Message{Topic: topicName, Payload: payload, Retain: p.retain, Props: p.props.engine()})
	done := make(chan struct{})
	var err error
	d := &Delivery{done: done, result: func() error { return err }, written: pend.Done()}
	d.settle = func() {
		if perr := pend.Err(); perr != nil {
			c.stats.dropped[0].Add(1)
			err = fmt.Errorf("%w: publish to %q: %w", ErrNotConnected, topicName, perr)
		} else {
			c.stats.acknowledged[0].Add(1)
		}
		close(done)
	}
	return d
}
