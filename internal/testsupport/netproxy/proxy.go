// Package netproxy is a loopback TCP proxy that can stop forwarding while
// keeping every socket open: the half-open link of a dead cellular path,
// made on demand for tests. It follows the MQTT packets that the broker
// sends, and can drop chosen ones whole (DropFromBroker): a PUBACK lost on
// the way, say, while everything else still arrives; or put other packets
// in their place (ReplaceFromBroker).
package netproxy

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// Proxy forwards connections from its own loopback port to a target.
type Proxy struct {
	target    string
	l         net.Listener
	blackhole atomic.Bool

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	n     int

	// tap, if set before traffic flows, sees every chunk the client sends,
	// with the number of the client connection (1, 2, …).
	tap func(conn int, b []byte)

	// Shaping, for slow and stalled links.
	rate   atomic.Int64 // client → broker bytes per second; 0: as fast as it comes
	delay  atomic.Int64 // broker → client one-way delay, ns
	frozen atomic.Bool  // neither direction reads or forwards

	hold    atomic.Pointer[holdFunc] // nil: nothing is held
	observe atomic.Pointer[func(conn int, h wire.Header, dropped bool)]
	// per packet type, broker → client
	forwarded, dropped [16]atomic.Int64
}

// holdFunc says what to forward in place of a whole packet from the
// broker; nil drops it.
type holdFunc func(h wire.Header, packet []byte) []byte

// DropFromBroker makes the proxy drop, whole, every packet from the broker
// whose type (wire.PUBACK, …) f reports true for; the others are
// forwarded whole. nil forwards everything again. While f is set, each
// packet from the broker is held until it is complete and then forwarded
// or dropped, so that the client never sees part of a packet. A packet
// that was already being forwarded when f was set is forwarded to its end.
// f runs on the proxy's goroutines.
func (p *Proxy) DropFromBroker(f func(packetType byte) bool) {
	if f == nil {
		p.hold.Store(nil)
		return
	}
	p.ReplaceFromBroker(func(h wire.Header, packet []byte) []byte {
		if f(h.Type) {
			return nil
		}
		return packet
	})
}

// ReplaceFromBroker holds every packet from the broker until it is
// complete, like DropFromBroker, and forwards what f returns in its place:
// packet itself, other bytes (a packet of another type, say), or nothing
// (nil drops it). f must neither keep nor change packet. A packet replaced by other
// bytes counts as dropped for its own type and as forwarded for the type
// of the first byte f returned. nil forwards everything again. It takes the
// place of a DropFromBroker filter, and the other way round.
func (p *Proxy) ReplaceFromBroker(f func(h wire.Header, packet []byte) []byte) {
	if f == nil {
		p.hold.Store(nil)
		return
	}
	hf := holdFunc(f)
	p.hold.Store(&hf)
}

// ObserveFromBroker sets a function that sees every complete packet from
// the broker, with the number of the connection, and whether it was
// dropped. A forwarded packet is reported before it is written to the
// client. Blackholed packets are not reported. nil removes it.
func (p *Proxy) ObserveFromBroker(f func(conn int, h wire.Header, dropped bool)) {
	if f == nil {
		p.observe.Store(nil)
		return
	}
	p.observe.Store(&f)
}

// FromBroker counts the packets of a type that came from the broker on
// every connection so far: forwarded to the client (counted before the
// write to the client's socket) and dropped (or replaced) by
// DropFromBroker or ReplaceFromBroker.
func (p *Proxy) FromBroker(packetType byte) (forwarded, dropped int) {
	t := packetType & 0x0f
	return int(p.forwarded[t].Load()), int(p.dropped[t].Load())
}

// CutAll closes every connection the proxy carries, as a path that died
// would (the client sees its socket closed); the proxy keeps listening,
// so the client can connect again.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

// Tap sets a function that sees what clients send, per connection. Set it
// before the first client connects.
func (p *Proxy) Tap(f func(conn int, b []byte)) {
	p.mu.Lock()
	p.tap = f
	p.mu.Unlock()
}

