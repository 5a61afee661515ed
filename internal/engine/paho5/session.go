package paho5

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// Session is one MQTT 5 connection, from CONNACK to its loss. Beside
// engine.Session it tells what the CONNACK said.
type Session interface {
	engine.Session
	// KeepAlive is the keepalive period in force: the Server Keep Alive of
	// the CONNACK when the broker sent one (it then replaces the one
	// asked for; 0 means none), else the one asked for. The keepalive
	// monitor must use it.
	KeepAlive() time.Duration
	// SessionExpiry is the Session Expiry Interval in force: the CONNACK's
	// when the broker sent one, else the one asked for.
	SessionExpiry() time.Duration
}

var _ Session = (*session)(nil)

type session struct {
	e    *Engine
	conn *wire.Conn
	pc   *packetConn
	c    *paho.Client
	o    engine.Options

	// ctx ends when the loss of the connection has been processed by
	// paho.golang.
	ctx    context.Context
	cancel context.CancelFunc

	// What the CONNACK said; set before the session is handed out.
	present   bool
	clientID  string
	recvMax   int
	keepAlive time.Duration
	expiry    time.Duration
	maxQoS    byte
	retainOK  bool
	maxPacket uint32

	acks  atomic.Uint64
	open  atomic.Int64 // messages handed over and not settled
	q     queue
	wrote chan struct{} // closed when the hand-off goroutine ended

	mu         sync.Mutex
	acked      bool // a CONNACK was taken into the session state
	server     *errs.ReasonCodeError
	serverRef  string
	clientErr  error
	clientErrC chan struct{}

	down chan struct{} // closed when the loss has been processed
	lost chan error
}

func newSession(e *Engine, conn *wire.Conn, o engine.Options) *session {
	s := &session{
		e: e, conn: conn, pc: newPacketConn(conn), o: o, clientID: o.ClientID,
		wrote: make(chan struct{}), clientErrC: make(chan struct{}),
		down: make(chan struct{}), lost: make(chan error, 1),
	}
	s.q.wake = make(chan struct{}, 1)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// up takes in the successful CONNACK.
func (s *session) up(ca *paho.Connack) {
	s.present = ca.SessionPresent
	s.clientID = s.c.ClientID() // the assigned one, if the broker assigned one
	s.keepAlive = time.Duration(keepAliveSeconds(s.o.KeepAlive)) * time.Second
	s.expiry = time.Duration(sessionExpiry(s.o)) * time.Second
	s.maxQoS, s.retainOK = 2, true
	if p := ca.Properties; p != nil {
		if p.ReceiveMaximum != nil {
			s.recvMax = int(*p.ReceiveMaximum)
		}
		if p.ServerKeepAlive != nil {
			s.keepAlive = time.Duration(*p.ServerKeepAlive) * time.Second
		}
		if p.SessionExpiryInterval != nil {
			s.expiry = time.Duration(*p.SessionExpiryInterval) * time.Second
		}
		if p.MaximumQoS != nil {
			s.maxQoS = *p.MaximumQoS
		}
		if p.MaximumPacketSize != nil {
			s.maxPacket = *p.MaximumPacketSize
		}
		s.retainOK = p.RetainAvailable
	}
}

func (s *session) SessionPresent() bool         { return s.present }
func (s *session) Lost() <-chan error           { return s.lost }
func (s *session) Acks() uint64                 { return s.acks.Load() }
func (s *session) Version() byte                { return 5 }
func (s *session) ClientID() string             { return s.clientID }
func (s *session) KeepAlive() time.Duration     { return s.keepAlive }
func (s *session) SessionExpiry() time.Duration { return s.expiry }

// ReceiveMaximum is the CONNACK's Receive Maximum, 0 when it had none (the
// protocol's default is then 65535, which the engine applies).
func (s *session) ReceiveMaximum() int { return s.recvMax }

// watch processes the end of the connection, once paho.golang is done
// with it, and reports it.
func (s *session) watch() {
	<-s.c.Done()
	s.cancel()
	<-s.wrote
	why := s.reason()
	for _, p := range s.q.close(why) {
		p.settle(phaseQueued, false, lostBefore(why))
	}
	s.e.lost(why)
	s.e.mu.Lock()
	if s.e.cur == s {
		s.e.cur = nil
	}
	s.e.mu.Unlock()
	close(s.down)
	s.mu.Lock()
	server, ref := s.server, s.serverRef
	s.mu.Unlock()
	if server != nil && s.o.OnDisconnect != nil {
		s.o.OnDisconnect(server, ref)
	}
	s.lost <- why
}

// reason is why the connection ended.
func (s *session) reason() error {
	s.mu.Lock()
	server, clientErr := s.server, s.clientErr
	s.mu.Unlock()
	switch {
	case server != nil:
		return server
	case s.conn.Cause() != nil:
		return s.conn.Cause()
	case clientErr != nil:
		return clientErr
	case s.conn.IOErr() != nil:
		return s.conn.IOErr()
	}
	// paho.golang reports its error on a goroutine of its own.
	select {
	case <-s.clientErrC:
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.clientErr
	case <-time.After(100 * time.Millisecond):
	}
	return net.ErrClosed
}

func (s *session) received(pr paho.PublishReceived) (bool, error) {
	if s.o.OnMessage != nil {
		s.o.OnMessage(incoming(pr.Packet))
	}
	return true, nil
}

func (s *session) serverDisconnect(d *paho.Disconnect) {
	// Normally seen before, in the session state's ConnectionLost.
	var props *packets.Properties
	if d.Properties != nil {
		props = &packets.Properties{ReasonString: d.Properties.ReasonString, ServerReference: d.Properties.ServerReference}
	}
	s.disconnected(d.ReasonCode, props)
}

func (s *session) disconnected(code byte, props *packets.Properties) {
	rc := &errs.ReasonCodeError{Packet: "DISCONNECT", Code: code}
	var ref string
	if props != nil {
		rc.Reason, ref = props.ReasonString, props.ServerReference
	}
	s.mu.Lock()
	if s.server == nil {
		s.server, s.serverRef = rc, ref
	}
	s.mu.Unlock()
}

func (s *session) clientError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clientErr == nil && err != nil {
		s.clientErr = err
		close(s.clientErrC)
	}
}

