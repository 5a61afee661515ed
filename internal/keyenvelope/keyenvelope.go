// Package keyenvelope is the format of package envelope, here so that the
// client can seal payloads without importing the public package (which
// imports the client for its handler type).
package keyenvelope

import (
	"bytes"
	"encoding/binary"
	"sync"
)

// magic starts every envelope: a byte no UTF-8 text starts with, "SM", and the format version.
var magic = []byte{0xFE, 'S', 'M', 0x01}

// Overhead is how many bytes Seal adds to a payload for key.
func Overhead(key string) int {
	var b [binary.MaxVarintLen64]byte
	return len(magic) + binary.PutUvarint(b[:], uint64(len(key))) + len(key)
}

// Seal wraps payload and key in the envelope.
func Seal(key string, payload []byte) []byte {
	b := make([]byte, 0, len(magic)+binary.MaxVarintLen64+len(key)+len(payload))
	b = append(b, magic...)
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	return append(b, payload...)
}

// Open reads an envelope; ok is false (and payload returned as is) when
// payload is not one.
func Open(payload []byte) (key string, body []byte, ok bool) {
	if !bytes.HasPrefix(payload, magic) {
		return "", payload, false
	}
	rest := payload[len(magic):]
	n, k := binary.Uvarint(rest)
	if k <= 0 || uint64(len(rest)-k) < n {
		return "", payload, false
	}
	return string(rest[k : k+int(n)]), rest[k+int(n):], true
}

// Dedupe remembers the last keys seen. It is safe for concurrent use.
type Dedupe struct {
	mu     sync.Mutex
	window int
	seen   map[string]struct{}
	ring   []string // the last keys, oldest at next once full
	next   int
}

// NewDedupe remembers the last window keys (at least one).
func NewDedupe(window int) *Dedupe {
	window = max(window, 1)
	return &Dedupe{window: window, seen: make(map[string]struct{}, window), ring: make([]string, window)}
}

// Pass unwraps payload and reports whether it should be handed on: false
// for an envelope whose key is among the last keys seen. A payload without
// an envelope always passes, untouched.
func (d *Dedupe) Pass(payload []byte) ([]byte, bool) {
	key, body, ok := Open(payload)
	if !ok {
		return payload, true
	}
	return body, d.PassKey(key)
}

// UserProperty is the MQTT 5 user property that carries a message's
// idempotency key in place of the envelope.
const UserProperty = "steadymqtt-key"

// PassKey reports whether a message with key should be handed on: false
// when key is among the last keys seen.
func (d *Dedupe) PassKey(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, dup := d.seen[key]; dup {
		return false
	}
	if len(d.seen) == d.window {
		delete(d.seen, d.ring[d.next])
	}
	d.seen[key] = struct{}{}
	d.ring[d.next] = key
	d.next = (d.next + 1) % d.window
	return true
}
