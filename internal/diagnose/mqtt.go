package diagnose

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/steadymqtt/steadymqtt/internal/dial"
	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/manager"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// checkConnect opens the client's own way to a session (dial, CONNECT)
// with a client ID of its own and a clean session, so that a running
// client's connection and session are left alone.
func (w *walk) checkConnect(s *Step) {
	if w.conn != nil { // the probes' connection; the client's path dials again
		_ = w.conn.Close()
		w.conn = nil
	}
	cfg := w.cfg.Client
	cfg.ClientID, cfg.CleanSession, cfg.Will = w.id, true, nil
	cfg.OnMessage = func(m engine.Message) {
		select {
		case w.inbox <- m:
		default:
		}
	}
	ctx, cancel := w.timeout()
	defer cancel()
	sess, conn, err := manager.Open(ctx, &cfg, w.u, w.choice)
	if err != nil {
		cause, hint := connectTrouble(err, w.cfg.Client.ConnectTimeout)
		fail(s, err, cause, hint)
		var refused *errs.ConnectRefusedError
		var reason *errs.ReasonCodeError
		switch {
		case errors.As(err, &refused):
			s.Details = []string{fmt.Sprintf("CONNACK: code %d%s", refused.Code, refusalWords(err))}
		case errors.As(err, &reason):
			s.Details = []string{fmt.Sprintf("CONNACK: reason code 0x%02X (%s) %s", reason.Code, errs.ReasonText(reason.Code), reason.Reason)}
		}
		return
	}
	w.sess, w.wconn = sess, conn
	s.Details = []string{
		"CONNACK: accepted",
		fmt.Sprintf("client ID %s (the walk's own)", w.id),
	}
}

func connectTrouble(err error, timeout time.Duration) (cause, hint string) {
	var refused *errs.ConnectRefusedError
	var reason *errs.ReasonCodeError
	switch {
	case errors.As(err, &refused):
		return fmt.Sprintf("the broker refused the connection: CONNACK code %d", refused.Code) + refusalWords(err), refused.Hint()
	case errors.As(err, &reason):
		return fmt.Sprintf("the broker refused the connection: CONNACK reason code 0x%02X (%s)", reason.Code, errs.ReasonText(reason.Code)), reasonHint(reason)
	case errs.StepOf(err) == errs.StepTLS:
		return tlsTrouble(err)
	case errs.StepOf(err) == errs.StepWebSocket:
		return "the WebSocket upgrade failed: " + rootCause(err).Error(), "check the URL's path (often /mqtt) and that the port serves MQTT over WebSocket"
	case errors.Is(err, errs.ConnectTimeout), dial.IsTimeout(err):
		return fmt.Sprintf("no CONNACK within %v", timeout),
			"the port may not be an MQTT port, or the broker hangs CONNECTs (a cluster node waiting for a leader does this)"
	}
	return "the broker closed the connection before CONNACK: " + rootCause(err).Error(),
		"check the broker's log for why it dropped the client (client ID, protocol version, limits)"
}

func reasonHint(e *errs.ReasonCodeError) string {
	switch e.Code {
	case 0x86, 0x87:
		return "check the user name and password (WithCredentials) and the broker's ACL for this client ID"
	case 0x84:
		return "the broker does not speak MQTT 5: use WithProtocol(ProtocolV311) or ProtocolAuto"
	case 0x85:
		return "check the client ID (length, characters)"
	case 0x88, 0x89:
		return "the broker is up but cannot serve clients now"
	case 0x8A:
		return "the broker banned this client"
	case 0x9C, 0x9D:
		return "the broker sends its clients to another server"
	}
	return ""
}

func refusalWords(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "refused the connection: "); i >= 0 {
		words := msg[i+len("refused the connection: "):]
		if j := strings.Index(words, " (CONNACK"); j >= 0 {
			return " (" + words[:j] + ")"
		}
	}
	return ""
}