// opContext is ctx, ended as well when the connection is over.
func (s *session) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// opError is the error of a request that ended without its answer.
func (s *session) opError(ctx context.Context, ack string, err error) error {
	if ctx.Err() == nil && s.ctx.Err() != nil {
		return fmt.Errorf("%w: the connection ended before the %s", errs.NotConnected, ack)
	}
	return err
}

func (s *session) Subscribe(ctx context.Context, filter string, qos byte) (byte, error) {
	octx, cancel := s.opContext(ctx)
	defer cancel()
	sa, err := s.c.Subscribe(octx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if sa != nil && len(sa.Reasons) == 1 {
		code := sa.Reasons[0]
		if code >= 0x80 {
			rc := &errs.ReasonCodeError{Packet: "SUBACK", Code: code}
			if sa.Properties != nil {
				rc.Reason = sa.Properties.ReasonString
			}
			return code, rc
		}
		if err == nil {
			return code, nil
		}
	}
	if errors.Is(err, paho.ErrInvalidArguments) {
		// Refused before sending: the CONNACK excludes wildcards or
		// shared subscriptions.
		return 0x80, fmt.Errorf("%w: %w", errs.SubscriptionRefused, err)
	}
	if err == nil {
		err = fmt.Errorf("steadymqtt: SUBACK without a reason code for %q", filter)
	}
	return 0x80, s.opError(ctx, "SUBACK", err)
}

func (s *session) Unsubscribe(ctx context.Context, filters ...string) error {
	octx, cancel := s.opContext(ctx)
	defer cancel()
	ua, err := s.c.Unsubscribe(octx, &paho.Unsubscribe{Topics: filters})
	if ua != nil {
		for _, code := range ua.Reasons {
			if code >= 0x80 {
				rc := &errs.ReasonCodeError{Packet: "UNSUBACK", Code: code}
				if ua.Properties != nil {
					rc.Reason = ua.Properties.ReasonString
				}
				return rc
			}
		}
	}
	if err != nil {
		return s.opError(ctx, "UNSUBACK", err)
	}
	return nil
}

// Disconnect waits at most quiesce for the messages handed over to get
// their outcomes, sends DISCONNECT (reason 0x00, normal disconnection)
// and closes the connection.
func (s *session) Disconnect(quiesce time.Duration) {
	deadline := time.Now().Add(quiesce)
	for s.open.Load() > 0 && time.Now().Before(deadline) {
		select {
		case <-s.down:
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
	_ = s.c.Disconnect(&paho.Disconnect{ReasonCode: 0})
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-s.down:
	case <-t.C:
		_ = s.conn.Close()
	}
}

// Publish hands m to the connection's hand-off queue and returns at once.
func (s *session) Publish(m engine.Message) engine.Pending {
	p := &pending{e: s.e, s: s, qos: m.QoS, pkt: outgoing(m), done: make(chan struct{})}
	if m.QoS > 0 {
		p.ret = make(chan packets.ControlPacket, 1)
	}
	s.open.Add(1)
	if why := s.q.push(p); why != nil {
		p.settle(phaseQueued, false, lostBefore(why))
	}
	return p
}

// handoffLoop writes the queued messages in order while the connection
// lasts. What is queued when it looks is written together, up to about
// coalesceLimit bytes, in one write: a burst costs one system call, not
// one per message.
func (s *session) handoffLoop() {
	defer close(s.wrote)
	var batch []*pending
	for {
		p := s.q.head(s.ctx)
		if p == nil {
			return // what is left is settled once the loss is processed
		}
		batch = batch[:0]
		size, ended := 0, false
		for p != nil {
			r := s.take(p, len(batch) == 0)
			if r == takeFull || r == takeOver {
				// p stays queued: the messages taken so far go first
				// (their acknowledgements free the window).
				ended = r == takeOver
				break
			}
			s.q.pop()
			if r == taken {
				batch = append(batch, p)
				size += len(p.pkt.Topic) + len(p.pkt.Payload) + 16
			}
			if size >= coalesceLimit || len(batch) >= maxBatch {
				break
			}
			p = s.q.peek()
		}
		if len(batch) > 0 {
			s.write(batch)
			clear(batch)
		}
		if ended {
			return
		}
	}
}

// maxBatch bounds how many messages one write carries.
const maxBatch = 256

// What take did with a message.
const (
	settled  = iota // refused or withdrawn: nothing to write
	taken           // to be written (QoS 1 and 2: in the session state)
	takeFull        // no in-flight slot free now; still queued
	takeOver        // the connection ended; still queued
)

// take readies p for writing. A QoS 1 or 2 message takes an in-flight
// slot, waiting for one only when wait is set, and its place in the
// session state. The writer lock is not held: paho.golang's session state
// writes acknowledgements while it holds its own lock.
func (s *session) take(p *pending, wait bool) int {
	if err := s.refuse(p); err != nil {
		p.settle(phaseQueued, false, err)
		return settled
	}
	if p.qos == 0 {
		if !p.move(phaseQueued, phaseWriting) {
			return settled // withdrawn
		}
		return taken
	}
	if wait {
		if s.e.acquire(s.ctx) != nil {
			return takeOver
		}
	} else if !s.e.tryAcquire() {
		return takeFull
	}
	p.mu.Lock()
	if p.phase != phaseQueued { // withdrawn
		p.mu.Unlock()
		s.e.unreserve()
		return settled
	}
	err := s.e.state.AddToSession(s.ctx, p.pkt, p.ret)
	if err != nil {
		p.mu.Unlock()
		s.e.unreserve()
		if s.ctx.Err() != nil || errors.Is(err, errNoConnection) {
			return takeOver
		}
		p.settle(phaseQueued, false, fmt.Errorf("steadymqtt: the session state refused the message: %w", err))
		return settled
	}
	p.phase = phaseKept
	s.e.keep(p)
	p.mu.Unlock()
	go p.wait()
	return taken
}

// write writes the messages taken, in order. A QoS 0 message is settled by
// the write; a QoS 1 or 2 message whose write failed stays in the session
// state, to be sent again on the next connection (the write error closed
// this one).
func (s *session) write(batch []*pending) {
	err := s.pc.writePackets(batch)
	for _, p := range batch {
		if p.qos != 0 {
			continue
		}
		if err != nil {
			p.settle(phaseWriting, false, lostBefore(err))
		} else {
			p.settle(phaseWriting, true, nil)
		}
	}
}

// refuse is the error of a message the CONNACK excludes, nil for others.
func (s *session) refuse(p *pending) error {
	switch {
	case p.qos > 2:
		return fmt.Errorf("%w: QoS %d", errs.InvalidOption, p.qos)
	case p.qos > s.maxQoS:
		return &errs.ReasonCodeError{Packet: "PUBLISH", Code: 0x9B, Reason: fmt.Sprintf("not sent: the broker's CONNACK allows QoS %d at most", s.maxQoS)}
	case p.pkt.Retain && !s.retainOK:
		return &errs.ReasonCodeError{Packet: "PUBLISH", Code: 0x9A, Reason: "not sent: the broker's CONNACK says retained messages are not available"}
	case s.maxPacket > 0:
		if n := packetSize(p.pkt); n > int(s.maxPacket) {
			return &errs.ReasonCodeError{Packet: "PUBLISH", Code: 0x95, Reason: fmt.Sprintf("not sent: %d bytes, the broker's CONNACK allows %d", n, s.maxPacket)}
		}
	}
	return nil
}

// queue is the hand-off queue of one connection.
type queue struct {
	mu     sync.Mutex
	items  []*pending
	closed error // why the connection ended, once it has
	wake   chan struct{}
}

// push appends p, or returns why the connection ended.
func (q *queue) push(p *pending) error {
	q.mu.Lock()
	if q.closed != nil {
		q.mu.Unlock()
		return q.closed
	}
	q.items = append(q.items, p)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return nil
}

// head waits for the first message, nil when ctx ends.
func (q *queue) head(ctx context.Context) *pending {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			p := q.items[0]
			q.mu.Unlock()
			return p
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-ctx.Done():
			return nil
		}
	}
}

// peek returns the first message, nil when none is queued.
func (q *queue) peek() *pending {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return nil
	}
	return q.items[0]
}

func (q *queue) pop() {
	q.mu.Lock()
	q.items[0] = nil
	q.items = q.items[1:]
	if len(q.items) == 0 {
		q.items = nil
	}
	q.mu.Unlock()
}

// close refuses every later push with why and returns what is queued.
func (q *queue) close(why error) []*pending {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = why
	out := q.items
	q.items = nil
	return out
}
