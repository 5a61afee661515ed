package steadymqtt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"go.uber.org/zap"

	"github.com/steadymqtt/steadymqtt/internal/outbox"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// One publish, QoS 1 or 2: Publish validates and puts the message in the
// outbox (on disk first with a durable outbox) and waits for its outcome.
// While connected, the sender hands outbox messages to paho in order, at
// most the in-flight window at a time; the ack tracker watches the socket
// for the PUBACK / PUBCOMP of each packet identifier, and only a token that
// completed with that acknowledgement seen on the same connection takes the
// message out of the outbox and returns nil to the publisher. A message in
// flight when the connection is lost goes back to its place and is sent on
// the next connection.

// Publish errors.
var (
	// ErrDropped: the message was pushed out of a full outbox by a newer
	// one (WithDropOldest).
	ErrDropped = errors.New("steadymqtt: message dropped from a full outbox")
	// ErrPoisonMessage: the broker closed the connection right after this
	// message each time it was sent (a broker that cannot take its QoS, a
	// payload over its limit, an ACL that disconnects); it was taken out of
	// the outbox so the connection can settle.
	ErrPoisonMessage = errors.New("steadymqtt: message rejected by the broker (it closed the connection after each send)")
	// ErrIdempotencyConflict: the idempotency key was used, pending or
	// within the window, for a message with another topic, payload, QoS or
	// retain flag. Nothing was sent.
	ErrIdempotencyConflict = errors.New("steadymqtt: idempotency key already used for a different message")
	// ErrNotDelivered is reported by Close for what the outbox still held,
	// and by a Publish whose message was still waiting when the client closed.
	ErrNotDelivered = errors.New("steadymqtt: not delivered")
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

// WithIdempotencyKey names the message. A second Publish with the same key
// while the first is pending waits for the same outcome and sends nothing;
// after the first was acknowledged, within the idempotency window
// (WithIdempotencyWindow), it returns nil without sending. An application
// that retries a Publish whose context ended therefore never sends twice.
func WithIdempotencyKey(key string) PublishOption { return func(p *publishConfig) { p.key = key } }

// Publish options of the client.
const (
	DefaultOutboxCount    = 1000
	DefaultOutboxBytes    = 16 << 20
	DefaultInFlight       = 32
	DefaultKeyWindow      = 10 * time.Minute
	DefaultKeyCount       = 10000
	DefaultPoisonAfter    = 3
	DefaultHandlerBacklog = 256
)

// WithOutboxLimit bounds the messages waiting to be sent or acknowledged,
// by count and by bytes (topic, payload and key). Default 1000 messages,
// 16 MiB. A full outbox rejects the next Publish with ErrOutboxFull, or
// drops its oldest message (WithDropOldest).
func WithOutboxLimit(count, bytes int) Option {
	return func(c *config) error {
		if count < 1 || bytes < 1 {
			return optionError("WithOutboxLimit", "count %d and bytes %d must be positive", count, bytes)
		}
		c.outboxCount, c.outboxBytes = count, bytes
		return nil
	}
}

// WithDropOldest makes a full outbox drop its oldest message that is not in
// flight to take a new one; the dropped message's Publish returns
// ErrDropped and an event (KindMessageDropped) reports it.
func WithDropOldest() Option {
	return func(c *config) error { c.dropOldest = true; return nil }
}

// WithQueueQoS0 queues QoS 0 messages while offline, like QoS 1 ones, instead
// of refusing them with ErrNotConnected (counted in Stats().Dropped[0]).
func WithQueueQoS0() Option {
	return func(c *config) error { c.queueQoS0 = true; return nil }
}

// WithInFlight sets how many messages may await acknowledgement at once
// (default 32). It also paces the replay of the outbox after a reconnect.
func WithInFlight(n int) Option {
	return func(c *config) error {
		if n < 1 || n > 65535 {
			return optionError("WithInFlight", "%d is out of range [1, 65535]", n)
		}
		c.inFlight = n
		return nil
	}
}

// WithIdempotencyWindow sets how long, and for how many keys at most, an
// acknowledged idempotency key is remembered. Default 10 min, 10000 keys.
func WithIdempotencyWindow(d time.Duration, keys int) Option {
	return func(c *config) error {
		if d <= 0 || keys < 1 {
			return optionError("WithIdempotencyWindow", "window %v and count %d must be positive", d, keys)
		}
		c.keyWindow, c.keyCount = d, keys
		return nil
	}
}

// WithDurableOutbox keeps the outbox and the recent idempotency keys in a
// bbolt file in dir. Each accepted QoS 1/2 message is committed (fsync)
// before Publish waits for it, and each acknowledgement removes the message
// and records its key in one commit: after a crash the next process sends
// what was not acknowledged and nothing that was. One process at a time
// may use dir.
func WithDurableOutbox(dir string) Option {
	return func(c *config) error {
		if dir == "" {
			return optionError("WithDurableOutbox", "empty directory")
		}
		c.outboxDir = dir
		return nil
	}
}

// WithPoisonAfter sets after how many broker-closed connections in a row,
// each right after a message was sent with nothing acknowledged since, that
// message is taken out of the outbox (ErrPoisonMessage). Default 3.
func WithPoisonAfter(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return optionError("WithPoisonAfter", "%d must be at least 1", n)
		}
		c.poisonAfter = n
		return nil
	}
}

