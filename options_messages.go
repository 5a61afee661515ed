package steadymqtt

import (
	"time"
)

// Options of the outbox, the publish path and the subscriptions.

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

// WithOutboxSalvage decides what New does with a damaged durable outbox
// (WithDurableOutbox): instead of failing with ErrOutboxCorrupt, it renames
// the damaged file aside (outbox.db.damaged-<time>, never deleted), starts
// a new one with every message that could be read back, logs what was
// recovered and lost, and reports it in a KindOutboxSalvaged event.
func WithOutboxSalvage() Option {
	return func(c *config) error { c.outboxSalvage = true; return nil }
}

// WithMaxPacketSize refuses, with ErrPayloadTooLarge, any message whose
// PUBLISH packet would be larger than n bytes (fixed header, topic, packet
// identifier and payload): a broker with a packet limit (Mosquitto's
// max_packet_size) closes the connection instead of refusing the message.
// Without it, only what cannot be one MQTT packet at all is refused.
func WithMaxPacketSize(n int) Option {
	return func(c *config) error {
		if n < 16 || n > maxPacket {
			return optionError("WithMaxPacketSize", "%d is out of range [16, %d]", n, maxPacket)
		}
		c.maxPacket = n
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

// WithHandlerBacklog sets how many received messages may wait for each
// subscription's handler. Default 256.
func WithHandlerBacklog(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return optionError("WithHandlerBacklog", "%d must be at least 1", n)
		}
		c.handlerBacklog = n
		return nil
	}
}

// WithKeyEnvelope wraps the payload of every Publish that has an
// idempotency key in the envelope of package envelope, so that consumers
// can drop the duplicates QoS 1 redelivers (envelope.DedupeHandler). Use it
// only when every consumer of the topics understands it.
func WithKeyEnvelope() Option {
	return func(c *config) error { c.envelope = true; return nil }
}
