// Package paho5 is the MQTT 5 engine, on paho.golang's paho package (not
// autopaho, whose reconnect loop would be a second one).
//
// paho.golang gets the connection the dial stage opened (ClientConfig.Conn,
// wrapped so that the pieces of one packet stay together and cross
// wire.Conn in one write), a Pinger that never pings (the keepalive
// monitor writes PINGREQ between packets with wire.Conn.SendPing; the
// PINGRESP passes through paho.golang, which ignores it), and a session
// state that belongs to the Engine and outlives each connection: one
// Engine per client, whose Connect is called once per connection, one
// connection at a time.
//
// # CONNECT
//
// Clean Start is Options.CleanSession; the keepalive is Options.KeepAlive
// in seconds; user name and password are sent when not empty. The Session
// Expiry Interval is Options.SessionExpiry in seconds, rounded up; when it
// is 0 and CleanSession is false, the engine asks for 0xFFFFFFFF (the
// session never expires), which is what a persistent session of MQTT 3.1.1
// is: with 0 the broker would end the session with each connection, and a
// client that asked for a persistent session would silently get none. The
// broker may answer with a shorter interval in CONNACK (Mosquitto's
// persistent_client_expiration, mochi's maximum session expiry); that one
// is in force. Request Problem Information is on, so that refusals carry
// reason strings. The engine's own Receive Maximum is InboundReceiveMaximum.
// The will goes with its properties (paho.golang v0.23.0 would drop all
// but its user properties and delay: see connectBytes).
//
// A CONNACK with a reason code of 0x80 or more is an *errs.ReasonCodeError
// (Packet "CONNACK"); 0x84 matches errs.BadProtocolVersion, 0x86 and 0x87
// errs.NotAuthorized. A broker that speaks only MQTT 3.1.1 (nats-server,
// RabbitMQ before 3.13) answers a v5 CONNECT with a 3.1.1 CONNACK, four
// bytes (0x20 0x02 flags code), which paho.golang cannot parse and reports
// as a bare read error: the engine keeps a copy of the first bytes the
// broker sent and, when they are a 3.1.1 CONNACK, whatever its code,
// returns *errs.ConnectRefusedError{Code: 1}, which matches
// errs.BadProtocolVersion, so that the caller can fall back to 3.1.1. A
// broker that closes the connection without a word stays a read error
// (io.EOF): whether that means "not v5" is the caller's call.
//
// # Publishing and the session state
//
// Session.Publish returns at once. One hand-off goroutine per connection
// writes the messages in the order they were handed over, what is queued
// at once in one write. A QoS 1 or 2 message first takes a slot of the
// broker's Receive Maximum (the engine bounds it itself: paho.golang's own
// quota can wrap after a reconnect that resends more than the new
// maximum; the messages kept from an earlier connection count) and its
// place in the session state, and waits while the window is full: more
// messages than the Receive Maximum queue, they do not fail. Acks counts
// the PUBACK and PUBCOMP packets received on the connection (and a PUBREC
// of 0x80 or more, which ends a QoS 2 flow), as the 3.1.1 engine does.
//
// A Pending is Acked only with a success response: PUBACK below 0x80
// (0x10, no matching subscribers, is a success), PUBCOMP below 0x80, or
// PUBCOMP 0x92 (packet identifier not found) to a PUBREL sent again after a
// reconnect, which means the broker had completed the message already: it
// took the message with a success PUBREC, or no PUBREL would have been
// sent. A response of 0x80 or more is a definite refusal, Err an
// *errs.ReasonCodeError with Packet "PUBACK", "PUBREC" or "PUBCOMP". A
// message the engine does not send because the broker's CONNACK excludes
// it (QoS above its Maximum QoS, retain not available, larger than its
// Maximum Packet Size) is refused the same way, with Packet "PUBLISH" and
// the code the broker would have used (0x9B, 0x9A, 0x95).
//
// What a lost connection does to a Pending depends on where the message
// was:
//
//   - Still waiting for its hand-off (not written): Done is closed with a
//     connection error, Acked false. It was never written and never will
//     be.
//   - QoS 0, written: Acked (the write was its outcome).
//   - QoS 1 or 2 in the session state (written, or about to be) while the
//     session outlives the connection (the Session Expiry Interval in force
//     is above 0): Done stays open. The session state keeps the message;
//     the next Connect of the same Engine whose CONNACK says session
//     present sends it again from there, with its packet identifier: the
//     PUBLISH (DUP set) when no PUBREC was seen, the PUBREL when one was,
//     never a second PUBLISH after a PUBREC. Done then closes with the
//     response of that connection (PUBACK, PUBCOMP, or a refusal), or of
//     a later one if that one is lost too. When a CONNACK says session not
//     present (the broker lost the session, it expired, or the connection
//     used Clean Start), paho.golang drops what it kept: Done is closed,
//     before Connect returns, with an error matching errs.NotDelivered
//     (outcome unknown: the broker may or may not have the message).
//     Engine.Close closes Done with an error matching errs.Closed.
//   - QoS 1 or 2 in the session state with no session after the connection
//     (Session Expiry Interval 0): Done is closed with a connection error
//     when the loss is processed, Acked false, as on MQTT 3.1.1.
//
// A Pending also has Survives() bool, which a sender calls after the
// connection ended, instead of putting the message back in its outbox at
// once. True: Done carries the message's outcome, now (acknowledged, or
// refused with an *errs.ReasonCodeError) or after a later connection (kept
// in a session state that outlives the connection). The message must then
// stay in flight and be settled by that outcome: Acked, delivered; Err an
// *errs.ReasonCodeError, refused; any other Err (session not present,
// Engine closed), not delivered, to be sent again. False: the message was
// not delivered and this engine will not send it again, so it must be sent
// again. A message still waiting for its hand-off when Survives is called
// is withdrawn: it will never be written, even by a connection that is
// still open (as while the client stops).
//
// # Receiving
//
// Every PUBLISH goes to Options.OnMessage in order on paho.golang's
// routing goroutine, with its properties in Message.Props (nil when it has
// none of them); paho.golang acknowledges it when OnMessage returns, in
// order.
//
// # Losses
//
// Lost delivers once, after the loss was processed (every Pending of the
// connection settled as above): a server's DISCONNECT as an
// *errs.ReasonCodeError with Packet "DISCONNECT" (reported first to
// Options.OnDisconnect with its server reference; its code may be below
// 0x80, such as 0x00 or 0x04), the cause given to wire.Conn.CloseWithError,
// or the read or write error.
package paho5

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/log"
	"github.com/eclipse/paho.golang/paho/session/state"

	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// NeverExpires is the Session Expiry Interval asked for when the options
