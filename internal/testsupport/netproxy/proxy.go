// Package netproxy is a loopback TCP proxy that can stop forwarding while
// keeping every socket open: the half-open link of a dead cellular path,
// made on demand for tests.
package netproxy

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
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
		go p.pipe(in, out, tap)
		go p.pipe(out, in, nil)
	}
}

func (p *Proxy) pipe(from, to net.Conn, tap func([]byte)) {
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
		n, err := from.Read(buf)
		if n > 0 && !p.blackhole.Load() {
			if tap != nil {
				tap(buf[:n])
			}
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
