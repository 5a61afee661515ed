// Package steadyprom exports the health and counters of steadymqtt clients
// as Prometheus metrics.
//
// It is a module of its own so that programs using steadymqtt without
// Prometheus do not pull in client_golang.
//
// NewCollector returns a prometheus.Collector that reads Client.Health and
// Client.Stats on every scrape; it keeps no counters of its own and runs
// nothing between scrapes. It registers nothing by itself: the program chooses the
// registry, usually its own rather than the global default one.
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(steadyprom.NewCollector(telemetry, control))
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// Every series carries the label client_id (Client.ClientID); the counters
// of publishes also carry qos ("0", "1", "2") and steadymqtt_state carries
// state. No metric is labelled with a topic: topics are unbounded, and each
// value would be a new series for the Prometheus server to keep.
//
// The metrics (all prefixed steadymqtt_):
//
//	state{state}                      gauge    1 for the current state, 0 for the others
//	connected                         gauge    1 while connected or degraded
//	state_since_seconds               gauge    Unix time the current state was entered
//	keepalive_rtt_seconds             gauge    last keepalive round trip
//	last_packet_timestamp_seconds     gauge    Unix time of the last packet from the broker
//	session_present                   gauge    1 when the broker kept the session
//	connect_attempts_total            counter  connection attempts
//	reconnects_total                  counter  connections after the first one
//	consecutive_failed_attempts       gauge    failed attempts since the last success
//	outbox_messages                   gauge    publishes waiting to be sent or acknowledged
//	outbox_bytes                      gauge    their size
//	published_total{qos}              counter  messages accepted by Publish
//	acknowledged_total{qos}           counter  messages written (QoS 0) or acknowledged
//	dropped_total{qos}                counter  messages dropped (offline QoS 0, full outbox, poison)
//	failed_total{qos}                 counter  messages accepted but never delivered
//	redelivered_total                 counter  messages sent again on a new connection
//	deduplicated_total                counter  Publish calls answered by an idempotency key
//	received_total                    counter  messages received for subscriptions
//	handler_drops_total               counter  received messages dropped at a full handler backlog
//	unrouted_total                    counter  received messages that matched no subscription
//	handler_backlog                   gauge    received messages waiting for their handlers
//
// Client IDs must be unique within one registry. Two clients that share an
// ID on purpose (one per broker, say) are registered through
// prometheus.WrapRegistererWith, each with a label of its own:
//
//	prometheus.WrapRegistererWith(prometheus.Labels{"broker": "telemetry"}, reg).
//		MustRegister(steadyprom.NewCollector(telemetry))
package steadyprom
