package paho311

import (
	"net"

	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// keepAliveInConnect writes the keepalive period into the CONNECT packet
// paho sends. paho runs its own pinger whenever its keepalive is set, which
// beside the monitor's would double the PINGREQs on the wire; with paho's
// keepalive at 0, the period the broker must enforce is put here instead.
type keepAliveInConnect struct {
	net.Conn
	seconds uint16
	done    bool // CONNECT is the first packet: only the first write is looked at
}

func (k *keepAliveInConnect) Write(p []byte) (int, error) {
	if k.done {
		return k.Conn.Write(p)
	}
	k.done = true
	if at := keepAliveOffset(p); at > 0 {
		q := append([]byte(nil), p...)
		q[at], q[at+1] = byte(k.seconds>>8), byte(k.seconds)
		return k.Conn.Write(q)
	}
	return k.Conn.Write(p)
}

// keepAliveOffset finds the keepalive field of a whole MQTT 3.1.1 CONNECT
// in p (fixed header, remaining length, "\x00\x04MQTT", level, flags,
// keepalive), or returns 0 when p is not one.
func keepAliveOffset(p []byte) int {
	if len(p) < 2 || p[0]>>4 != wire.CONNECT {
		return 0
	}
	i := 1
	for ; i < len(p) && i <= 4 && p[i]&0x80 != 0; i++ {
	}
	i++ // past the last length byte
	const name = "\x00\x04MQTT"
	if len(p) < i+len(name)+4 || string(p[i:i+len(name)]) != name {
		return 0
	}
	return i + len(name) + 2
}