// Start listens on a free loopback port and forwards to target.
func Start(target string) (*Proxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, l: l, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// URL is the tcp:// URL of the proxy.
func (p *Proxy) URL() string { return "tcp://" + p.Addr() }

// Blackhole makes the proxy swallow every byte in both directions (on
// if true) while the sockets stay open; false forwards again.
func (p *Proxy) Blackhole(on bool) { p.blackhole.Store(on) }

// Throttle limits what the proxy forwards from clients to the broker to
// bytesPerSecond (an LTE uplink, say); 0 lifts the limit. The proxy reads
// no faster than that, so the client's TCP sees the broker's side
// acknowledge its bytes at that pace.
func (p *Proxy) Throttle(bytesPerSecond int) { p.rate.Store(int64(bytesPerSecond)) }

// DelayFromBroker holds every chunk from the broker for d before it goes to
// the client: a round trip longer by d. 0 forwards at once again.
func (p *Proxy) DelayFromBroker(d time.Duration) { p.delay.Store(int64(d)) }

// Freeze stops the proxy reading and forwarding in both directions while
// on, with every socket kept open: a path that went dead mid-transfer. The
// client's TCP then sees nothing acknowledged once the buffers are full.
func (p *Proxy) Freeze(on bool) { p.frozen.Store(on) }

// Close stops listening and closes every connection.
func (p *Proxy) Close() error {
	err := p.l.Close()
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns[c] = struct{}{}
	p.mu.Unlock()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.l.Accept()
		if err != nil {
			return
		}
		out, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			_ = in.Close()
			continue
		}
		p.track(in)
		p.track(out)
		p.mu.Lock()
		p.n++
		n, f := p.n, p.tap
		p.mu.Unlock()
		var tap func([]byte)
		if f != nil {
			tap = func(b []byte) { f(n, b) }
		}
		p.wg.Add(2)
		go p.pipe(in, out, tap, nil)
		go p.pipe(out, newDelayed(in, p), nil, &framer{p: p, conn: n})
	}
}