// want a persistent session and name no interval.
const NeverExpires = math.MaxUint32

// InboundReceiveMaximum is the Receive Maximum the engine announces: how
// many QoS 1 and 2 messages the broker may have unacknowledged towards the
// client. paho.golang queues that many received messages; OnMessage does
// not block, so the acknowledgements follow at once.
const InboundReceiveMaximum = 1024

// packetTimeout is paho.golang's own limit on waiting for a response; the
// engine's contexts bound every wait instead.
const packetTimeout = 100 * 365 * 24 * time.Hour

// Engine is the MQTT 5 engine of one client. Its session state (what a
// QoS 1 or 2 message needs to be completed on the next connection) lives
// as long as the Engine; use one per client, and call Close when the
// client stops for good.
type Engine struct {
	state *state.State

	mu      sync.Mutex
	closed  bool
	cur     *session              // the session of the last Connect until its loss is processed
	kept    map[*pending]struct{} // QoS 1 and 2 messages in the session state without an outcome
	held    int                   // slots taken by messages on their way into the session state
	limit   int                   // the Receive Maximum of the current connection
	expiry  uint32                // the Session Expiry Interval in force
	waiting int                   // acquire calls waiting for changed
	changed chan struct{}         // closed and replaced when kept shrinks or limit changes
}

