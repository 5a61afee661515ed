// Package mqtttest runs an MQTT 3.1.1 broker inside the test process, so
// that the tests of a gateway built on steadymqtt (or on any MQTT client)
// need no broker installed, and can make the faults that a real network and
// a real broker make, on demand.
//
// A test starts one broker with NewBroker; it listens on a free loopback
// port and is closed when the test ends:
//
//	func TestGatewayReconnects(t *testing.T) {
//		b := mqtttest.NewBroker(t)
//		client, err := steadymqtt.New(steadymqtt.WithBroker(b.URL()))
//		...
//		b.Stop()  // the broker goes away; the client sees its connection end
//		b.Start() // back on the same URL
//	}
//
// Programs that have no testing.TB, such as a demo or a local tool, use
// Start and Close instead.
//
// The faults:
//
//   - Stop and Start: the broker goes away and comes back on the same port,
//     with no memory of sessions or retained messages.
//   - Drop: the broker disconnects one client, as it does when another
//     client takes its ID or an ACL throws it out.
//   - Refuse and Accept: every new CONNECT is answered with a CONNACK
//     refusal code (5, not authorized, say), until Accept.
//   - Freeze and Thaw: every connection stops carrying bytes in both
//     directions while its sockets stay open, as on a half-open link (a
//     cellular path that died, a NAT that forgot the flow). Nothing is
//     lost: what was sent flows on after Thaw.
//
// The broker sits behind a small TCP proxy of this package, and URL is the
// proxy's address: that is how Freeze stops the bytes without closing
// anything. While the broker is stopped the proxy still accepts a
// connection and closes it at once, so a client sees its connection end
// (EOF) rather than "connection refused".
//
// Clients, Connected and WaitConnected tell which clients the broker holds,
// so that a test waits for a client instead of sleeping.
package mqtttest
