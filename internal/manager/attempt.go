package manager

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/steadymqtt/steadymqtt/internal/dial"
	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/netpick"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// attempt opens one connection to u from ch: dial, observe, MQTT
// handshake, all within the connect timeout.
func (m *Manager) attempt(u *url.URL, ch netpick.Choice, chooseErr error) (engine.Session, *wire.Conn, error) {
	if chooseErr != nil {
		return nil, nil, errs.AtStep(selectionStep(chooseErr), chooseErr)
	}
	ctx, cancel := context.WithTimeout(m.stopCtx, m.cfg.ConnectTimeout)
	defer cancel()
	return Open(ctx, &m.cfg, u, ch)
}

// selectionStep names the step a failed choice of interface failed at: no
// candidate had a usable address, or the interfaces themselves were not
// usable.
func selectionStep(err error) string {
	var sel *errs.SelectionError
	if !errors.As(err, &sel) {
		return errs.StepInterface
	}
	for _, c := range sel.Candidates {
		if !errors.Is(c.Err, errs.NoUsableAddress) {
			return errs.StepInterface
		}
	}
	return errs.StepAddress
}

// Target is where an attempt to u from ch dials.
func Target(cfg *Config, u *url.URL, ch netpick.Choice) dial.Target {
	return dial.Target{
		URL: u, Interface: ch.Interface, IfIndex: ch.Index, Source: ch.Addr, SourceIP: cfg.SourceIP,
		UserTimeout: cfg.KeepAlive * 3 / 2, TLS: cfg.TLS, Probe: &dial.Probe{},
	}
}

// open dials from ch, observes, and runs eng's MQTT handshake.
func open(ctx context.Context, cfg *Config, eng engine.Engine, u *url.URL, ch netpick.Choice) (engine.Session, *wire.Conn, error) {
	target := Target(cfg, u, ch)
	raw, err := dial.Dial(ctx, target)
	if err != nil {
		return nil, nil, err
	}
	conn := wire.NewConn(raw, cfg.Clock.Now)
	user, pass := credentials(cfg, u)
	sess, err := eng.Connect(ctx, conn, engine.Options{
		ClientID: cfg.ClientID, Username: user, Password: pass,
		CleanSession: cfg.CleanSession, KeepAlive: cfg.KeepAlive, Will: cfg.Will,
		SessionExpiry: cfg.SessionExpiry, OnMessage: cfg.OnMessage, OnDisconnect: cfg.OnDisconnect,
	})
	if err != nil {
		return nil, nil, handshakeError(cfg, target, conn, err)
	}
	return sess, conn, nil
}

// credentials are sent in CONNECT; user information in the broker URL of
// the attempt wins over WithCredentials.
func credentials(cfg *Config, u *url.URL) (string, string) {
	if u.User != nil {
		p, _ := u.User.Password()
		return u.User.Username(), p
	}
	return cfg.Username, cfg.Password
}

// handshakeError classifies a failed MQTT handshake and names its step.
func handshakeError(cfg *Config, t dial.Target, conn *wire.Conn, err error) error {
	err = classifyHandshake(cfg, t, conn, err)
	var tlsErr *errs.TLSError
	if errors.As(err, &tlsErr) { // rejected after the TLS handshake (TLS 1.3)
		return errs.AtStep(errs.StepTLS, err)
	}
	return errs.AtStep(errs.StepConnect, err)
}

func classifyHandshake(cfg *Config, t dial.Target, conn *wire.Conn, err error) error {
	broker := t.URL.Redacted()
	var refused *errs.ConnectRefusedError
	if errors.As(err, &refused) {
		refused.Broker = broker
		return refused
	}
	var reason *errs.ReasonCodeError
	if errors.As(err, &reason) {
		reason.Broker = broker
		return reason
	}
	if dial.IsTLS(t.URL) {
		// A TLS 1.3 broker rejects a client certificate only after the
		// client's side of the handshake is done: the alert (or the reset)
		// arrives where the engine waits for CONNACK.
		if classified := dial.AfterHandshake(err, t.Probe, broker, conn.Stats().BytesIn > 0); classified != nil {
			return classified
		}
	}
	cause := conn.Cause()
	switch {
	case dial.IsTimeout(err) || (cause != nil && dial.IsTimeout(cause)):
		return fmt.Errorf("%w: %s: no CONNACK within %v", errs.ConnectTimeout, broker, cfg.ConnectTimeout)
	case cause != nil:
		return fmt.Errorf("steadymqtt: %s: %w", broker, cause)
	}
	return fmt.Errorf("steadymqtt: %s: MQTT handshake failed: %w", broker, err)
}