var _ engine.Engine = (*Engine)(nil)

// New returns an engine with an empty session state in memory.
func New() *Engine {
	return &Engine{state: state.NewInMemory(), kept: make(map[*pending]struct{}), changed: make(chan struct{})}
}

var (
	// errSessionGone closes the Done of a message the broker's session no
	// longer has.
	errSessionGone = fmt.Errorf("%w: the broker kept no session (CONNACK session present 0); the message's outcome is unknown", errs.NotDelivered)
	// errEngineClosed closes the Done of a message kept for a next
	// connection that will not come.
	errEngineClosed = fmt.Errorf("%w: the MQTT 5 session state was discarded before the message was acknowledged", errs.Closed)
	// errWithdrawn closes the Done of a message withdrawn before its
	// hand-off.
	errWithdrawn = fmt.Errorf("%w: the connection ended before the message was written", errs.NotConnected)
)

// Connect sends CONNECT over conn and waits for CONNACK, or until ctx
// ends. If the session of an earlier Connect is still up, its connection
// is closed first. On error, conn is closed.
func (e *Engine) Connect(ctx context.Context, conn *wire.Conn, o engine.Options) (engine.Session, error) {
	s := newSession(e, conn, o)
	if err := e.begin(ctx, s); err != nil {
		_ = conn.Close()
		return nil, err
	}
	c := paho.NewClient(paho.ClientConfig{
		ClientID:           o.ClientID,
		Conn:               s.pc,
		Session:            &connState{State: e.state, s: s},
		PingHandler:        noPings{},
		OnPublishReceived:  []func(paho.PublishReceived) (bool, error){s.received},
		PacketTimeout:      packetTimeout,
		OnServerDisconnect: s.serverDisconnect,
		OnClientError:      s.clientError,
	})
	s.c = c
	cp := connectPacket(o)
	if willNeedsOwnConnect(cp.WillProperties) {
		s.pc.connect = connectBytes(cp)
	}
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		_ = conn.Close()
		e.failed(s, err)
		return nil, s.connectError(ca, err)
	}
	s.up(ca)
	go s.handoffLoop()
	go s.watch()
	return s, nil
}

// Close discards the session state: every message kept for a next
// connection gets Done with an error matching errs.Closed, and Connect
// fails from now on. A live connection is closed.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	cur := e.cur
	e.mu.Unlock()
	if cur != nil {
		_ = cur.conn.Close()
		<-cur.down
	}
	for _, p := range e.takeKept() {
		p.settle(-1, false, errEngineClosed)
	}
	return e.state.Close()
}

