package steadymqtt

import (
	"bytes"
	"encoding/binary"
	"sync"
)

// MQTT 3.1.1 has no message headers, so a receiver can only drop the
// duplicates that QoS 1 redelivers if the key travels in the payload. With
// WithKeyEnvelope, every Publish that has an idempotency key sends
//
//	0xFE 'S' 'M' 0x01 | uvarint len(key) | key | payload
//
// (magic, format version 1), and DedupeHandler unwraps it. Payloads
// without the magic pass through untouched. Use it only when every
// consumer of the topics understands it.
var envelopeMagic = []byte{0xFE, 'S', 'M', 0x01}

// WithKeyEnvelope wraps the payload of every Publish that has an
// idempotency key in the envelope that DedupeHandler and Open read.
func WithKeyEnvelope() Option {
	return func(c *config) error { c.envelope = true; return nil }
}

// Seal wraps payload and key in the envelope.
func Seal(key string, payload []byte) []byte {
	b := make([]byte, 0, len(envelopeMagic)+binary.MaxVarintLen64+len(key)+len(payload))
	b = append(b, envelopeMagic...)
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	return append(b, payload...)
}

// Open reads an envelope; ok is false (and payload returned as is) when
// payload is not one.
func Open(payload []byte) (key string, body []byte, ok bool) {
	if !bytes.HasPrefix(payload, envelopeMagic) {
		return "", payload, false
	}
	rest := payload[len(envelopeMagic):]
	n, k := binary.Uvarint(rest)
	if k <= 0 || uint64(len(rest)-k) < n {
		return "", payload, false
	}
	return string(rest[k : k+int(n)]), rest[k+int(n):], true
}

// DedupeHandler returns a handler that unwraps enveloped messages and
// passes each key to h only once among the last window keys; messages
// without an envelope always pass. It is safe for concurrent use.
func DedupeHandler(window int, h MessageHandler) MessageHandler {
	if window < 1 {
		window = 1
	}
	var (
		mu   sync.Mutex
		seen = make(map[string]struct{}, window)
		ring = make([]string, window) // the last keys, oldest at next once full
		next int
	)
	return func(m Message) {
		key, body, ok := Open(m.Payload)
		if !ok {
			h(m)
			return
		}
		mu.Lock()
		if _, dup := seen[key]; dup {
			mu.Unlock()
			return
		}
		if len(seen) == window {
			delete(seen, ring[next])
		}
		seen[key] = struct{}{}
		ring[next] = key
		next = (next + 1) % window
		mu.Unlock()
		m.Payload = body
		h(m)
	}
}
