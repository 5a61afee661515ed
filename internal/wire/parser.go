// Package wire follows the MQTT byte stream of a connection without copying
// it: it finds packet boundaries from the fixed headers and reports each
// packet's type, flags, length and the first bytes of its variable header.
//
// The client uses it to see what really crossed the socket (PINGRESP round
// trips, the last packet received, PUBACKs) instead of trusting the state
// that paho infers.
package wire

// Packet types of MQTT 3.1.1 (section 2.2.1).
const (
	CONNECT     byte = 1
	CONNACK     byte = 2
	PUBLISH     byte = 3
	PUBACK      byte = 4
	PUBREC      byte = 5
	PUBREL      byte = 6
	PUBCOMP     byte = 7
	SUBSCRIBE   byte = 8
	SUBACK      byte = 9
	UNSUBSCRIBE byte = 10
	UNSUBACK    byte = 11
	PINGREQ     byte = 12
	PINGRESP    byte = 13
	DISCONNECT  byte = 14
)

// HeadSize is how many bytes of the variable header a Header carries: enough
// for a packet identifier or a CONNACK's flags and return code.
const HeadSize = 4

// Header describes one complete packet seen on the stream.
type Header struct {
	Type  byte // packet type, 1..14
	Flags byte // low nibble of the first byte (DUP, QoS, RETAIN for PUBLISH)
	Len   int  // remaining length: variable header plus payload
	// Head holds the first min(Len, HeadSize) bytes after the fixed header.
	Head [HeadSize]byte
}

// parser states
const (
	wantType = iota
	wantLen
	inBody
	lost // the stream is not MQTT any more; only bytes are counted
)

// Parser is an incremental fixed-header reader. It is not safe for
// concurrent use; each direction of a connection has its own.
type Parser struct {
	state int
	cur   Header
	shift uint // bit position of the next remaining-length byte
	n     int  // remaining-length bytes read so far
	left  int  // body bytes still to come
	headN int
}

// Feed consumes p and calls emit for every packet that p completes. It never
// keeps p.
func (ps *Parser) Feed(p []byte, emit func(Header)) {
	for len(p) > 0 {
		switch ps.state {
		case wantType:
			ps.cur = Header{Type: p[0] >> 4, Flags: p[0] & 0x0f}
			ps.shift, ps.n, ps.headN = 0, 0, 0
			ps.state = wantLen
			p = p[1:]
		case wantLen:
			b := p[0]
			p = p[1:]
			ps.cur.Len |= int(b&0x7f) << ps.shift
			ps.shift += 7
			ps.n++
			if b&0x80 != 0 {
				if ps.n == 4 { // a fifth length byte is a protocol violation
					ps.state = lost
				}
				continue
			}
			ps.left = ps.cur.Len
			if ps.left == 0 {
				ps.state = wantType
				emit(ps.cur)
				continue
			}
			ps.state = inBody
		case inBody:
			k := min(len(p), ps.left)
			for i := 0; i < k && ps.headN < HeadSize; i++ {
				ps.cur.Head[ps.headN] = p[i]
				ps.headN++
			}
			ps.left -= k
			p = p[k:]
			if ps.left == 0 {
				ps.state = wantType
				emit(ps.cur)
			}
		case lost:
			return
		}
	}
}

// AtBoundary reports whether the next byte starts a new packet, so that a
// packet of our own can be written without splitting another.
func (ps *Parser) AtBoundary() bool { return ps.state == wantType }

// Lost reports whether the stream stopped looking like MQTT.
func (ps *Parser) Lost() bool { return ps.state == lost }