// begin makes s the engine's session, once the one before it is over.
func (e *Engine) begin(ctx context.Context, s *session) error {
	for {
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return errs.Closed
		}
		prev := e.cur
		if prev == nil {
			e.cur = s
			e.mu.Unlock()
			return nil
		}
		e.mu.Unlock()
		_ = prev.conn.Close()
		select {
		case <-prev.down:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// failed ends a session whose Connect failed.
func (e *Engine) failed(s *session, err error) {
	s.mu.Lock()
	acked := s.acked
	s.mu.Unlock()
	if acked {
		// The CONNACK was taken (the resend of the session failed): the
		// session state is connected to a dead connection.
		_ = e.state.ConnectionLost(nil)
		e.lost(fmt.Errorf("steadymqtt: connection lost while the session was resent: %w", err))
	}
	e.mu.Lock()
	if e.cur == s {
		e.cur = nil
	}
	e.mu.Unlock()
	close(s.down)
}

// acked takes in a CONNACK of s: the Session Expiry Interval in force, the
// broker's Receive Maximum, and whether the kept messages are still in the
// broker's session.
func (e *Engine) acked(s *session, cp *packets.Connect, ca *packets.Connack) {
	s.mu.Lock()
	s.acked = true
	s.mu.Unlock()
	var expiry uint32
	switch {
	case ca.Properties != nil && ca.Properties.SessionExpiryInterval != nil:
		expiry = *ca.Properties.SessionExpiryInterval
	case cp.Properties != nil && cp.Properties.SessionExpiryInterval != nil:
		expiry = *cp.Properties.SessionExpiryInterval
	}
	limit := math.MaxUint16
	if ca.Properties != nil && ca.Properties.ReceiveMaximum != nil && *ca.Properties.ReceiveMaximum > 0 {
		limit = int(*ca.Properties.ReceiveMaximum)
	}
	e.mu.Lock()
	e.expiry, e.limit = expiry, limit
	e.signal()
	e.mu.Unlock()
	if !ca.SessionPresent {
		// paho.golang cleaned its state and tells nobody.
		for _, p := range e.takeKept() {
			p.settle(-1, false, errSessionGone)
		}
	}
}

// lost processes the loss of the connection for the kept messages: with no
// session after it, paho.golang dropped them.
func (e *Engine) lost(why error) {
	e.mu.Lock()
	keeps := e.expiry > 0
	e.mu.Unlock()
	if keeps {
		return
	}
	for _, p := range e.takeKept() {
		p.settle(-1, false, lostAfter(why))
	}
}

func (e *Engine) takeKept() []*pending {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*pending, 0, len(e.kept))
	for p := range e.kept {
		out = append(out, p)
	}
	return out
}

// keepsSession reports whether the session outlives the connection.
func (e *Engine) keepsSession() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return !e.closed && e.expiry > 0
}

// acquire takes an in-flight slot, waiting while the broker's Receive
// Maximum is reached (the messages kept from an earlier connection count).
func (e *Engine) acquire(ctx context.Context) error {
	for {
		e.mu.Lock()
		if len(e.kept)+e.held < e.limit {
			e.held++
			e.mu.Unlock()
			return nil
		}
		ch := e.changed
		e.waiting++
		e.mu.Unlock()
		var err error
		select {
		case <-ch:
		case <-ctx.Done():
			err = ctx.Err()
		}
		e.mu.Lock()
		e.waiting--
		e.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// tryAcquire takes an in-flight slot if one is free now.
func (e *Engine) tryAcquire() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.kept)+e.held < e.limit {
		e.held++
		return true
	}
	return false
}

// keep moves p from a reserved slot into the session state.
func (e *Engine) keep(p *pending) {
	e.mu.Lock()
	e.held--
	e.kept[p] = struct{}{}
	e.mu.Unlock()
}

// unreserve gives back a slot that was not used.
func (e *Engine) unreserve() {
	e.mu.Lock()
	e.held--
	e.signal()
	e.mu.Unlock()
}

// forget takes p, settled, out of the session's count.
func (e *Engine) forget(p *pending) {
	e.mu.Lock()
	delete(e.kept, p)
	e.signal()
	e.mu.Unlock()
}

// signal wakes the waiters of acquire; e.mu is held.
func (e *Engine) signal() {
	if e.waiting > 0 {
		close(e.changed)
		e.changed = make(chan struct{})
	}
}

func connectPacket(o engine.Options) *paho.Connect {
	recvMax := uint16(InboundReceiveMaximum)
	cp := &paho.Connect{
		ClientID:   o.ClientID,
		KeepAlive:  keepAliveSeconds(o.KeepAlive),
		CleanStart: o.CleanSession,
		Properties: &paho.ConnectProperties{RequestProblemInfo: true, ReceiveMaximum: &recvMax},
	}
	if o.Username != "" {
		cp.Username, cp.UsernameFlag = o.Username, true
	}
	if o.Password != "" {
		cp.Password, cp.PasswordFlag = []byte(o.Password), true
	}
	if exp := sessionExpiry(o); exp > 0 {
		cp.Properties.SessionExpiryInterval = &exp
	}
	cp.WillMessage, cp.WillProperties = will(o.Will)
	return cp
}

