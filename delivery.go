package steadymqtt

import "context"

// PublishAsync is Publish without the wait: it validates and queues the
// message (or, for QoS 0, hands it to the connection) and returns at once.
// The Delivery resolves when Publish would have returned: on the broker's
// acknowledgement or a definite failure (ErrDropped, ErrPoisonMessage,
// ErrNotDelivered at Close, ...). A message refused at once (bad topic,
// ErrOutboxFull, ErrClosed) gives a Delivery that is already done.
//
// ctx is looked at only while the message is accepted: a ctx that has
// already ended gives its error and queues nothing; once queued, the
// message's outcome does not depend on ctx, so a short deadline never
// loses it. Messages are sent in the order PublishAsync accepted them.
func (c *Client) PublishAsync(ctx context.Context, topicName string, payload []byte, opts ...PublishOption) *Delivery {
	d := c.submit(ctx, topicName, payload, opts)
	if d.written != nil {
		// A QoS 0 write finishes within microseconds, or when the
		// connection ends; its bookkeeping waits for it here.
		go func() {
			<-d.written
			d.settle()
		}()
	}
	return d
}

// Delivery is the outcome of one PublishAsync, known once Done is closed.
type Delivery struct {
	key    string
	done   <-chan struct{}
	result func() error // valid once done is closed

	// A QoS 0 send: settle must run once written is closed, and it closes
	// done.
	written <-chan struct{}
	settle  func()
}

// Done is closed when the message was acknowledged (QoS 1, 2), written
// (QoS 0), or failed for good.
func (d *Delivery) Done() <-chan struct{} { return d.done }

// Err is nil before Done is closed; after it, what Publish would have
// returned: nil when delivered.
func (d *Delivery) Err() error {
	select {
	case <-d.done:
		return d.result()
	default:
		return nil
	}
}

// Key is the message's idempotency key, "" when it has none.
func (d *Delivery) Key() string { return d.key }

// Wait blocks until the outcome is known or ctx ends, and returns the
// outcome or ctx's error. The message's fate does not depend on ctx.
func (d *Delivery) Wait(ctx context.Context) error {
	select {
	case <-d.done:
		return d.result()
	case <-ctx.Done():
		return ctx.Err()
	}
}

var closedChan = func() chan struct{} { ch := make(chan struct{}); close(ch); return ch }()

// resolved is a delivery whose outcome is known at once.
func resolved(key string, err error) *Delivery {
	return &Delivery{key: key, done: closedChan, result: func() error { return err }}
}
