// Package sender moves QoS 1 and 2 messages from the outbox to the live
// connection and settles each one: acknowledged (out of the outbox, its
// Publish returns nil), back in the outbox for the next connection, or out
// of it as poison.
//
// Messages are handed over one after the other, in outbox order, at most
// the in-flight window at a time; only the waits for their
// acknowledgements run side by side.
package sender

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/outbox"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// Config is what the sender is told by the client.
type Config struct {
	Outbox      *outbox.Outbox
	InFlight    int
	PoisonAfter int
	// Envelope seals idempotency keys into the payload on MQTT 3.1.1
	// (WithKeyEnvelope); MQTT 5 carries them as a user property.
	Envelope bool
	// Reports, each called on the sender's goroutines.
	Acked       func(qos byte)
	Redelivered func()
	Poisoned    func(e *outbox.Entry, err error)
	// Refused reports a message the broker refused for good (an MQTT 5
	// reason code of 0x80 or more): its Publish returns that error.
	Refused func(e *outbox.Entry, err error)
	// Unconfirmed reports a message whose hand-off completed without its
	// acknowledgement seen on the wire (paho #563): it is sent again on
	// the next connection.
	Unconfirmed func(e *outbox.Entry)
	// StoreFailed reports a durable outbox that could not record an outcome.
	StoreFailed func(what string, err error)
}

// Sender serves one connection after another.
type Sender struct {
	cfg Config

	// kept: messages an MQTT 5 session keeps across a loss, to be
	// completed on a later connection (PUBREL, not a second PUBLISH); they
	// stay in flight in the outbox until their Pending says how it ended.
	keptMu sync.Mutex
	kept   map[*outbox.Entry]engine.Pending
	keptWG sync.WaitGroup
}

// New returns a sender.
func New(cfg Config) *Sender { return &Sender{cfg: cfg, kept: make(map[*outbox.Entry]engine.Pending)} }

// survives is a Pending that can outlive its connection (MQTT 5 session
// state): after the loss, true means its Done will carry the real outcome.
type survives interface{ Survives() bool }

// link is one live connection as the sender sees it.
type link struct {
	sess engine.Session
	conn *wire.Conn
	end  <-chan struct{} // closed when the connection is over

	oldestOnce sync.Once
	oldest     uint64
}

// Run hands outbox messages to sess until end is closed, and returns once
// every message it took has an outcome or is back in the outbox.
func (s *Sender) Run(sess engine.Session, conn *wire.Conn, end <-chan struct{}) {
	l := &link{sess: sess, conn: conn, end: end}
	// Kept messages whose outcome is already known (the new session had
	// none of them) go back to their places before anything newer is
	// taken, so the order holds.
	s.settleKept(false)
	var wg sync.WaitGroup
	defer wg.Wait()
	window := make(chan struct{}, s.cfg.InFlight)
	for {
		select {
		case window <- struct{}{}:
		case <-end:
			return
		}
		if l.closing() { // select picks at random when both are ready
			return
		}
		e := s.cfg.Outbox.Next(end)
		if e == nil {
			return
		}
		if e.Sends > 1 {
			s.cfg.Redelivered()
		}
		acksBefore := sess.Acks()
		p := sess.Publish(s.toWire(e, sess.Version()))
		if p.Refused() && !l.closing() {
			// The writer did not take it in time (a long write on a slow
			// uplink). Nothing after it has been handed over: put it back
			// and try again, so the order holds.
			s.cfg.Outbox.Requeue(e, false)
			<-window
			select {
			case <-time.After(10 * time.Millisecond):
			case <-end:
				return
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-window }()
			s.settle(l, e, p, acksBefore)
		}()
	}
}

// settle waits for one message's outcome.
func (s *Sender) settle(l *link, e *outbox.Entry, p engine.Pending, acksBefore uint64) {
	select {
	case <-p.Done():
	case <-l.end:
		// With a persistent session paho keeps the token open across the
		// loss; the message goes back to the outbox instead.
	}
	select {
	case <-p.Done():
		if p.Acked() {
			// Counted before Ack releases the caller: Stats read right
			// after Publish returned must include it.
			s.cfg.Acked(e.QoS)
			if err := s.cfg.Outbox.Ack(e); err != nil {
				s.cfg.StoreFailed("recording an acknowledgement failed; the message may be sent again", err)
			}
			return
		}
		if refused(p.Err()) { // the broker said no: sending it again would not change that
			s.refuse(e, p.Err())
			return
		}
		if p.Err() == nil {
			s.cfg.Unconfirmed(e)
		}
	default:
	}
	<-l.end // the connection is going away or gone
	if sv, ok := p.(survives); ok && sv.Survives() {
		s.keep(e, p)
		return
	}
	// A strike only for the oldest message in flight, and only when the
	// broker closed the connection with nothing acknowledged since it was
	// sent: the messages behind it were collateral.
	strike := e.Seq() == l.oldestInFlight(s.cfg.Outbox) && l.conn.Cause() == nil && BrokerClosed(l.conn) && l.sess.Acks() == acksBefore
	if strikes := s.cfg.Outbox.Requeue(e, strike); strike && strikes >= s.cfg.PoisonAfter {
		err := fmt.Errorf("%w: topic %q, %d bytes, %d connections closed", errs.PoisonMessage, e.Topic, len(e.Payload), strikes)
		if ferr := s.cfg.Outbox.Fail(e, err); ferr != nil {
			s.cfg.StoreFailed("recording a poison message failed", ferr)
		}
		s.cfg.Poisoned(e, err)
	}
}