// sessionExpiry is the Session Expiry Interval the CONNECT asks for.
func sessionExpiry(o engine.Options) uint32 {
	switch {
	case o.SessionExpiry > 0:
		return seconds(o.SessionExpiry)
	case !o.CleanSession:
		return NeverExpires
	}
	return 0
}

// connectError classifies a failed handshake.
func (s *session) connectError(ca *paho.Connack, err error) error {
	if ca != nil && ca.ReasonCode >= 0x80 {
		rc := &errs.ReasonCodeError{Packet: "CONNACK", Code: ca.ReasonCode}
		if ca.Properties != nil {
			rc.Reason = ca.Properties.ReasonString
			if ref := ca.Properties.ServerReference; ref != "" {
				return &referred{rc: rc, ref: ref}
			}
		}
		return rc
	}
	if _, ok := s.pc.first.v311Connack(); ok {
		// Whatever its code, a 3.1.1 CONNACK says the broker does not
		// speak MQTT 5 (it must answer an unknown level with code 1).
		return &errs.ConnectRefusedError{Code: 1}
	}
	return err
}

// ServerReference is the Server Reference a refusing CONNACK carried
// (with 0x9C use another server, 0x9D server moved), "" when none. A
// server DISCONNECT's goes to Options.OnDisconnect.
func ServerReference(err error) string {
	var r *referred
	if errors.As(err, &r) {
		return r.ref
	}
	return ""
}

// referred is a CONNACK refusal with a Server Reference.
type referred struct {
	rc  *errs.ReasonCodeError
	ref string
}

func (r *referred) Error() string { return r.rc.Error() + " (server reference " + r.ref + ")" }
func (r *referred) Unwrap() error { return r.rc }

// connState is the engine's session state as one connection's paho client
// sees it: the same state, with what the engine needs to know of it.
type connState struct {
	*state.State
	s *session
}

func (cs *connState) ConAckReceived(w io.Writer, cp *packets.Connect, ca *packets.Connack) error {
	err := cs.State.ConAckReceived(w, cp, ca)
	cs.s.e.acked(cs.s, cp, ca)
	return err
}

func (cs *connState) ConnectionLost(dp *packets.Disconnect) error {
	if dp != nil {
		cs.s.disconnected(dp.ReasonCode, dp.Properties)
	}
	return cs.State.ConnectionLost(dp)
}

func (cs *connState) PacketReceived(p *packets.ControlPacket, pubs chan<- *packets.Publish) error {
	switch c := p.Content.(type) {
	case *packets.Puback, *packets.Pubcomp:
		cs.s.acks.Add(1)
	case *packets.Pubrec:
		if c.ReasonCode >= 0x80 { // the end of that QoS 2 flow
			cs.s.acks.Add(1)
		}
	}
	return cs.State.PacketReceived(p, pubs)
}

// noPings is a paho.golang Pinger that never pings: the keepalive monitor
// owns PINGREQ on this connection.
type noPings struct{}

func (noPings) Run(context.Context, net.Conn, uint16) error { return nil }
func (noPings) PacketSent()                                 {}
func (noPings) PacketReceived()                             {}
func (noPings) PingResp()                                   {}
func (noPings) SetDebug(log.Logger)                         {}

var _ paho.Pinger = noPings{}

// lostBefore is the error of a message the connection never took.
func lostBefore(why error) error {
	return fmt.Errorf("%w: connection lost before the message was written: %w", errs.NotConnected, why)
}

// lostAfter is the error of a message written on a connection that ended
// before its acknowledgement, with no session to complete it in.
func lostAfter(why error) error {
	return fmt.Errorf("steadymqtt: connection lost before the acknowledgement: %w", why)
}
