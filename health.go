package steadymqtt

import (
	"encoding/json"
	"net"
	"sync/atomic"
	"time"
)

// Health is a snapshot of the client's connection, cheap enough to take
// from a probe at any rate: it does no I/O and holds no lock across I/O.
type Health struct {
	State        State
	Since        time.Time     // when State was entered
	Broker       string        // URL in use or last tried, credentials redacted
	LocalAddr    net.Addr      // nil when not connected
	RemoteAddr   net.Addr      // nil when not connected
	Interface    string        // NIC in use when bound to one, else ""
	RTT          time.Duration // last keepalive round trip; 0 when none measured yet
	LastPacketAt time.Time     // last packet received from the broker
	Attempt      int           // consecutive failed attempts since the last success
	LastError    error         // the most recent failure; kept after a recovery
	// LastErrorStep is the connection step LastError happened at (the
	// Step… constants), "" when none.
	LastErrorStep string
	Outbox        int // publishes waiting to be sent or acknowledged
	// SessionPresent: the broker kept the session of the live connection
	// (CONNACK session-present); false when not connected.
	SessionPresent bool
	// Protocol is what the last connection spoke (ProtocolV311 or
	// ProtocolV5); ProtocolAuto before the first.
	Protocol Protocol
}

// Health returns the current snapshot.
func (c *Client) Health() Health {
	h, conn := c.m.health()
	if conn != nil {
		s := conn.Stats()
		h.LocalAddr, h.RemoteAddr = conn.LocalAddr(), conn.RemoteAddr()
		h.RTT, h.LastPacketAt = s.RTT, s.LastReceived
	}
	h.Outbox = c.outbox.Len()
	return h
}

// MarshalJSON writes the snapshot for health endpoints and logs: addresses
// and the error as strings, durations in milliseconds.
func (h Health) MarshalJSON() ([]byte, error) {
	type out struct {
		State        State      `json:"state"`
		Since        time.Time  `json:"since"`
		Broker       string     `json:"broker,omitempty"`
		LocalAddr    string     `json:"local_addr,omitempty"`
		RemoteAddr   string     `json:"remote_addr,omitempty"`
		Interface    string     `json:"interface,omitempty"`
		RTTMillis    float64    `json:"rtt_ms"`
		LastPacketAt *time.Time `json:"last_packet_at,omitempty"`
		Attempt      int        `json:"attempt"`
		LastError    string     `json:"last_error,omitempty"`
		LastStep     string     `json:"last_error_step,omitempty"`
		Outbox       int        `json:"outbox"`
		Session      bool       `json:"session_present"`
		Protocol     string     `json:"protocol,omitempty"`
	}
	o := out{
		State: h.State, Since: h.Since, Broker: h.Broker, Interface: h.Interface,
		RTTMillis: float64(h.RTT) / float64(time.Millisecond),
		Attempt:   h.Attempt, Outbox: h.Outbox, Session: h.SessionPresent, LastStep: h.LastErrorStep,
	}
	if h.LocalAddr != nil {
		o.LocalAddr = h.LocalAddr.String()
	}
	if h.RemoteAddr != nil {
		o.RemoteAddr = h.RemoteAddr.String()
	}
	if !h.LastPacketAt.IsZero() {
		o.LastPacketAt = &h.LastPacketAt
	}
	if h.LastError != nil {
		o.LastError = h.LastError.Error()
	}
	if h.Protocol != ProtocolAuto {
		o.Protocol = h.Protocol.String()
	}
	return json.Marshal(o)
}

// Stats counts what the client did since New. Arrays are indexed by QoS.
// The JSON names are stable: metrics and status pages read them.
type Stats struct {
	Published    [3]uint64 `json:"published"`    // accepted by Publish (not counting joined or deduplicated calls)
	Acknowledged [3]uint64 `json:"acknowledged"` // QoS 0: written; QoS 1/2: PUBACK/PUBCOMP seen
	Dropped      [3]uint64 `json:"dropped"`      // refused offline (QoS 0), dropped from a full outbox, or poison
	// Failed: accepted but never delivered, not counting Dropped: still
	// waiting when Close ended an in-memory outbox.
	Failed       [3]uint64 `json:"failed"`
	Deduplicated uint64    `json:"deduplicated"`  // Publish calls answered by an idempotency key without a send
	Redelivered  uint64    `json:"redelivered"`   // messages sent again on a new connection
	Received     uint64    `json:"received"`      // messages received for subscriptions
	HandlerDrops uint64    `json:"handler_drops"` // received messages not handed to a full handler backlog
	Unrouted     uint64    `json:"unrouted"`      // received messages that matched no subscription
	// HandlerBacklog: received messages waiting for their handlers now.
	HandlerBacklog int    `json:"handler_backlog"`
	Attempts       uint64 `json:"attempts"`   // connection attempts made
	Reconnects     uint64 `json:"reconnects"` // connections made after the first one
	// Outbox and OutboxBytes: what waits to be sent or acknowledged; both 0
	// after Close (what a durable outbox kept is reported by Close).
	Outbox      int `json:"outbox"`
	OutboxBytes int `json:"outbox_bytes"`
}

type counters struct {
	published, acknowledged, dropped, failed [3]atomic.Uint64
	deduplicated, redelivered                atomic.Uint64
	received, handlerDrops, unrouted         atomic.Uint64
	attempts, reconnects                     atomic.Uint64
}

// Stats returns the counters; like Health it does no I/O.
func (c *Client) Stats() Stats {
	var s Stats
	for q := 0; q < 3; q++ {
		s.Published[q] = c.stats.published[q].Load()
		s.Acknowledged[q] = c.stats.acknowledged[q].Load()
		s.Dropped[q] = c.stats.dropped[q].Load()
		s.Failed[q] = c.stats.failed[q].Load()
	}
	s.Deduplicated = c.stats.deduplicated.Load()
	s.Redelivered = c.stats.redelivered.Load()
	s.Received = c.stats.received.Load()
	s.HandlerDrops = c.stats.handlerDrops.Load()
	s.Unrouted = c.stats.unrouted.Load()
	s.HandlerBacklog = c.subs.Backlog()
	s.Attempts = c.stats.attempts.Load()
	s.Reconnects = c.stats.reconnects.Load()
	s.Outbox, s.OutboxBytes = c.outbox.Len(), c.outbox.Bytes()
	return s
}
