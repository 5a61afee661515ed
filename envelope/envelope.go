// Package envelope carries an idempotency key inside an MQTT 3.1.1
// payload, which has no headers, so that a consumer can drop the
// duplicates that QoS 1 redelivers.
//
// The format, version 1:
//
//	0xFE 'S' 'M' 0x01 | uvarint len(key) | key | payload
//
// A publisher turns it on with steadymqtt.WithKeyEnvelope; a consumer
// unwraps it with Open or DedupeHandler. Payloads without the magic pass
// through untouched.
package envelope

import (
	"github.com/steadymqtt/steadymqtt"
	"github.com/steadymqtt/steadymqtt/internal/keyenvelope"
)

// Seal wraps payload and key in the envelope.
func Seal(key string, payload []byte) []byte { return keyenvelope.Seal(key, payload) }

// Open reads an envelope; ok is false (and payload returned as is) when
// payload is not one.
func Open(payload []byte) (key string, body []byte, ok bool) { return keyenvelope.Open(payload) }

// DedupeHandler returns a handler that unwraps enveloped messages and
// passes each key to h only once among the last window keys; messages
// without an envelope always pass. It is safe for concurrent use.
func DedupeHandler(window int, h steadymqtt.MessageHandler) steadymqtt.MessageHandler {
	seen := keyenvelope.NewDedupe(window)
	return func(m steadymqtt.Message) {
		if m.Key != "" { // MQTT 5: the key came as a user property
			if seen.PassKey(m.Key) {
				h(m)
			}
			return
		}
		body, ok := seen.Pass(m.Payload)
		if !ok {
			return
		}
		m.Payload = body
		h(m)
	}
}
