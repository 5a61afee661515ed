// Package paho311 is the MQTT 3.1.1 engine, on paho.mqtt.golang.
//
// paho is used for what it does well (packet encoding, identifiers, the
// receive loop) and kept away from what the client owns: it gets the
// connection the dial stage opened through its open-connection hook, its
// auto-reconnect and resume are off, it keeps no store (the outbox
// resends), and its pinger is off (the keepalive monitor pings; the
// keepalive period still goes into CONNECT, written there on the wire).
package paho311

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// HandoffTimeout bounds how long paho may take to accept a packet for
// writing: a hand-off must not outlive a dead connection by much. With a
// short keepalive it is a twentieth of it.
const HandoffTimeout = time.Second

func handoffTimeout(keepAlive time.Duration) time.Duration {
	return max(min(HandoffTimeout, keepAlive/20), 10*time.Millisecond)
}

// Engine is the MQTT 3.1.1 engine.
type Engine struct{}

var _ engine.Engine = Engine{}

// Connect runs paho's CONNECT over conn. Each session has a paho client of
// its own: nothing of an old connection (a hand-off blocked in paho,
// message identifiers paho never released, a late callback) can reach the
// next one.
func (Engine) Connect(ctx context.Context, conn *wire.Conn, o engine.Options) (engine.Session, error) {
	s := &session{conn: conn, acks: newAckTracker(), lost: make(chan error, 1), clientID: o.ClientID}
	conn.Observe(s.acks.observe)
	p := mqtt.NewClient(s.options(ctx, o))
	s.paho = p
	tok := p.Connect()
	aborted := false
	select {
	case <-tok.Done():
	case <-ctx.Done():
		// Closing the socket ends paho's wait for CONNACK at once.
		_ = conn.CloseWithError(ctx.Err())
		<-tok.Done()
		aborted = true
	}
	ct := tok.(*mqtt.ConnectToken)
	if aborted && tok.Error() == nil {
		// The CONNACK came as the socket closed: no session on a closed
		// socket.
		p.Disconnect(0)
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		_ = conn.Close()
		if rc := ct.ReturnCode(); rc >= 1 && rc <= 5 {
			return nil, &errs.ConnectRefusedError{Code: rc}
		}
		return nil, err
	}
	s.present = ct.SessionPresent()
	return s, nil
}

func (s *session) options(ctx context.Context, o engine.Options) *mqtt.ClientOptions {
	po := mqtt.NewClientOptions()
	// paho wants a server; the connection is already open, so this URL is
	// never dialled. It carries no credentials.
	po.AddBroker((&url.URL{Scheme: "tcp", Host: s.conn.RemoteAddr().String()}).String())
	po.SetClientID(o.ClientID)
	po.SetCleanSession(o.CleanSession)
	po.SetProtocolVersion(4) // no silent fallback to 3.1, which doubles every refused attempt
	po.SetKeepAlive(0)       // paho's pinger stays off: one keepalive owner per connection
	if dl, ok := ctx.Deadline(); ok {
		po.SetConnectTimeout(max(time.Until(dl), time.Millisecond))
	}
	po.SetAutoReconnect(false) // one retry loop: the manager's (paho #509, #675)
	po.SetConnectRetry(false)
	po.SetResumeSubs(false)
	// Every message goes to OnMessage, in order, and is acknowledged as soon
	// as it returns (MQTT-4.6.0-2); handlers stay off paho's receive path
	// (paho #208).
	po.SetOrderMatters(true)
	po.SetAutoAckDisabled(true)
	po.SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
		if o.OnMessage != nil {
			o.OnMessage(engine.Message{Topic: m.Topic(), Payload: m.Payload(), QoS: m.Qos(), Retain: m.Retained(), Duplicate: m.Duplicate()})
		}
		m.Ack()
	})
	// paho keeps no copy of outgoing messages: the outbox resends what was
	// not acknowledged, so paho's own resend on resume would send it twice.
	po.SetStore(nopStore{})
	// paho also sets this as a write deadline, which wire.Conn ignores: the
	// keepalive monitor judges a slow uplink by its progress instead.
	po.SetWriteTimeout(handoffTimeout(o.KeepAlive))
	var opened sync.Once
	po.SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) {
		var c net.Conn = nil
		opened.Do(func() { c = &keepAliveInConnect{Conn: s.conn, seconds: uint16(o.KeepAlive / time.Second)} })
		if c == nil {
			return nil, errs.Closed // paho never opens twice with retries off; refuse if it tries
		}
		return c, nil
	})
	po.SetCredentialsProvider(func() (string, string) { return o.Username, o.Password })
	po.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		_ = s.conn.Close() // paho has closed it; the contract says so, whatever paho does
		select {
		case s.lost <- err:
		default:
		}
	})
	if w := o.Will; w != nil {
		po.SetBinaryWill(w.Topic, w.Payload, w.QoS, w.Retain)
	}
	return po
}

