package steadymqtt

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/steadymqtt/steadymqtt/internal/wire"
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
	Outbox       int           // publishes waiting to be sent or acknowledged
}

// Health returns the current snapshot.
func (c *Client) Health() Health {
	c.m.mu.Lock()
	h := Health{
		State:     c.m.state,
		Since:     c.m.since,
		Broker:    c.m.broker,
		Interface: c.m.iface,
		Attempt:   c.m.attempt,
		LastError: c.m.lastErr,
	}
	conn := c.m.conn
	c.m.mu.Unlock()
	if conn != nil {
		s := conn.Stats()
		h.LocalAddr, h.RemoteAddr = conn.LocalAddr(), conn.RemoteAddr()
		h.RTT, h.LastPacketAt = s.RTT, s.LastReceived
	}
	h.Outbox = c.outboxLen()
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
		Outbox       int        `json:"outbox"`
	}
	o := out{
		State: h.State, Since: h.Since, Broker: h.Broker, Interface: h.Interface,
		RTTMillis: float64(h.RTT) / float64(time.Millisecond),
		Attempt:   h.Attempt, Outbox: h.Outbox,
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
	return json.Marshal(o)
}

// keepalive timings, as fractions of the keepalive period. The broker drops
// a silent client after 1.5 × keepalive; the client must notice a dead link
// before that, and a link is only known to be alive by what it receives
// (counting what we send hides dead links, MQTT.js #1861).
const (
	pingAfterFrac     = 0.5  // ping when nothing was received for this long
	degradedAfterFrac = 0.75 // the ping has had a quarter keepalive to come back
	deadAfterFrac     = 1.0  // a whole keepalive of silence: drop the connection
	monitorTicks      = 10   // checks per keepalive period
)

// monitor watches one live connection until it closes or stop is closed:
// it sends PINGREQs on its own schedule (paho's pinger checks only every
// min(5 s, KA/4) and waits PingTimeout on top), reports degradation, and
// closes a link that went silent.
func (c *Client) monitor(epoch uint64, conn *wire.Conn, stop <-chan struct{}) {
	ka := c.cfg.keepAlive
	frac := func(f float64) time.Duration { return time.Duration(float64(ka) * f) }
	pingAfter, degradedAfter, deadAfter := frac(pingAfterFrac), frac(degradedAfterFrac), frac(deadAfterFrac)
	tick := time.NewTicker(ka / monitorTicks)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-conn.Done():
			return
		case <-tick.C:
		}
		s := conn.Stats()
		if s.SinceAlive >= deadAfter {
			_ = conn.CloseWithError(fmt.Errorf("%w: nothing received from the broker for %v (keepalive %v)",
				ErrKeepaliveTimeout, s.SinceAlive.Round(time.Millisecond), ka))
			return
		}
		if s.SinceReceived >= pingAfter {
			if err := conn.SendPing(ka / 4); err != nil && !errors.Is(err, wire.ErrBusy) {
				_ = conn.CloseWithError(fmt.Errorf("%w: sending PINGREQ: %w", ErrKeepaliveTimeout, err))
				return
			}
		}
		var why error
		switch {
		case s.SinceAlive >= degradedAfter:
			why = fmt.Errorf("%w: keepalive answer overdue, nothing received for %v",
				ErrDegraded, s.SinceAlive.Round(time.Millisecond))
		case c.cfg.degradedRTT > 0 && s.RTT > c.cfg.degradedRTT:
			why = fmt.Errorf("%w: keepalive round trip %v above the %v threshold", ErrDegraded, s.RTT, c.cfg.degradedRTT)
		}
		c.m.degrade(epoch, why)
	}
}

// Stats counts what the client did with messages since New. Arrays are
// indexed by QoS.
type Stats struct {
	Published    [3]uint64 // accepted by Publish (not counting joined or deduplicated calls)
	Acknowledged [3]uint64 // QoS 0: written; QoS 1/2: PUBACK/PUBCOMP seen
	Dropped      [3]uint64 // refused offline (QoS 0), dropped from a full outbox, or poison
	Deduplicated uint64    // Publish calls answered by an idempotency key without a send
	Redelivered  uint64    // messages sent again on a new connection
	Received     uint64    // messages received for subscriptions
	HandlerDrops uint64    // received messages not handed to a full handler backlog
	Unrouted     uint64    // received messages that matched no subscription
	Outbox       int       // messages waiting to be sent or acknowledged
	OutboxBytes  int
}

type counters struct {
	published, acknowledged, dropped [3]atomic.Uint64
	deduplicated, redelivered        atomic.Uint64
	received, handlerDrops, unrouted atomic.Uint64
}

// Stats returns the counters; like Health it does no I/O.
func (c *Client) Stats() Stats {
	var s Stats
	for q := 0; q < 3; q++ {
		s.Published[q] = c.stats.published[q].Load()
		s.Acknowledged[q] = c.stats.acknowledged[q].Load()
		s.Dropped[q] = c.stats.dropped[q].Load()
	}
	s.Deduplicated = c.stats.deduplicated.Load()
	s.Redelivered = c.stats.redelivered.Load()
	s.Received = c.stats.received.Load()
	s.HandlerDrops = c.stats.handlerDrops.Load()
	s.Unrouted = c.stats.unrouted.Load()
	s.Outbox, s.OutboxBytes = c.outbox.Len(), c.outbox.Bytes()
	return s
}