func (s *Sender) refuse(e *outbox.Entry, err error) {
	if ferr := s.cfg.Outbox.Fail(e, err); ferr != nil {
		s.cfg.StoreFailed("recording a refused message failed", ferr)
	}
	if s.cfg.Refused != nil {
		s.cfg.Refused(e, err)
	}
}

// keep leaves e in flight while its session state completes it on a later
// connection, and settles it when it is done.
func (s *Sender) keep(e *outbox.Entry, p engine.Pending) {
	s.keptMu.Lock()
	s.kept[e] = p
	s.keptMu.Unlock()
	s.keptWG.Add(1)
	go func() {
		defer s.keptWG.Done()
		<-p.Done()
		s.settleOne(e)
	}()
}

// settleKept settles the kept messages that are done (all of them when
// wait is true, waiting for each).
func (s *Sender) settleKept(wait bool) {
	s.keptMu.Lock() // also waits for a settlement under way
	var done []*outbox.Entry
	for e, p := range s.kept {
		select {
		case <-p.Done():
			done = append(done, e)
		default:
		}
	}
	s.keptMu.Unlock()
	for _, e := range done {
		s.settleOne(e)
	}
	if wait {
		s.keptWG.Wait()
	}
}

// settleOne settles a kept message once, whoever comes first. The lock is
// held until the outbox knows, so that a Run starting meanwhile finds the
// message back in its place before it takes anything newer.
func (s *Sender) settleOne(e *outbox.Entry) {
	s.keptMu.Lock()
	defer s.keptMu.Unlock()
	p, ok := s.kept[e]
	delete(s.kept, e)
	if !ok {
		return
	}
	switch {
	case p.Acked():
		s.cfg.Acked(e.QoS)
		if err := s.cfg.Outbox.Ack(e); err != nil {
			s.cfg.StoreFailed("recording an acknowledgement failed; the message may be sent again", err)
		}
	case refused(p.Err()):
		s.refuse(e, p.Err())
	default:
		s.cfg.Outbox.Requeue(e, false)
	}
}

// refused reports whether err is the broker's answer to the message itself
// (a PUBACK, PUBREC or PUBCOMP reason code of 0x80 or more, or a PUBLISH
// the CONNACK ruled out), not a connection that ended (a server DISCONNECT
// carries a reason code too, and says nothing about this message).
func refused(err error) bool {
	var rc *errs.ReasonCodeError
	if !errors.As(err, &rc) {
		return false
	}
	switch rc.Packet {
	case "PUBACK", "PUBREC", "PUBCOMP", "PUBLISH":
		return true
	}
	return false
}

// Wait waits for the kept messages to be settled; their engine must have
// been closed, which ends every wait.
func (s *Sender) Wait() { s.settleKept(true) }

// oldestInFlight is the outbox's oldest in-flight message when the
// connection ended, read once, before any of them goes back.
func (l *link) oldestInFlight(o *outbox.Outbox) uint64 {
	l.oldestOnce.Do(func() { l.oldest = o.OldestInFlight() })
	return l.oldest
}

// closing reports whether the connection is ending.
func (l *link) closing() bool {
	select {
	case <-l.end:
		return true
	case <-l.conn.Done():
		return true
	default:
		return false
	}
}

// BrokerClosed reports whether the connection ended by the broker's doing
// (EOF or reset), as opposed to ours (keepalive, Close).
func BrokerClosed(conn *wire.Conn) bool {
	err := conn.IOErr()
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// Flush waits until the outbox is empty, the connection closes, or ctx
// ends.
func (s *Sender) Flush(ctx context.Context, conn *wire.Conn) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for s.cfg.Outbox.Len() > 0 {
		select {
		case <-t.C:
		case <-conn.Done():
			return
		case <-ctx.Done():
			return
		}
	}
}
