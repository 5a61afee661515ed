package paho5

import (
	"errors"
	"fmt"
	"sync"

	"github.com/eclipse/paho.golang/packets"
	pahosession "github.com/eclipse/paho.golang/paho/session"

	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/errs"
)

var errNoConnection = pahosession.ErrNoConnection

// Where a message is.
const (
	phaseQueued  = iota // waiting for its hand-off
	phaseWriting        // QoS 0, being written
	phaseKept           // QoS 1 or 2, in the session state
	phaseDone           // settled
)

// pending is one message handed to a session.
type pending struct {
	e   *Engine
	s   *session
	qos byte
	pkt *packets.Publish
	ret chan packets.ControlPacket // the session state's response (QoS 1 and 2)

	mu    sync.Mutex
	phase int
	acked bool
	err   error
	done  chan struct{}
}

var _ engine.Pending = (*pending)(nil)

func (p *pending) Done() <-chan struct{} { return p.done }

// Refused is always false: the engine queues every message it is handed.
func (p *pending) Refused() bool { return false }

// Acked reports, after Done, whether the broker acknowledged the message
// with a success code (QoS 0: whether it was written).
func (p *pending) Acked() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.phase == phaseDone && p.acked
}

// Err is why the message was not acknowledged, after Done: an
// *errs.ReasonCodeError when the broker refused it.
func (p *pending) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Survives is called after the connection ended. True: Done carries the
// message's outcome, now (acknowledged, or refused by the broker) or
// after a later connection of the same Engine (it is in the session
// state, which outlives the connection). False: the message was not
// delivered and this engine will not send it again, so it must be sent
// again; a message still waiting for its hand-off is withdrawn, never to
// be written.
func (p *pending) Survives() bool {
	if p.settle(phaseQueued, false, errWithdrawn) {
		return false
	}
	p.mu.Lock()
	phase, acked, err := p.phase, p.acked, p.err
	p.mu.Unlock()
	switch phase {
	case phaseDone:
		var rc *errs.ReasonCodeError
		return acked || errors.As(err, &rc)
	case phaseKept:
		return p.e.keepsSession()
	}
	return false // QoS 0 being written: its outcome says nothing more
}

// move changes the phase, if it is from.
func (p *pending) move(from, to int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.phase != from {
		return false
	}
	p.phase = to
	return true
}

// settle gives p its outcome, if it is in phase from (any phase but done
// when from < 0), and reports whether it did.
func (p *pending) settle(from int, acked bool, err error) bool {
	p.mu.Lock()
	if p.phase == phaseDone || (from >= 0 && p.phase != from) {
		p.mu.Unlock()
		return false
	}
	kept := p.phase == phaseKept
	p.phase, p.acked, p.err = phaseDone, acked, err
	p.mu.Unlock()
	if kept {
		p.e.forget(p)
	}
	p.s.open.Add(-1)
	close(p.done)
	return true
}

// wait settles p, kept in the session state, with its response, on
// whichever connection it comes.
func (p *pending) wait() {
	select {
	case r := <-p.ret:
		acked, err := outcome(r)
		p.settle(phaseKept, acked, err)
	case <-p.done:
	}
}

// outcome reads the final response of a QoS 1 or 2 message.
func outcome(r packets.ControlPacket) (bool, error) {
	switch c := r.Content.(type) {
	case *packets.Puback:
		if c.ReasonCode >= 0x80 {
			return false, reasonError("PUBACK", c.ReasonCode, c.Properties)
		}
		return true, nil
	case *packets.Pubrec: // the session state ends a QoS 2 flow at PUBREC only on a failure
		if c.ReasonCode >= 0x80 {
			return false, reasonError("PUBREC", c.ReasonCode, c.Properties)
		}
		return false, fmt.Errorf("steadymqtt: the QoS 2 flow ended at PUBREC 0x%02X", c.ReasonCode)
	case *packets.Pubcomp:
		// 0x92 answers a PUBREL the broker had completed already, before
		// a reconnect: it took the message with a success PUBREC.
		if c.ReasonCode >= 0x80 && c.ReasonCode != 0x92 {
			return false, reasonError("PUBCOMP", c.ReasonCode, c.Properties)
		}
		return true, nil
	case nil: // the session state was closed
		return false, errEngineClosed
	}
	return false, fmt.Errorf("steadymqtt: unexpected response to PUBLISH (packet type %d)", r.Type)
}

func reasonError(packet string, code byte, props *packets.Properties) *errs.ReasonCodeError {
	rc := &errs.ReasonCodeError{Packet: packet, Code: code}
	if props != nil {
		rc.Reason = props.ReasonString
	}
	return rc
}
