// Package steadymqtt keeps a service connected to its MQTT broker through
// bad networks: IoT gateways on multi-homed hosts, edge collectors, fleet
// agents.
//
// It wraps github.com/eclipse/paho.mqtt.golang (MQTT 3.1.1) and
// github.com/eclipse/paho.golang (MQTT 5, WithProtocol) behind one API, and
// adds what such services otherwise write by hand:
//
//   - one reconnect loop with exponential backoff and full jitter, reset
//     only after a connection proved stable;
//   - one truthful State (idle, connecting, connected, degraded,
//     reconnecting, closed) and an ordered stream of Events that never
//     blocks the client;
//   - keepalive health: one PINGREQ per keepalive while idle, the measured
//     round trip in Health, a dead link left within 1.5 × keepalive;
//   - binding to a network interface or source address, with fail-over
//     between interfaces and back (WithInterfaces);
//   - Publish that returns nil only when the broker acknowledged, an
//     outbox (optionally durable) while offline, and idempotency keys so a
//     retry never sends twice;
//   - TLS that is hard to get wrong, and classified errors for refusals,
//     TLS failures and timeouts (errors.Is, errors.As), each naming the
//     step of the connection it happened at (StepError);
//   - a diagnosis that walks a connection step by step (Diagnose,
//     cmd/mqttdoctor), presence, metrics (package steadyprom), a status
//     page (StatusHandler) and a test broker (package mqtttest).
//
// # Connect and watch
//
//	client, err := steadymqtt.New(
//		steadymqtt.WithBroker("mqtts://broker.example:8883"),
//		steadymqtt.WithClientID("gateway-42"),
//	)
//	if err != nil {
//		return err // errors.Is(err, steadymqtt.ErrInvalidOption)
//	}
//	defer client.Close(context.Background())
//	client.OnStateChange(func(ev steadymqtt.Event) {
//		log.Printf("%s → %s: %v (next attempt in %v)", ev.From, ev.To, ev.Err, ev.Delay)
//	})
//	err = client.Connect(ctx) // keeps trying in the background even if ctx ends first
//
// State and Health are cheap enough for a health probe at any rate;
// LivenessHandler and ReadinessHandler serve them over HTTP.
//
// # Publish
//
//	err := client.Publish(ctx, "gateways/42/telemetry", payload,
//		steadymqtt.WithQoS(1), steadymqtt.WithIdempotencyKey(reading.ID))
//
// A nil error means the broker acknowledged the message. If ctx ends first
// the message stays queued, and a retry with the same key waits for that
// same send instead of sending again.
//
// # Subscribe
//
//	err := client.Subscribe(ctx, "gateways/42/commands/#", 1, func(m steadymqtt.Message) {
//		handle(m.Topic, m.Payload) // on the subscription's own goroutine
//	})
//
// Subscriptions are restored after every reconnect in which the broker lost
// the session. Message events (a handler that fell behind, a poison
// message) reach OnEvent and Watch.
//
// ARCHITECTURE.md in the repository traces one connection attempt and one
// publish through the internal packages.
package steadymqtt
