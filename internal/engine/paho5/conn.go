package paho5

import (
	"bufio"
	"io"
	"sync"

	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// coalesceLimit is how many bytes of one packet are gathered before they
// go to the connection in one write: the size in which wire.Conn hands long
// writes to the kernel. A larger piece (a big payload) is written as it is.
const coalesceLimit = 32 << 10

// packetConn is the net.Conn paho.golang gets. paho.golang writes a packet
// as several pieces and locks the writer around them when it implements
// sync.Locker: packetConn is that lock (its own mutex, not wire.Conn's,
// which guards one write). The pieces of a packet are gathered and written
// at Unlock, so that a packet normally crosses wire.Conn, and the kernel,
// in one write, and the keepalive monitor's PINGREQ (wire.Conn.SendPing)
// only ever lands between two packets.
//
// Every write must be made with the lock held: paho.golang writes every
// packet through packets.ControlPacket.WriteTo, which takes it, and the
// engine's own PUBLISH packets go through writePackets.
type packetConn struct {
	*wire.Conn
	r *bufio.Reader

	mu  sync.Mutex
	buf []byte
	err error // the first write error: the stream is broken from there on

	first firstBytes
	// connect, when set, is written in place of the first packet (the
	// CONNECT paho.golang writes); see connectBytes.
	connect []byte
}

func newPacketConn(c *wire.Conn) *packetConn {
	pc := &packetConn{Conn: c}
	pc.first.r = c
	pc.r = bufio.NewReaderSize(&pc.first, 4096)
	return pc
}

// Read reads through a buffer: paho.golang reads a packet's fixed header a
// byte at a time. wire.Conn still sees every byte as it arrives.
func (c *packetConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Lock starts a packet.
func (c *packetConn) Lock() { c.mu.Lock() }

// Unlock writes what was gathered of the packet and ends it. A write error
// is kept and returned by every later write.
func (c *packetConn) Unlock() {
	if c.connect != nil && c.err == nil {
		own := c.connect
		c.connect = nil
		if _, err := c.Conn.Write(own); err != nil {
			c.broken(err)
		}
	} else {
		_ = c.flushLocked()
	}
	c.mu.Unlock()
}

// Write takes one piece of a packet; the lock is held.
func (c *packetConn) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.connect != nil {
		return len(p), nil // replaced as a whole at Unlock
	}
	if len(c.buf)+len(p) <= coalesceLimit {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	if len(p) <= coalesceLimit {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		c.broken(err)
	}
	return n, err
}

// broken keeps the first write error and closes the connection: part of a
// packet may have left, so nothing written after it could be parsed, and
// paho.golang's reader must end now rather than at the next keepalive.
// wire.Conn keeps the error for the loss report (IOErr).
func (c *packetConn) broken(err error) {
	c.err = err
	_ = c.Conn.Close()
}

func (c *packetConn) flushLocked() error {
	if c.err != nil {
		c.buf = c.buf[:0]
		return c.err
	}
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	if cap(c.buf) > 2*coalesceLimit {
		c.buf = nil
	} else {
		c.buf = c.buf[:0]
	}
	if err != nil {
		c.broken(err)
	}
	return err
}

// writePackets writes the PUBLISH packets of batch, gathered into as few
// writes as coalesceLimit allows, and returns the first error.
func (c *packetConn) writePackets(batch []*pending) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range batch {
		if c.err != nil {
			return c.err
		}
		// Through a view without Lock, as the lock is held already.
		if _, err := p.pkt.WriteTo(pieces{c}); err != nil {
			c.buf = c.buf[:0]
			return err
		}
	}
	return c.flushLocked()
}

type pieces struct{ c *packetConn }

func (w pieces) Write(p []byte) (int, error) { return w.c.Write(p) }

// firstBytes keeps a copy of the first bytes the broker sent: a broker
// that speaks only MQTT 3.1.1 answers a v5 CONNECT with a 3.1.1 CONNACK,
// which paho.golang cannot parse and reports as a bare read error.
type firstBytes struct {
	r  io.Reader
	mu sync.Mutex
	b  [8]byte
	n  int
}

func (f *firstBytes) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 {
		f.mu.Lock()
		if f.n < len(f.b) {
			f.n += copy(f.b[f.n:], p[:n])
		}
		f.mu.Unlock()
	}
	return n, err
}

// v311Connack reports the return code of a 3.1.1 CONNACK (fixed header
// 0x20, remaining length 2, flags, return code) if that is what the broker
// answered. A v5 CONNACK has a remaining length of at least 3.
func (f *firstBytes) v311Connack() (code byte, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n < 4 || f.b[0] != wire.CONNACK<<4 || f.b[1] != 2 {
		return 0, false
	}
	return f.b[3], true
}
