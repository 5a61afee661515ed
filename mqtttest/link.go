package mqtttest

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// link is the TCP proxy between the clients and the broker: URL points at
// it. It exists so that Freeze can stop every connection without closing
// any. While frozen it forwards nothing in either direction, and closes
// nothing either: a connection the broker ended meanwhile stays open on the
// client's side until Thaw, as on a link that lost its packets.
//
// It also keeps the broker's stop clean: while the broker is down (between
// down and up) it closes new connections itself instead of passing them
// on, so that none reaches a broker that is shutting down (mochi closes its
// clients before its listener, and would keep one that came in between).
type link struct {
	l      net.Listener
	target string
	closed chan struct{} // closed by close

	// dialing is held for reading while a connection is set up, and for
	// writing by down and up.
	dialing sync.RWMutex
	serving bool

	// conns holds every open connection: for the broker's side, with a
	// channel closed once the broker's stream was read to its end.
	mu     sync.Mutex
	conns  map[net.Conn]chan struct{}
	thawed chan struct{} // closed while bytes flow
	wg     sync.WaitGroup
}

// listenLink listens on a free loopback port and forwards to target.
func listenLink(target string) (*link, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	k := &link{l: l, target: target, closed: make(chan struct{}), serving: true,
		thawed: make(chan struct{}), conns: make(map[net.Conn]chan struct{})}
	close(k.thawed)
	k.wg.Add(1)
	go k.accept()
	return k, nil
}

func (k *link) addr() string { return k.l.Addr().String() }

func (k *link) freeze() {
	k.mu.Lock()
	defer k.mu.Unlock()
	select {
	case <-k.thawed:
		k.thawed = make(chan struct{})
	default: // frozen already
	}
}

func (k *link) thaw() {
	k.mu.Lock()
	defer k.mu.Unlock()
	select {
	case <-k.thawed:
	default:
		close(k.thawed)
	}
}

// flowing waits while the link is frozen; it reports false once the link
// is closed.
func (k *link) flowing() bool {
	k.mu.Lock()
	thawed := k.thawed
	k.mu.Unlock()
	select {
	case <-k.closed:
		return false
	case <-thawed:
		select {
		case <-k.closed:
			return false
		default:
			return true
		}
	}
}

// close stops listening and ends every connection, frozen or not.
func (k *link) close() error {
	close(k.closed)
	err := k.l.Close()
	k.mu.Lock()
	for c := range k.conns {
		_ = c.Close()
	}
	k.mu.Unlock()
	k.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (k *link) accept() {
	defer k.wg.Done()
	for {
		in, err := k.l.Accept()
		if err != nil {
			return
		}
		k.wg.Add(1)
		go k.serve(in)
	}
}

// down stops passing new connections on to the broker, once those being
// set up are.
func (k *link) down() {
	k.dialing.Lock()
	defer k.dialing.Unlock()
	k.serving = false
}

// hangUpBroker closes the broker's side of the connections the broker
// left open when it stopped: mochi closes its clients before its
// listener, and keeps one that came in between. It gives the others, which
// the broker did close, a moment to be read to their end (one the link
// holds frozen, say), so that their clients see the close as the broker
// made it.
func (k *link) hangUpBroker() {
	type brokerSide struct {
		c       net.Conn
		drained chan struct{}
	}
	var open []brokerSide
	k.mu.Lock()
	for c, drained := range k.conns {
		if drained != nil {
			open = append(open, brokerSide{c, drained})
		}
	}
	k.mu.Unlock()
	grace := time.NewTimer(100 * time.Millisecond)
	defer grace.Stop()
	expired := false
	for _, o := range open {
		if !expired {
			select {
			case <-o.drained:
				continue
			case <-grace.C:
				expired = true
			}
		}
		select {
		case <-o.drained:
		default:
			_ = o.c.Close()
		}
	}
}

// up passes new connections on to the broker again.
func (k *link) up() {
	k.dialing.Lock()
	defer k.dialing.Unlock()
	k.serving = true
}

// serve connects a client to the broker. With the broker down, the
// client's connection is closed, once the link flows.
func (k *link) serve(in net.Conn) {
	defer k.wg.Done()
	if !k.track(in, nil) {
		return
	}
	out, drained, ok := k.dial()
	if !ok {
		k.flowing()
		k.hangUp(in, nil)
		return
	}
	ended := new(atomic.Int32)
	k.wg.Add(2)
	go k.pipe(in, out, ended, nil)
	go k.pipe(out, in, ended, drained)
}

// dial connects to the broker, unless it is down.
func (k *link) dial() (out net.Conn, drained chan struct{}, ok bool) {
	k.dialing.RLock()
	defer k.dialing.RUnlock()
	if !k.serving {
		return nil, nil, false
	}
	out, err := net.DialTimeout("tcp", k.target, 2*time.Second)
	if err != nil {
		return nil, nil, false
	}
	drained = make(chan struct{})
	return out, drained, k.track(out, drained)
}

// track records c (with drained for the broker's side, nil for a
// client's) so that close and hangUpBroker can end it; it closes c and
// reports false if the link is closed already.
func (k *link) track(c net.Conn, drained chan struct{}) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	select {
	case <-k.closed:
		_ = c.Close()
		return false
	default:
		k.conns[c] = drained
		return true
	}
}

func (k *link) hangUp(a, b net.Conn) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, c := range []net.Conn{a, b} {
		if c != nil {
			_ = c.Close()
			delete(k.conns, c)
		}
	}
}

// pipe copies from → to. What it read, and the end of the stream, wait
// while the link is frozen. A stream that ended cleanly (EOF) ends to's
// stream the same way, so each side sees the other close as it would
// without the link; both are closed once both directions ended. Any other
// end closes both at once. drained, if not nil, is closed once from was
// read to its end.
func (k *link) pipe(from, to net.Conn, ended *atomic.Int32, drained chan struct{}) {
	defer k.wg.Done()
	buf := make([]byte, 32*1024)
	for {
		n, err := from.Read(buf)
		if err != nil && drained != nil {
			close(drained)
		}
		if !k.flowing() {
			k.hangUp(from, to)
			return
		}
		if n > 0 {
			if _, werr := to.Write(buf[:n]); werr != nil {
				k.hangUp(from, to)
				return
			}
		}
		if err == nil {
			continue
		}
		tcp, ok := to.(*net.TCPConn)
		if !errors.Is(err, io.EOF) || !ok || tcp.CloseWrite() != nil || ended.Add(1) == 2 {
			k.hangUp(from, to)
		}
		return
	}
}
