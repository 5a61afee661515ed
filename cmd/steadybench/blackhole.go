package main

import (
	"net"
	"sync"
	"sync/atomic"
)

// blackhole is a loopback TCP relay whose cut makes a half-open link: from
// then on nothing is forwarded either way, and the client's socket stays
// open even when the broker, hearing nothing, closes its side (as a broker
// does after 1.5 × keepalive: over a dead radio link its FIN would never
// arrive either).
type blackhole struct {
	l      net.Listener
	target string
	cut    atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func startBlackhole(target string) (*blackhole, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &blackhole{l: l, target: target}
	go b.accept()
	return b, nil
}

func (b *blackhole) URL() string { return "tcp://" + b.l.Addr().String() }

// Cut stops all forwarding, for good.
func (b *blackhole) Cut() { b.cut.Store(true) }

func (b *blackhole) Close() {
	_ = b.l.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		_ = c.Close()
	}
}

func (b *blackhole) accept() {
	for {
		in, err := b.l.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", b.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		b.mu.Lock()
		b.conns = append(b.conns, in, out)
		b.mu.Unlock()
		go b.pipe(in, out)
		go b.pipe(out, in)
	}
}

func (b *blackhole) pipe(from, to net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if b.cut.Load() {
			if err != nil {
				return // the socket on the other side stays open
			}
			continue
		}
		if n > 0 {
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			_ = to.Close()
			return
		}
	}
}
