package mqtttest

import (
	"errors"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Drop makes the broker end the connection of the client with clientID, as
// a broker does when another client takes the ID or an ACL throws the
// client out. When it returns, the broker has closed the connection and no
// longer counts the client as connected; the client learns of it from its
// socket (at once, unless the link is frozen). Dropping a client that is
// not connected does nothing.
func (b *Broker) Drop(clientID string) {
	if cl := b.presence.get(clientID); cl != nil {
		cl.Stop(packets.ErrSessionTakenOver)
	}
}

// Refuse makes the broker answer every new CONNECT with a CONNACK that
// carries code, an MQTT 3.1.1 return code: 1 unacceptable protocol
// version, 2 identifier rejected, 3 server unavailable, 4 bad user name or
// password, 5 not authorized. It then closes the connection. Clients
// already connected stay connected (Drop them to make them meet the
// refusal). Use it to test how a client reports a refusal and how it keeps
// retrying; Accept lets clients in again.
func (b *Broker) Refuse(code byte) {
	if b.tb != nil {
		b.tb.Helper()
	}
	if code == 0 {
		b.check(errors.New("mqtttest: Refuse(0): return code 0 accepts; call Accept"))
		return
	}
	b.gate.refuse.Store(uint32(code))
}

// Accept undoes Refuse: new connections are accepted again (with the
// credentials of WithUser, if it was given).
func (b *Broker) Accept() { b.gate.refuse.Store(0) }

// Freeze makes every connection through URL, and every new one, stop
// carrying bytes in both directions while their sockets stay open: the
// half-open link of a cellular path that died or a NAT that forgot the
// flow. A client sees no error, only silence: its publishes go
// unacknowledged and its pings unanswered until it gives up on the
// connection by itself. Use it to test that a client notices a dead link.
//
// Nothing is dropped on the way: Thaw lets the bytes flow on, and only
// then does a client see a Drop or a Stop made while frozen. Like a real
// broker, the broker ends the connection of a client it heard nothing from
// for one and a half keepalive intervals; the client, too, learns of that
// only after Thaw.
func (b *Broker) Freeze() { b.link.freeze() }

// Thaw undoes Freeze: what waited on either side flows on.
func (b *Broker) Thaw() { b.link.thaw() }
