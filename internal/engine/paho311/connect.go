package paho311

import (
	"errors"
	"net"
	"sync/atomic"

	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// keepAliveInConnect writes the keepalive period into the CONNECT packet
// paho sends. paho runs its own pinger whenever its keepalive is set, which
// beside the monitor's would double the PINGREQs on the wire; with paho's
// keepalive at 0, the period the broker must enforce is put here instead.
type keepAliveInConnect struct {
	net.Conn
	seconds uint16
	done    atomic.Bool // CONNECT is the first packet: only the first write is looked at
}

// errNoConnect is returned when paho's first write is not a whole CONNECT:
// sent as it is, it would ask the broker for no keepalive at all, and a
// half-open client would never be dropped nor its will published.
var errNoConnect = errors.New("steadymqtt: the first packet written was not a whole MQTT 3.1.1 CONNECT; not sent without its keepalive")

func (k *keepAliveInConnect) Write(p []byte) (int, error) {
	if k.done.Load() {
		return k.Conn.Write(p)
	}
	k.done.Store(true)
	at := keepAliveOffset(p)
	if at == 0 {
		return 0, errNoConnect
	}
	q := append([]byte(nil), p...)
	q[at], q[at+1] = byte(k.seconds>>8), byte(k.seconds)
	return k.Conn.Write(q)
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