type session struct {
	paho     mqtt.Client
	conn     *wire.Conn
	acks     *ackTracker
	present  bool
	lost     chan error
	clientID string
}

func (s *session) SessionPresent() bool { return s.present }
func (s *session) Lost() <-chan error   { return s.lost }
func (s *session) Acks() uint64         { return s.acks.mark() }
func (s *session) Version() byte        { return 4 }
func (s *session) ReceiveMaximum() int  { return 0 } // 3.1.1 has no such limit
func (s *session) ClientID() string     { return s.clientID }

func (s *session) Publish(m engine.Message) engine.Pending {
	// The mark is taken before the hand-off, so an acknowledgement that
	// comes back before Publish returns still counts.
	mark := s.acks.mark()
	tok := s.paho.Publish(m.Topic, m.QoS, m.Retain, m.Payload)
	return &pending{tok: tok, qos: m.QoS, mark: mark, acks: s.acks}
}

func (s *session) Subscribe(ctx context.Context, filter string, qos byte) (byte, error) {
	var tok mqtt.Token
	err := s.untilTaken(ctx, func() mqtt.Token {
		tok = s.paho.Subscribe(filter, qos, nil) // nil: messages go to the default handler
		return tok
	})
	if err != nil {
		return 0, err
	}
	granted := qos
	if st, ok := tok.(*mqtt.SubscribeToken); ok {
		// One filter per SUBSCRIBE, so the only result is ours (paho keys
		// it without the $share/group/ prefix).
		for _, g := range st.Result() {
			granted = g
		}
	}
	if granted == 0x80 {
		return granted, fmt.Errorf("%w (SUBACK 0x80)", errs.SubscriptionRefused)
	}
	return granted, nil
}

func (s *session) Unsubscribe(ctx context.Context, filters ...string) error {
	return s.untilTaken(ctx, func() mqtt.Token { return s.paho.Unsubscribe(filters...) })
}

// untilTaken sends a request and waits for its answer. paho refuses a
// request whose hand-off to its writer timed out (the writer is busy with
// a long upload) although the connection is fine: the request is made
// again while the connection lasts and ctx allows, so that an error means
// the connection ended (or ctx did), never that the request was dropped.
func (s *session) untilTaken(ctx context.Context, send func() mqtt.Token) error {
	for {
		tok := send()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			return ctx.Err()
		}
		err := tok.Error()
		if err == nil {
			return nil
		}
		select {
		case <-s.conn.Done():
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (s *session) Disconnect(quiesce time.Duration) {
	s.paho.Disconnect(uint(quiesce / time.Millisecond))
	// paho may return before its teardown closed the socket.
	t := time.NewTimer(quiesce + time.Second)
	defer t.Stop()
	select {
	case <-s.conn.Done():
	case <-t.C:
		_ = s.conn.Close()
	}
}

// pending is one message handed to paho.
type pending struct {
	tok  mqtt.Token
	qos  byte
	mark uint64
	acks *ackTracker

	once  sync.Once
	acked bool
}

func (p *pending) Done() <-chan struct{} { return p.tok.Done() }
func (p *pending) Err() error            { return p.tok.Error() }

// Acked believes paho's token only with the acknowledgement seen on the
// wire: a token can complete without one (paho #563).
func (p *pending) Acked() bool {
	p.once.Do(func() {
		var id uint16
		if pt, ok := p.tok.(interface{ MessageID() uint16 }); ok {
			id = pt.MessageID()
		}
		p.acked = confirmed(p.tok.Error(), p.qos, p.acks, id, p.mark)
	})
	return p.acked
}

// confirmed is the guard of every delivery: a completed token counts only
// when its acknowledgement crossed the wire after the hand-off.
func confirmed(tokErr error, qos byte, acks *ackTracker, id uint16, mark uint64) bool {
	return tokErr == nil && (qos == 0 || acks.acked(id, mark))
}

func (p *pending) Refused() bool {
	select {
	case <-p.tok.Done():
		return p.tok.Error() != nil
	default:
		return false
	}
}

// nopStore is a paho Store that keeps nothing.
type nopStore struct{}

func (nopStore) Open()                             {}
func (nopStore) Put(string, packets.ControlPacket) {}
func (nopStore) Get(string) packets.ControlPacket  { return nil }
func (nopStore) All() []string                     { return nil }
func (nopStore) Del(string)                        {}
func (nopStore) Close()                            {}
func (nopStore) Reset()                            {}
