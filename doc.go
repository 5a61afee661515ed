// Package steadymqtt keeps a service connected to its MQTT broker through
// bad networks.
//
// It wraps github.com/eclipse/paho.mqtt.golang (MQTT 3.1.1) and owns what
// such services otherwise write by hand: one reconnect loop with
// exponential backoff and full jitter, reset only after a connection proved
// stable; one truthful State with an ordered, non-blocking stream of Events;
// a keepalive-based Health snapshot with the measured round trip; classified
// errors (errors.Is) for refusals and timeouts; and HTTP liveness and
// readiness handlers.
//
// # One connection attempt
//
// Connect starts the manager (reconnect.go). Each attempt takes the next
// broker URL, opens a new epoch in the state machine (state.go), and runs
// paho's Connect, whose open-connection hook (dial.go) resolves the host,
// dials, performs TLS if the URL asks for it, and wraps the socket in an
// observer (internal/wire) that reads MQTT fixed headers as they pass. On
// CONNACK the state becomes connected, and a monitor (health.go) watches
// what the observer sees: it pings after half a keepalive of silence,
// reports StateDegraded after three quarters, and closes the socket after a
// whole keepalive, well within the 1.5 × keepalive a broker allows. A loss
// moves the state to reconnecting with the error and the next delay, and the
// manager waits that delay before the next attempt.
//
// # One publish
//
// Publish (publish.go) validates, and for QoS 1 and 2 puts the message in
// the outbox (internal/outbox; on disk first with WithDurableOutbox). The
// sender of the live connection hands outbox messages to paho in order, a
// window at a time; the connection's ack tracker sees each PUBACK / PUBCOMP
// go by, and only then does the message leave the outbox and Publish return
// nil. A message in flight when the connection drops goes back to its
// place and is sent on the next connection.
//
// # Where it leaves from
//
// With WithInterfaces (ipselect.go) every attempt binds to the first usable
// interface from the current preference position, and a watcher drops the
// connection as soon as that interface or its address goes away, or a more
// preferred one has been usable for the fail-back period.
//
// # States and events
//
// The state machine is the only place where the state changes; every change
// is an Event with a strictly increasing Seq, delivered to each subscriber
// (OnStateChange, Watch) in order on its own goroutine. A subscriber that
// lags loses its oldest pending events, never the latest, and the next event
// it gets says how many it missed (Event.Dropped). A failed attempt that
// does not change the state is still reported, with From == To.
package steadymqtt