// Publish sends payload to topic.
//
// QoS 0 returns once the message was written to the connection; while
// offline it returns ErrNotConnected (unless WithQueueQoS0). QoS 1 and 2
// put the message in the outbox, in order, and return nil only once the
// broker acknowledged it (PUBACK / PUBCOMP seen on the connection). While
// offline they wait in the outbox. If ctx ends first, Publish returns ctx's
// error and the message stays queued: it will be sent, and a retry with the
// same idempotency key waits for that same send.
//
// Errors: ErrInvalidTopic, ErrInvalidOption (QoS above 2), ErrOutboxFull,
// ErrDropped, ErrPoisonMessage, ErrClosed, ErrNotDelivered.
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
	if p.key != "" && c.cfg.envelope {
		payload = Seal(p.key, payload)
	}
	if p.qos == 0 && !c.cfg.queueQoS0 {
		if p.key == "" {
			return c.publishNow(ctx, topic, payload, p)
		}
		// A keyed QoS 0 message goes through the outbox, so that concurrent
		// calls with its key make one send, but only while connected.
		if !c.State().Up() {
			c.stats.dropped[0].Add(1)
			return ErrNotConnected
		}
	}
	// The outbox keeps the payload until it is acknowledged, maybe long
	// after Publish returned: it must not see the caller reuse its buffer.
	m := outbox.Message{Topic: topic, Payload: bytes.Clone(payload), QoS: p.qos, Retain: p.retain, Key: p.key}
	res, err := c.outbox.Add(m)
	for _, d := range res.Dropped {
		c.stats.dropped[d.QoS].Add(1)
		c.m.notice(KindMessageDropped, ErrDropped, d.Topic, d.Key)
	}
	switch {
	case errors.Is(err, outbox.ErrFull):
		return fmt.Errorf("%w: %d messages, %d bytes waiting", ErrOutboxFull, c.outbox.Len(), c.outbox.Bytes())
	case errors.Is(err, outbox.ErrClosed):
		return ErrClosed
	case errors.Is(err, outbox.ErrConflict):
		return fmt.Errorf("%w: key %q", ErrIdempotencyConflict, p.key)
	case err != nil:
		return fmt.Errorf("steadymqtt: publish to %q: %w", topic, err)
	case res.Settled:
		c.stats.deduplicated.Add(1)
		return res.Prior // nil when delivered; the same failure when it failed
	case res.Joined:
		c.stats.deduplicated.Add(1)
	default:
		c.stats.published[p.qos].Add(1)
	}
	select {
	case <-res.Entry.Done():
		return c.outcome(res.Entry)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Client) outcome(e *outbox.Entry) error {
	switch err := e.Err(); {
	case err == nil:
		return nil
	case errors.Is(err, outbox.ErrDropped):
		return ErrDropped
	default:
		return err
	}
}

// publishNow sends a QoS 0 message straight to the connection.
func (c *Client) publishNow(ctx context.Context, topic string, payload []byte, p publishConfig) error {
	if !c.State().Up() {
		c.stats.dropped[0].Add(1)
		return ErrNotConnected
	}
	c.stats.published[0].Add(1)
	pc := c.livePaho()
	if pc == nil {
		c.stats.dropped[0].Add(1)
		return ErrNotConnected
	}
	tok := pc.Publish(topic, 0, p.retain, payload)
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := tok.Error(); err != nil {
		c.stats.dropped[0].Add(1)
		return fmt.Errorf("%w: publish to %q: %w", ErrNotConnected, topic, err)
	}
	c.stats.acknowledged[0].Add(1)
	return nil
}

// ackTracker sees, on one connection, the acknowledgements the broker
// sends: for each packet identifier, the order number of its last PUBACK or
// PUBCOMP. A token is believed only if its identifier was acknowledged
// after the publish started (paho #563: tokens can complete without one).
type ackTracker struct {
	mu   sync.Mutex
	seq  uint64
	last map[uint16]uint64
}

func newAckTracker() *ackTracker { return &ackTracker{last: make(map[uint16]uint64)} }

func (t *ackTracker) observe(dir wire.Dir, h wire.Header) {
	if dir != wire.Received || (h.Type != wire.PUBACK && h.Type != wire.PUBCOMP) || h.Len < 2 {
		return
	}
	id := uint16(h.Head[0])<<8 | uint16(h.Head[1])
	t.mu.Lock()
	t.seq++
	t.last[id] = t.seq
	t.mu.Unlock()
}

// mark is the order number of the last acknowledgement so far.
func (t *ackTracker) mark() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.seq
}

// acked reports, and forgets, whether id was acknowledged after mark.
func (t *ackTracker) acked(id uint16, mark uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.last[id]
	delete(t.last, id)
	return ok && at > mark
}

