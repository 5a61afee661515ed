package mqtttest

import (
	"crypto/subtle"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// gate is the broker hook that decides on every CONNECT: refused with the
// code Refuse set, refused for wrong credentials, or let through.
type gate struct {
	mqtt.HookBase
	refuse atomic.Uint32 // an MQTT 3.1.1 return code; 0 lets clients in

	auth           bool
	user, password []byte
}

func newGate(c *config) *gate {
	return &gate{auth: c.auth, user: []byte(c.user), password: []byte(c.password)}
}

func (g *gate) ID() string { return "mqtttest-gate" }

func (g *gate) Provides(b byte) bool { return b == mqtt.OnConnect }

// OnConnect answers a refused CONNECT with its CONNACK itself: mochi closes
// the connection without one when the hook returns an error.
func (g *gate) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	code := byte(g.refuse.Load())
	if code == 0 && g.auth && !g.credentialsMatch(pk.Connect) {
		code = 4 // bad user name or password
	}
	if code == 0 {
		return nil
	}
	_ = cl.WritePacket(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connack},
		ReasonCode:  connackCode(cl.Properties.ProtocolVersion, code),
	})
	return packets.ErrNotAuthorized // closes the connection; mochi sends nothing more
}

func (g *gate) credentialsMatch(c packets.ConnectParams) bool {
	userOK := subtle.ConstantTimeCompare(c.Username, g.user) == 1
	passwordOK := subtle.ConstantTimeCompare(c.Password, g.password) == 1
	return userOK && passwordOK
}

// connackCode is the MQTT 3.1.1 return code as the client's protocol
// version spells it: MQTT 5 has reason codes of its own.
func connackCode(version byte, code byte) byte {
	if version < 5 {
		return code
	}
	v5 := map[byte]packets.Code{
		1: packets.ErrUnsupportedProtocolVersion,
		2: packets.ErrClientIdentifierNotValid,
		3: packets.ErrServerUnavailable,
		4: packets.ErrBadUsernameOrPassword,
		5: packets.ErrNotAuthorized,
	}
	if c, ok := v5[code]; ok {
		return c.Code
	}
	return packets.ErrUnspecifiedError.Code
}
