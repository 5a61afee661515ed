package paho311

import (
	"bytes"
	"errors"
	"net"
	"testing"

	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// One paho client per connection means paho has no earlier session whose
// tokens it could complete on reconnect without a PUBACK (paho #563), so no
// real scenario reaches this guard today: it is pinned here, where it is.
func TestATokenIsNoProofOfDelivery(t *testing.T) {
	puback := func(acks *ackTracker, id uint16) {
		acks.observe(wire.Received, wire.Header{Type: wire.PUBACK, Len: 2, Head: [4]byte{byte(id >> 8), byte(id)}})
	}
	tests := []struct {
		name   string
		qos    byte
		tokErr error
		before func(*ackTracker) // acknowledgements seen before the hand-off
		after  func(*ackTracker) // and after it
		want   bool
	}{
		{name: "token done, PUBACK seen", qos: 1, after: func(a *ackTracker) { puback(a, 7) }, want: true},
		{name: "token done, no PUBACK on the wire", qos: 1},
		{name: "token done, PUBACK for another id", qos: 1, after: func(a *ackTracker) { puback(a, 8) }},
		{name: "PUBACK for this id came before the hand-off", qos: 1, before: func(a *ackTracker) { puback(a, 7) }},
		{name: "token failed despite a PUBACK", qos: 1, tokErr: errors.New("lost"), after: func(a *ackTracker) { puback(a, 7) }},
		{name: "QoS 0 needs no acknowledgement", qos: 0, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acks := newAckTracker()
			if tt.before != nil {
				tt.before(acks)
			}
			mark := acks.mark()
			if tt.after != nil {
				tt.after(acks)
			}
			require.Equal(t, tt.want, confirmed(tt.tokErr, tt.qos, acks, 7, mark))
		})
	}
}

func TestAnAcknowledgementCountsOnce(t *testing.T) {
	acks := newAckTracker()
	mark := acks.mark()
	acks.observe(wire.Received, wire.Header{Type: wire.PUBCOMP, Len: 2, Head: [4]byte{0, 9}})
	require.True(t, confirmed(nil, 2, acks, 9, mark))
	require.False(t, confirmed(nil, 2, acks, 9, mark), "a later message reusing id 9 needs its own PUBCOMP")
	require.Equal(t, uint64(1), acks.mark())
}

type sink struct {
	net.Conn
	buf bytes.Buffer
}

func (s *sink) Write(p []byte) (int, error) { return s.buf.Write(p) }

// paho's pinger is off, so the keepalive the broker enforces is written
// into the CONNECT on its way out.
func TestKeepAliveWrittenIntoConnect(t *testing.T) {
	for _, clientID := range []string{"short", string(bytes.Repeat([]byte("x"), 300))} { // 1- and 2-byte lengths
		cp := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
		cp.ProtocolName, cp.ProtocolVersion, cp.ClientIdentifier, cp.Keepalive = "MQTT", 4, clientID, 0
		var raw bytes.Buffer
		require.NoError(t, cp.Write(&raw))

		out := &sink{}
		k := &keepAliveInConnect{Conn: out, seconds: 45}
		_, err := k.Write(raw.Bytes())
		require.NoError(t, err)
		got, err := packets.ReadPacket(&out.buf)
		require.NoError(t, err)
		require.Equal(t, uint16(45), got.(*packets.ConnectPacket).Keepalive)
		require.Equal(t, clientID, got.(*packets.ConnectPacket).ClientIdentifier)

		// Later writes pass untouched.
		_, err = k.Write([]byte{wire.PINGREQ << 4, 0})
		require.NoError(t, err)
		require.Equal(t, []byte{wire.PINGREQ << 4, 0}, out.buf.Bytes())
	}
	require.Zero(t, keepAliveOffset([]byte{wire.PUBLISH << 4, 0}))

	// A first packet that is not a CONNECT is refused, not sent without
	// its keepalive.
	k := &keepAliveInConnect{Conn: &sink{}, seconds: 45}
	_, err := k.Write([]byte{wire.PUBLISH << 4, 0})
	require.ErrorIs(t, err, errNoConnect)
}
