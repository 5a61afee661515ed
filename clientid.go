package steadymqtt

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"unicode/utf8"
)

// The client identifier: given, derived from the machine, or random.

// WithClientID sets the MQTT client identifier. Two clients with the same ID
// make the broker disconnect one of them each time the other connects; give
// each gateway (and each replica) its own. The default is a random ID,
// which only suits clean sessions.
func WithClientID(id string) Option {
	return func(c *config) error {
		if id == "" {
			return optionError("WithClientID", "empty client ID")
		}
		if len(id) > 65535 || !utf8.ValidString(id) || strings.ContainsRune(id, 0) {
			return optionError("WithClientID", "client ID must be valid UTF-8 without NUL, at most 65535 bytes")
		}
		c.clientID = id
		return nil
	}
}

// StableClientID derives a client ID that stays the same across restarts
// of this machine: prefix, a dash, and 16 hex digits of a hash of the
// machine ID (/etc/machine-id, else the host name). Use it with persistent
// sessions. Two clients with one ID make the broker drop each in turn as the
// other connects, so replicas on one machine (and containers cloned from
// one image, which may share a machine ID) need a prefix of their own, such
// as "gateway-replica-2".
func StableClientID(prefix string) (string, error) {
	var seed []byte
	for _, path := range []string{"/etc/machine-id", "/var/lib/dbus/machine-id"} {
		if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) > 0 {
			seed = bytes.TrimSpace(b)
			break
		}
	}
	if seed == nil {
		host, err := os.Hostname()
		if err != nil || host == "" {
			return "", fmt.Errorf("steadymqtt: no machine ID and no host name to derive a client ID from: %v", err)
		}
		seed = []byte(host)
	}
	sum := sha256.Sum256(append([]byte(prefix+"\x00"), seed...))
	return prefix + "-" + hex.EncodeToString(sum[:8]), nil
}

func randomClientID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "steadymqtt-" + hex.EncodeToString(b[:])
}
