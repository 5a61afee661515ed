package wire

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Dir is the direction of a packet relative to the client.
type Dir uint8

const (
	Received Dir = iota // from the broker
	Sent                // to the broker
)

// origin anchors every timestamp of this package to the monotonic clock, so
// that a wall-clock jump (NTP on a gateway that booted without RTC) cannot
// look like a dead link.
var origin = time.Now()

func monoTime(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return origin.Add(time.Duration(v))
}

// Conn is a net.Conn whose traffic is observed packet by packet. Reads and
// writes pass through untouched; the parsers only look at the bytes.
type Conn struct {
	net.Conn

	rmu sync.Mutex
	rp  Parser
	wmu sync.Mutex
	wp  Parser

	bytesIn, bytesOut     atomic.Uint64
	packetsIn, packetsOut atomic.Uint64
	lastRecv              atomic.Int64  // mono time of the last complete packet received
	lastSent              atomic.Int64  // mono time of the last complete packet sent
	lastSentType          atomic.Uint32 // its packet type
	// lastAlive is the last sign that the path works: bytes received, or a
	// later chunk of a long write accepted by the kernel (the first chunk
	// proves nothing, a dead socket takes it into its buffer: MQTT.js #1861).
	lastAlive atomic.Int64
	lastRead  atomic.Int64 // mono time of the last bytes received
	pingSent  atomic.Int64 // mono time of the outstanding PINGREQ, 0 when none
	rtt       atomic.Int64

	hook func(Dir, Header)
	now  func() time.Time

	closeOnce sync.Once
	done      chan struct{}
	causeMu   sync.Mutex
	cause     error
	ioErr     error // the first error Read or Write returned
}

// NewConn wraps c. now tells the time (nil: time.Now, whose readings carry
// the monotonic clock); tests give a fake clock's.
func NewConn(c net.Conn, now func() time.Time) *Conn {
	if now == nil {
		now = time.Now
	}
	w := &Conn{Conn: c, now: now, done: make(chan struct{})}
	// The connection counts as alive from the moment it exists; the first
	// packet received (CONNACK) refines it.
	now0 := w.mono()
	w.lastRecv.Store(now0)
	w.lastSent.Store(now0)
	w.lastAlive.Store(now0)
	w.lastRead.Store(now0)
	return w
}

func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		now := c.mono()
		c.lastAlive.Store(now) // a large packet trickling in is progress too
		c.lastRead.Store(now)
		c.bytesIn.Add(uint64(n))
		c.rmu.Lock()
		c.rp.Feed(p[:n], c.received)
		c.rmu.Unlock()
	}
	if err != nil {
		c.causeMu.Lock()
		if c.ioErr == nil {
			c.ioErr = err
		}
		// paho ignores "use of closed network connection" on the reading
		// side, taking it for its own teardown, and would only notice the
		// loss at its next ping timeout. Report why we closed instead.
		if c.cause != nil {
			err = c.cause
		}
		c.causeMu.Unlock()
	}
	return n, err
}

// IOErr is the first error a Read or Write returned (io.EOF, a reset or a
// broken pipe when the broker closed the connection), or nil. When the
// broker hangs up while the client writes, the write fails first, and the
// read that follows only sees the socket paho closed.
func (c *Conn) IOErr() error {
	c.causeMu.Lock()
	defer c.causeMu.Unlock()
	return c.ioErr
}

func (c *Conn) received(h Header) {
	now := c.mono()
	c.packetsIn.Add(1)
	c.lastRecv.Store(now)
	if h.Type == PINGRESP {
		if sent := c.pingSent.Swap(0); sent != 0 {
			c.rtt.Store(now - sent)
		}
	}
	if c.hook != nil {
		c.hook(Received, h)
	}
}

func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.write(p)
}

// writeChunk is the size in which long writes are handed to the kernel, so
// that their progress can be seen.
const writeChunk = 32 << 10

// write must be called with wmu held.
func (c *Conn) write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		k := min(len(p), writeChunk)
		// A broker on the same host answers a PINGREQ before Write returns:
		// the ping must be on record before its bytes leave, or its
		// PINGRESP finds nothing to clear and the record stays for ever.
		recorded := c.recordPings(p[:k])
		n, err := c.Conn.Write(p[:k])
		pings := 0
		if n > 0 {
			if total > 0 {
				c.lastAlive.Store(c.mono())
			}
			total += n
			c.bytesOut.Add(uint64(n))
			c.wp.Feed(p[:n], func(h Header) {
				if h.Type == PINGREQ {
					pings++
				}
				c.sent(h)
			})
		}
		if err != nil {
			if recorded != 0 && pings == 0 {
				// The PINGREQ never left: no answer is coming for it.
				c.pingSent.CompareAndSwap(recorded, 0)
			}
			c.causeMu.Lock()
			if c.ioErr == nil {
				c.ioErr = err
			}
			c.causeMu.Unlock()
			return total, err
		}
		p = p[n:]
	}
	return total, nil
}

