package paho5

import (
	"bytes"
	"encoding/binary"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// paho.golang v0.23.0 packs a will's properties with the rules of the
// CONNECT's own properties, which drops content type, response topic,
// correlation data, message expiry and payload format: the will would go
// without them. When the will has any of them, the engine writes the
// CONNECT itself, the same bytes with the will properties packed as a
// PUBLISH's (the properties a will may carry, user properties included),
// in place of paho.golang's (packetConn.connect).

// willNeedsOwnConnect reports whether paho.golang would drop some of the
// will's properties.
func willNeedsOwnConnect(wp *paho.WillProperties) bool {
	return wp != nil && (wp.ContentType != "" || wp.ResponseTopic != "" || len(wp.CorrelationData) > 0 ||
		wp.MessageExpiry != nil || wp.PayloadFormat != nil)
}

// connectBytes encodes the whole CONNECT packet of cp, as paho.golang
// does, but for the will properties.
func connectBytes(cp *paho.Connect) []byte {
	c := cp.Packet()
	var b bytes.Buffer
	putString(&b, "MQTT")
	b.WriteByte(5)
	b.WriteByte(c.PackFlags())
	putUint16(&b, c.KeepAlive)
	putProps(&b, c.Properties.Pack(packets.CONNECT))
	putString(&b, c.ClientID)
	if c.WillFlag {
		var wp []byte
		if w := cp.WillProperties; w != nil {
			wp = (&packets.Properties{
				PayloadFormat: w.PayloadFormat, MessageExpiry: w.MessageExpiry, ContentType: w.ContentType,
				ResponseTopic: w.ResponseTopic, CorrelationData: w.CorrelationData, User: w.User.ToPacketProperties(),
			}).Pack(packets.PUBLISH)
			if w.WillDelayInterval != nil {
				d := make([]byte, 5)
				d[0] = packets.PropWillDelayInterval
				binary.BigEndian.PutUint32(d[1:], *w.WillDelayInterval)
				wp = append(d, wp...)
			}
		}
		putProps(&b, wp)
		putString(&b, c.WillTopic)
		putBinary(&b, c.WillMessage)
	}
	if c.UsernameFlag {
		putString(&b, c.Username)
	}
	if c.PasswordFlag {
		putBinary(&b, c.Password)
	}
	var out bytes.Buffer
	out.WriteByte(packets.CONNECT << 4)
	putVBI(&out, b.Len())
	out.Write(b.Bytes())
	return out.Bytes()
}

func putUint16(b *bytes.Buffer, v uint16) { b.WriteByte(byte(v >> 8)); b.WriteByte(byte(v)) }

func putString(b *bytes.Buffer, s string) { putBinary(b, []byte(s)) }

func putBinary(b *bytes.Buffer, d []byte) {
	if len(d) > 65535 {
		d = d[:65535]
	}
	putUint16(b, uint16(len(d)))
	b.Write(d)
}

func putProps(b *bytes.Buffer, p []byte) {
	putVBI(b, len(p))
	b.Write(p)
}

func putVBI(b *bytes.Buffer, n int) {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b.WriteByte(d)
		if n == 0 {
			return
		}
	}
}