// link is one live connection as the sender sees it.
type link struct {
	paho    mqtt.Client
	conn    *wire.Conn
	tracker *ackTracker
	end     chan struct{} // closed when the connection is over

	oldestOnce sync.Once
	oldest     uint64
}

// send hands outbox messages to the connection until it ends, at most the
// in-flight window at a time, and returns once every message it took has an
// outcome or is back in the outbox.
func (c *Client) send(l *link) {
	var wg sync.WaitGroup
	defer wg.Wait()
	window := make(chan struct{}, c.cfg.inFlight)
	for {
		select {
		case window <- struct{}{}:
		case <-l.end:
			return
		}
		if l.closing() { // select picks at random when both are ready
			return
		}
		e := c.outbox.Next(l.end)
		if e == nil {
			return
		}
		if e.Sends > 1 {
			c.stats.redelivered.Add(1)
		}
		// Handed to paho here, one after the other, so that the wire order
		// is the outbox order; only the waits run side by side.
		mark := l.tracker.mark()
		tok := l.paho.Publish(e.Topic, e.QoS, e.Retain, e.Payload)
		if handoffFailed(tok) && !l.closing() {
			// paho's writer did not take it in time (a long write on a slow
			// uplink). Nothing after it has been handed over: put it back
			// and try again, so the order holds.
			c.outbox.Requeue(e, false)
			<-window
			select {
			case <-time.After(10 * time.Millisecond):
			case <-l.end:
				return
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-window }()
			c.awaitAck(l, e, tok, mark)
		}()
	}
}

// handoffFailed reports whether paho refused a packet at once (its writer
// did not take it within the write timeout).
func handoffFailed(tok mqtt.Token) bool {
	select {
	case <-tok.Done():
		return tok.Error() != nil
	default:
		return false
	}
}

// awaitAck settles one message handed to paho: acknowledged, back in the
// outbox, or out of it as poison.
func (c *Client) awaitAck(l *link, e *outbox.Entry, tok mqtt.Token, mark uint64) {
	select {
	case <-tok.Done():
	case <-l.end:
		// With a persistent session paho keeps the token open across the
		// loss; the message goes back to the outbox instead.
	}
	var id uint16
	if pt, ok := tok.(interface{ MessageID() uint16 }); ok {
		id = pt.MessageID()
	}
	select {
	case <-tok.Done():
		switch {
		case tok.Error() == nil && (e.QoS == 0 || l.tracker.acked(id, mark)):
			if err := c.outbox.Ack(e); err != nil {
				c.log.Error("durable outbox: recording an acknowledgement failed; the message may be sent again", zap.Error(err))
			}
			c.stats.acknowledged[e.QoS].Add(1)
			return
		case tok.Error() == nil:
			// A token completed with no acknowledgement on the wire (paho
			// #563). The message may or may not have arrived: it is sent
			// again, but only on the next connection.
			c.log.Warn("publish token completed without an acknowledgement on the wire; will resend after reconnect",
				zap.String("topic", e.Topic), zap.Uint16("packet_id", id))
		}
	default:
	}
	<-l.end // the connection is going away or gone
	// A strike only for the oldest message in flight, and only when the
	// broker closed the connection with nothing acknowledged since it was
	// sent: the messages behind it were collateral.
	oldest := l.oldestInFlight(c.outbox)
	strike := e.Seq() == oldest && l.conn.Cause() == nil && brokerClosed(l.conn) && l.tracker.mark() == mark
	if strikes := c.outbox.Requeue(e, strike); strike && strikes >= c.cfg.poisonAfter {
		err := fmt.Errorf("%w: topic %q, %d bytes, %d connections closed", ErrPoisonMessage, e.Topic, len(e.Payload), strikes)
		if ferr := c.outbox.Fail(e, err); ferr != nil {
			c.log.Error("durable outbox: recording a poison message failed", zap.Error(ferr))
		}
		c.stats.dropped[e.QoS].Add(1)
		c.m.notice(KindPoisonMessage, err, e.Topic, e.Key)
	}
}

// oldestInFlight is the outbox's oldest in-flight message when the
// connection ended, read once, before any of them goes back.
func (l *link) oldestInFlight(o *outbox.Outbox) uint64 {
	l.oldestOnce.Do(func() { l.oldest = o.OldestInFlight() })
	return l.oldest
}

// closing reports whether the connection is ending: the link is over or
// the socket closed.
func (l *link) closing() bool {
	select {
	case <-l.end:
		return true
	case <-l.conn.Done():
		return true
	default:
		return false
	}
}

// brokerClosed reports whether the connection ended by the broker's doing
// (EOF or reset), as opposed to ours (keepalive, Close).
func brokerClosed(conn *wire.Conn) bool {
	err := conn.IOErr()
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// flush waits until the outbox is empty, the connection ends, or ctx ends.
func (c *Client) flush(ctx context.Context, l *link) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for c.outbox.Len() > 0 {
		select {
		case <-t.C:
		case <-l.conn.Done():
			return
		case <-ctx.Done():
			return
		}
	}
}

// outboxLen is the number of publishes waiting to be sent or acknowledged.
func (c *Client) outboxLen() int { return c.outbox.Len() }