// checkRoundTrip subscribes to a topic of its own, publishes to it at QoS
// 1 and waits for the message to come back.
func (w *walk) checkRoundTrip(s *Step) {
	topic := "steadymqtt/diagnose/" + w.id
	ctx, cancel := w.timeout()
	defer cancel()
	start := time.Now()
	granted, err := w.sess.Subscribe(ctx, topic, 1)
	switch {
	case errors.Is(err, errs.SubscriptionRefused):
		fail(s, err, fmt.Sprintf("the broker refused SUBSCRIBE %s (SUBACK 0x80)", topic),
			"the broker's ACL does not let this user read "+topic+"; check it (the walk's client ID ends in -diagnose-…)")
		return
	case err != nil && w.lost():
		fail(s, err, fmt.Sprintf("the broker closed the connection after SUBSCRIBE %s", topic),
			"a node that cannot serve the subscription drops the client (RabbitMQ classic queues whose node is down); check the broker's log")
		return
	case err != nil:
		fail(s, err, "no SUBACK: "+rootCause(err).Error(), "")
		return
	}
	s.Details = append(s.Details, fmt.Sprintf("SUBSCRIBE %s: granted QoS %d in %v", topic, granted, time.Since(start).Round(time.Microsecond)))
	sent := time.Now()
	p := w.sess.Publish(engine.Message{Topic: topic, Payload: []byte("steadymqtt diagnose"), QoS: 1})
	select {
	case <-p.Done():
	case <-ctx.Done():
	}
	if !isDone(p) || !p.Acked() {
		cause := "no PUBACK for a QoS 1 PUBLISH to " + topic
		if w.lost() {
			cause = "the broker closed the connection right after a PUBLISH to " + topic
		}
		err := p.Err()
		if err == nil {
			err = ctx.Err()
		}
		fail(s, err, cause, "the broker's ACL may forbid publishing there (some brokers disconnect for it); check its log")
		return
	}
	s.Details = append(s.Details, fmt.Sprintf("PUBACK in %v", time.Since(sent).Round(time.Microsecond)))
	select {
	case <-w.inbox:
		s.Details = append(s.Details, fmt.Sprintf("message back in %v", time.Since(sent).Round(time.Microsecond)))
	case <-ctx.Done():
		fail(s, ctx.Err(), "the broker acknowledged the message but never delivered it back",
			"the broker's ACL may deny publishing to or reading "+topic+" (Mosquitto acknowledges a denied publish and drops it)")
	}
	uctx, ucancel := context.WithTimeout(w.ctx, time.Second)
	_ = w.sess.Unsubscribe(uctx, topic)
	ucancel()
}

func isDone(p engine.Pending) bool {
	select {
	case <-p.Done():
		return true
	default:
		return false
	}
}

func (w *walk) lost() bool {
	select {
	case <-w.wconn.Done():
		return true
	case <-w.sess.Lost():
		return true
	default:
		return false
	}
}

// checkKeepalive sends one PINGREQ and waits for its PINGRESP.
func (w *walk) checkKeepalive(s *Step) {
	ctx, cancel := w.timeout()
	defer cancel()
	before := w.wconn.Stats().PacketsIn
	for {
		err := w.wconn.SendPing(time.Second)
		if err == nil {
			break
		}
		if !errors.Is(err, wire.ErrBusy) {
			fail(s, err, "the PINGREQ could not be written: "+rootCause(err).Error(), "")
			return
		}
		if !pause(ctx, time.Millisecond) {
			fail(s, ctx.Err(), "the connection stayed busy writing", "")
			return
		}
	}
	for {
		st := w.wconn.Stats()
		if st.PingOutstanding == 0 && st.PacketsIn > before { // the PINGRESP came

			s.Details = []string{"PINGRESP in " + ms(st.RTT)}
			return
		}
		if !pause(ctx, time.Millisecond) {
			fail(s, ctx.Err(), "no PINGRESP within the connect timeout",
				"the broker or the path stopped answering; the client declares such a link dead within 1.5 × keepalive")
			return
		}
	}
}

func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