// pipe copies from → to. From the client, tap sees each chunk first; from
// the broker, the framer decides what of each chunk goes on.
func (p *Proxy) pipe(from, to net.Conn, tap func([]byte), fr *framer) {
	defer p.wg.Done()
	defer func() {
		_ = from.Close()
		_ = to.Close()
		p.mu.Lock()
		delete(p.conns, from)
		delete(p.conns, to)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32*1024)
	for {
		p.waitThawed(from)
		chunk := buf
		if r := p.rate.Load(); r > 0 && fr == nil {
			// A twentieth of a second's worth per read, then the wait
			// that keeps the pace.
			chunk = buf[:max(min(int(r/20), len(buf)), 1)]
		}
		n, err := from.Read(chunk)
		if r := p.rate.Load(); r > 0 && fr == nil && n > 0 {
			time.Sleep(time.Duration(int64(n) * int64(time.Second) / r))
		}
		if n > 0 {
			out := buf[:n]
			switch {
			case fr != nil:
				out = fr.next(out, p.blackhole.Load())
			case p.blackhole.Load():
				out = nil
			}
			if len(out) > 0 {
				if tap != nil {
					tap(out)
				}
				if _, werr := to.Write(out); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// waitThawed returns once the proxy is not frozen (or c is closed).
func (p *Proxy) waitThawed(c net.Conn) {
	for p.frozen.Load() {
		time.Sleep(5 * time.Millisecond)
		p.mu.Lock()
		_, open := p.conns[c]
		p.mu.Unlock()
		if !open {
			return
		}
	}
}

// delayed writes to the client what the broker sent, each chunk after the
// proxy's delay from when it was read.
type delayed struct {
	net.Conn
	p     *Proxy
	queue chan timedChunk
	done  chan struct{}
	once  sync.Once
	err   atomic.Pointer[error]
	// held counts chunks queued and not yet written: while any is, a new
	// chunk queues behind it even with no delay, so the order holds.
	held atomic.Int64
}

type timedChunk struct {
	at time.Time
	b  []byte
}

func newDelayed(c net.Conn, p *Proxy) *delayed {
	d := &delayed{Conn: c, p: p, queue: make(chan timedChunk, 1024), done: make(chan struct{})}
	go d.run()
	return d
}

func (d *delayed) Write(b []byte) (int, error) {
	if e := d.err.Load(); e != nil {
		return 0, *e
	}
	lag := time.Duration(d.p.delay.Load())
	if lag <= 0 && d.held.Load() == 0 {
		return d.Conn.Write(b)
	}
	d.held.Add(1)
	select {
	case d.queue <- timedChunk{at: time.Now().Add(lag), b: bytes.Clone(b)}:
		return len(b), nil
	case <-d.done:
		return 0, net.ErrClosed
	}
}

func (d *delayed) run() {
	for {
		select {
		case c := <-d.queue:
			// The wait ends with the connection: a closed proxy leaves no
			// goroutine behind.
			t := time.NewTimer(time.Until(c.at))
			select {
			case <-t.C:
			case <-d.done:
				t.Stop()
				return
			}
			_, err := d.Conn.Write(c.b)
			d.held.Add(-1)
			if err != nil {
				d.err.Store(&err)
				return
			}
		case <-d.done:
			return
		}
	}
}

func (d *delayed) Close() error {
	d.once.Do(func() { close(d.done) })
	return d.Conn.Close()
}

// A packet from the broker is, from its first byte to its last, one of:
const (
	streamed  = iota // forwarded as its bytes come (no filter was set when it began)
	held             // kept until complete, then forwarded or dropped whole
	swallowed        // it began in a blackholed chunk
)

// framer follows the packets of one broker → client stream. Every byte of
// the stream goes through its parser, blackholed ones too, so that the
// packet boundaries stay known whatever was forwarded.
type framer struct {
	p    *Proxy
	conn int
	ps   wire.Parser
	mode int    // of the packet in progress
	hold []byte // its bytes so far, when held
	out  []byte
	raw  bool // the stream stopped looking like MQTT: bytes go on as they come
	done func(wire.Header)
}

// next takes a chunk read from the broker and returns what to write to the
// client now; the result is valid until the next call.
func (f *framer) next(chunk []byte, blackhole bool) []byte {
	switch {
	case f.raw && blackhole:
		return nil
	case f.raw:
		return chunk
	case blackhole:
		// The chunk goes nowhere, and a packet held so far with it. The
		// rest of a packet it cut is forwarded once the blackhole is off,
		// as the proxy always did.
		f.mode, f.hold = swallowed, f.hold[:0]
		f.feedAll(chunk, swallowed)
		return nil
	case f.p.hold.Load() == nil && f.mode != held:
		// Nothing to drop: the chunk goes on as it is.
		f.feedAll(chunk, streamed)
		return chunk
	}
	if f.done == nil {
		f.done = f.complete
	}
	f.out = f.out[:0]
	for i := range chunk {
		if f.ps.AtBoundary() {
			f.mode = streamed
			if f.p.hold.Load() != nil {
				f.mode = held
			}
		}
		b := chunk[i : i+1]
		if f.mode == held {
			f.hold = append(f.hold, b...)
		} else {
			f.out = append(f.out, b...)
		}
		f.ps.Feed(b, f.done)
		if f.ps.Lost() {
			// Not MQTT any more: hand over what was held, and stop framing.
			f.raw = true
			f.out = append(f.out, f.hold...)
			f.hold = f.hold[:0]
			f.out = append(f.out, chunk[i+1:]...)
			break
		}
	}
	return f.out
}

// feedAll runs a whole chunk through the parser; the packets that begin in
// it get mode. It never completes a held packet: the caller made sure
// none is in progress.
func (f *framer) feedAll(chunk []byte, mode int) {
	if f.ps.AtBoundary() {
		f.mode = mode
	}
	f.ps.Feed(chunk, func(h wire.Header) {
		f.complete(h)
		f.mode = mode
	})
	if f.ps.Lost() {
		f.raw = true
	}
}

// complete settles the packet in progress, now whole.
func (f *framer) complete(h wire.Header) {
	t := h.Type & 0x0f
	switch f.mode {
	case streamed:
		f.p.forwarded[t].Add(1)
		f.report(h, false)
	case held:
		out := f.hold
		if hf := f.p.hold.Load(); hf != nil {
			out = (*hf)(h, f.hold)
		}
		switch {
		case len(out) == 0:
			f.p.dropped[t].Add(1)
			f.report(h, true)
		case bytes.Equal(out, f.hold):
			f.p.forwarded[t].Add(1) // counted before the write to the client
			f.report(h, false)
		default:
			f.p.dropped[t].Add(1)
			f.p.forwarded[out[0]>>4].Add(1)
			f.report(h, true)
		}
		f.out = append(f.out, out...)
		f.hold = f.hold[:0]
	}
}

func (f *framer) report(h wire.Header, dropped bool) {
	if o := f.p.observe.Load(); o != nil {
		(*o)(f.conn, h, dropped)
	}
}