// recordPings marks a PINGREQ that chunk completes as outstanding, unless
// one already is, and returns the mark it set (0 if none). It reads the
// chunk with a copy of the write parser, so the real parser still sees
// only what was written.
func (c *Conn) recordPings(chunk []byte) int64 {
	peek := c.wp
	var mark int64
	peek.Feed(chunk, func(h Header) {
		if h.Type == PINGREQ && mark == 0 {
			now := c.mono()
			if c.pingSent.CompareAndSwap(0, now) {
				mark = now
			}
		}
	})
	return mark
}

func (c *Conn) sent(h Header) {
	c.packetsOut.Add(1)
	c.lastSentType.Store(uint32(h.Type))
	c.lastSent.Store(c.mono())
	if c.hook != nil {
		c.hook(Sent, h)
	}
}

// SetWriteDeadline is ignored: paho sets one per packet from its write
// timeout, which would fail a large message on a slow but live uplink. The
// keepalive monitor judges the link by its progress instead; SendPing
// bounds its own write on the underlying connection.
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }

var pingreq = []byte{PINGREQ << 4, 0}

// ErrBusy is returned by SendPing when a write is in progress or a packet is
// half written; the caller tries again at its next tick.
var ErrBusy = errors.New("wire: connection busy writing")

// SendPing writes a PINGREQ between two packets. It never waits behind a
// blocked writer (a full send buffer is itself a sign of a dying link, which
// the caller detects from the silence), and bounds its own write by timeout.
func (c *Conn) SendPing(timeout time.Duration) error {
	if !c.wmu.TryLock() {
		return ErrBusy
	}
	defer c.wmu.Unlock()
	if !c.wp.AtBoundary() {
		return ErrBusy
	}
	if c.pingSent.Load() != 0 {
		return nil // one outstanding ping is enough to measure and to detect
	}
	_ = c.Conn.SetWriteDeadline(time.Now().Add(timeout))
	_, err := c.write(pingreq)
	_ = c.Conn.SetWriteDeadline(time.Time{})
	return err
}

// CloseWithError closes the connection and records why, unless a cause was
// already recorded. The cause is what the client reports instead of the
// read error paho sees ("use of closed network connection").
func (c *Conn) CloseWithError(cause error) error {
	c.causeMu.Lock()
	if c.cause == nil {
		c.cause = cause
	}
	c.causeMu.Unlock()
	return c.Close()
}

// Abort is CloseWithError for a connection given up as dead: the kernel
// drops what it still holds unsent (a reset, not a close that goes on
// delivering the queue once the path heals), so that half of a message
// given up on is not completed behind the client's back and then sent
// again on the next connection.
func (c *Conn) Abort(cause error) error {
	var inner net.Conn = c.Conn
	for {
		n, ok := inner.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		inner = n.NetConn()
	}
	if tc, ok := inner.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	return c.CloseWithError(cause)
}

// Close closes the underlying connection once.
func (c *Conn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		close(c.done)
		err = c.Conn.Close()
	})
	return err
}

// Cause is the error given to CloseWithError, or nil.
func (c *Conn) Cause() error {
	c.causeMu.Lock()
	defer c.causeMu.Unlock()
	return c.cause
}

// Done is closed once Close has been called.
func (c *Conn) Done() <-chan struct{} { return c.done }

// mono is the time as an offset from origin; never 0 in practice, which
// marks "none" in the fields that hold it.
func (c *Conn) mono() int64 { return int64(c.now().Sub(origin)) }

// Observe sets the function called for every complete packet in either
// direction, on the reading or writing goroutine (it must be quick). It
// must be called before the connection carries traffic.
func (c *Conn) Observe(hook func(Dir, Header)) { c.hook = hook }

// Stats is a snapshot of what crossed the connection.
type Stats struct {
	BytesIn, BytesOut     uint64
	PacketsIn, PacketsOut uint64
	LastReceived          time.Time     // last complete packet from the broker
	SinceReceived         time.Duration // monotonic age of LastReceived
	SinceSent             time.Duration // monotonic age of the last complete packet sent
	SinceAlive            time.Duration // age of the last sign of progress in either direction
	SinceRead             time.Duration // age of the last bytes received
	RTT                   time.Duration // last PINGREQ→PINGRESP round trip, 0 if none yet
	PingOutstanding       time.Duration // age of the unanswered PINGREQ, 0 if none
	LastSent              byte          // packet type of the last complete packet sent
}

// Stats reads the counters without locking.
func (c *Conn) Stats() Stats {
	now := c.mono()
	last := c.lastRecv.Load()
	s := Stats{
		BytesIn:       c.bytesIn.Load(),
		BytesOut:      c.bytesOut.Load(),
		PacketsIn:     c.packetsIn.Load(),
		PacketsOut:    c.packetsOut.Load(),
		SinceReceived: time.Duration(now - last),
		SinceSent:     time.Duration(now - c.lastSent.Load()),
		SinceAlive:    time.Duration(now - c.lastAlive.Load()),
		SinceRead:     time.Duration(now - c.lastRead.Load()),
		RTT:           time.Duration(c.rtt.Load()),
		LastSent:      byte(c.lastSentType.Load()),
	}
	if s.PacketsIn > 0 {
		s.LastReceived = monoTime(last)
	}
	if p := c.pingSent.Load(); p != 0 {
		s.PingOutstanding = time.Duration(now - p)
	}
	return s
}
