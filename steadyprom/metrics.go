package steadyprom

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/steadymqtt/steadymqtt"
)

// The metric catalogue: names, help, types, and where each value comes
// from in Health and Stats. Adding a metric is one entry here.

const namespace = "steadymqtt"

// snapshot is what one scrape reads from one client.
type snapshot struct {
	h steadymqtt.Health
	s steadymqtt.Stats
}

type scalar struct {
	name, help string
	typ        prometheus.ValueType
	value      func(snapshot) float64
}

var scalars = []scalar{
	{"connected", "1 while the client has a live connection to the broker (state connected or degraded), else 0.",
		prometheus.GaugeValue, func(x snapshot) float64 { return flag(x.h.State.Up()) }},
	{"state_since_seconds", "Unix time at which the client entered its current state.",
		prometheus.GaugeValue, func(x snapshot) float64 { return unix(x.h.Since) }},
	{"keepalive_rtt_seconds", "Round trip of the last keepalive measured, kept through an outage; 0 when none was measured yet.",
		prometheus.GaugeValue, func(x snapshot) float64 { return x.h.RTT.Seconds() }},
	{"last_packet_timestamp_seconds", "Unix time of the last packet received from the broker, kept through an outage; 0 when none yet.",
		prometheus.GaugeValue, func(x snapshot) float64 { return unix(x.h.LastPacketAt) }},
	{"session_present", "1 when the broker kept the session of the live connection (CONNACK session present), else 0.",
		prometheus.GaugeValue, func(x snapshot) float64 { return flag(x.h.SessionPresent) }},
	{"connect_attempts_total", "Connection attempts made since the client was created.",
		prometheus.CounterValue, func(x snapshot) float64 { return float64(x.s.Attempts) }},
	{"reconnects_total", "Connections made after the first one.",
		prometheus.CounterValue, func(x snapshot) float64 { return float64(x.s.Reconnects) }},
	{"consecutive_failed_attempts", "Connection attempts that failed since the last successful one.",
		prometheus.GaugeValue, func(x snapshot) float64 { return float64(x.h.Attempt) }},
	{"outbox_messages", "Publishes waiting in the outbox to be sent or acknowledged.",
		prometheus.GaugeValue, func(x snapshot) float64 { return float64(x.s.Outbox) }},
	{"outbox_bytes", "Size of the publishes waiting in the outbox.",
		prometheus.GaugeValue, func(x snapshot) float64 { return float64(x.s.OutboxBytes) }},
	{"redelivered_total", "Messages sent again on a new connection.",
		prometheus.CounterValue, func(x snapshot) float64 { return float64(x.s.Redelivered) }},
	{"deduplicated_total", "Publish calls answered by an idempotency key without a send.",
		prometheus.CounterValue, func(x snapshot) float64 { return float64(x.s.Deduplicated) }},
	{"received_total", "Messages received for subscriptions.",
		prometheus.CounterValue, func(x snapshot) float64 { return float64(x.s.Received) }},
	{"handler_drops_total", "Received messages dropped because their handler backlog was full.",
		prometheus.CounterValue, func(x snapshot) float64 { return float64(x.s.HandlerDrops) }},
	{"unrouted_total", "Received messages that matched no subscription.",
		prometheus.CounterValue, func(x snapshot) float64 { return float64(x.s.Unrouted) }},
	{"handler_backlog", "Received messages waiting for their handlers.",
		prometheus.GaugeValue, func(x snapshot) float64 { return float64(x.s.HandlerBacklog) }},
}

type perQoS struct {
	name, help string
	value      func(steadymqtt.Stats) [3]uint64
}

var perQoSCounters = []perQoS{
	{"published_total", "Messages accepted by Publish, by QoS.",
		func(s steadymqtt.Stats) [3]uint64 { return s.Published }},
	{"acknowledged_total", "Messages written to the connection (QoS 0) or acknowledged by the broker (QoS 1 and 2), by QoS.",
		func(s steadymqtt.Stats) [3]uint64 { return s.Acknowledged }},
	{"dropped_total", "Messages dropped: refused while offline (QoS 0), dropped from a full outbox, or poison; by QoS.",
		func(s steadymqtt.Stats) [3]uint64 { return s.Dropped }},
	{"failed_total", "Messages accepted but never delivered, not counting dropped ones, by QoS.",
		func(s steadymqtt.Stats) [3]uint64 { return s.Failed }},
}

// states lists every state so that a scrape has a series for each: a
// series that exists only while it is 1 would make "how long was it
// reconnecting" queries miss the zeros.
var states = []steadymqtt.State{
	steadymqtt.StateIdle, steadymqtt.StateConnecting, steadymqtt.StateConnected,
	steadymqtt.StateDegraded, steadymqtt.StateReconnecting, steadymqtt.StateClosed,
}

var qosValues = [3]string{"0", "1", "2"}

// clientMetrics holds the descriptors of one client. The client ID is a
// constant label of each, so that clients in separate collectors can share
// a registry, and the registry itself rejects a client ID registered twice.
type clientMetrics struct {
	client  *steadymqtt.Client
	state   *prometheus.Desc
	scalars []*prometheus.Desc
	perQoS  []*prometheus.Desc
}

func newClientMetrics(c *steadymqtt.Client) *clientMetrics {
	labels := prometheus.Labels{"client_id": c.ClientID()}
	m := &clientMetrics{
		client: c,
		state: prometheus.NewDesc(namespace+"_state",
			"Connection state of the client: 1 for the current state, 0 for the others.",
			[]string{"state"}, labels),
	}
	for _, d := range scalars {
		m.scalars = append(m.scalars, prometheus.NewDesc(namespace+"_"+d.name, d.help, nil, labels))
	}
	for _, d := range perQoSCounters {
		m.perQoS = append(m.perQoS, prometheus.NewDesc(namespace+"_"+d.name, d.help, []string{"qos"}, labels))
	}
	return m
}

func (m *clientMetrics) describe(ch chan<- *prometheus.Desc) {
	ch <- m.state
	for _, d := range m.scalars {
		ch <- d
	}
	for _, d := range m.perQoS {
		ch <- d
	}
}

func (m *clientMetrics) collect(ch chan<- prometheus.Metric) {
	x := snapshot{h: m.client.Health(), s: m.client.Stats()}
	known := false
	for _, st := range states {
		known = known || st == x.h.State
		ch <- prometheus.MustNewConstMetric(m.state, prometheus.GaugeValue, flag(st == x.h.State), st.String())
	}
	if !known { // a state newer than this list still shows as current
		ch <- prometheus.MustNewConstMetric(m.state, prometheus.GaugeValue, 1, x.h.State.String())
	}
	for i, d := range scalars {
		ch <- prometheus.MustNewConstMetric(m.scalars[i], d.typ, d.value(x))
	}
	for i, d := range perQoSCounters {
		v := d.value(x.s)
		for q, label := range qosValues {
			ch <- prometheus.MustNewConstMetric(m.perQoS[i], prometheus.CounterValue, float64(v[q]), label)
		}
	}
}

func flag(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// unix reports the zero time as 0: time.Time{}.Unix() is year 1, which a
// dashboard would show as a date two thousand years ago.
func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
