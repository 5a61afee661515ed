// Package diagnose walks a connection step by step — interface, address,
// DNS, route, TCP, TLS, CONNECT, a message round trip, a keepalive — with
// the client's own stages and options, and says at each step what it found
// and, where it failed, why and what to check next.
package diagnose

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/netip"
	"net/url"
	"time"

	"github.com/steadymqtt/steadymqtt/internal/dial"
	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/manager"
	"github.com/steadymqtt/steadymqtt/internal/netpick"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// Config is the client's configuration: what it dials with, and where
// from.
type Config struct {
	Client manager.Config // brokers, credentials, TLS, source, engine, timeouts
	Pick   netpick.Config // interfaces, family, the host's interfaces
}

// Run walks to every broker, one after the other, in the order given.
func Run(ctx context.Context, cfg Config) Diagnosis {
	d := Diagnosis{OK: true}
	for _, u := range cfg.Client.Brokers {
		r := walkTo(ctx, &cfg, u)
		d.OK = d.OK && r.OK
		d.Reports = append(d.Reports, r)
	}
	return d
}

// walk is one broker's walk: what each step found, for the next.
type walk struct {
	ctx    context.Context
	cfg    *Config
	u      *url.URL
	rep    Report
	failed string // the step that failed; later ones are skipped

	choice netpick.Choice
	target dial.Target
	addrs  []netip.Addr // the broker's addresses, then those with a route
	conn   net.Conn     // the TCP (then TLS) connection of the probes
	sess   engine.Session
	wconn  *wire.Conn
	inbox  chan engine.Message
	id     string // the client ID of the walk's own CONNECT
}

func walkTo(ctx context.Context, cfg *Config, u *url.URL) Report {
	w := &walk{ctx: ctx, cfg: cfg, u: u, rep: Report{Broker: u.Redacted()}, inbox: make(chan engine.Message, 8)}
	w.id = diagnoseID(cfg.Client.ClientID)
	defer w.close()
	w.step(errs.StepInterface, w.checkInterface)
	w.step(errs.StepAddress, w.checkAddress)
	w.target = manager.Target(&cfg.Client, u, w.choice)
	w.step(errs.StepDNS, w.checkDNS)
	w.step(errs.StepRoute, w.checkRoute)
	w.step(errs.StepTCP, w.checkTCP)
	w.step(errs.StepTLS, w.checkTLS)
	w.step(errs.StepConnect, w.checkConnect)
	w.step(errs.StepRoundTrip, w.checkRoundTrip)
	w.step(errs.StepKeepalive, w.checkKeepalive)
	w.rep.OK = w.failed == ""
	return w.rep
}

// step runs check unless an earlier step failed, and records it.
func (w *walk) step(name string, check func(*Step)) {
	s := Step{Name: name}
	if w.failed != "" {
		s.Status, s.Cause = Skipped, "not tried: the "+w.failed+" step failed"
		w.rep.Steps = append(w.rep.Steps, s)
		return
	}
	start := time.Now()
	check(&s)
	s.Duration = time.Since(start)
	if s.Status == Failed {
		w.failed = name
	}
	w.rep.Steps = append(w.rep.Steps, s)
}

func (w *walk) close() {
	if w.conn != nil {
		_ = w.conn.Close()
	}
	if w.sess != nil {
		w.sess.Disconnect(100 * time.Millisecond)
	}
}

// timeout is the bound of one network step: the client's connect timeout.
func (w *walk) timeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(w.ctx, w.cfg.Client.ConnectTimeout)
}

// diagnoseID is the client ID of the walk's own connection: never the
// client's, whose live connection the broker would otherwise take over.
func diagnoseID(clientID string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	if len(clientID) > 40 {
		clientID = clientID[:40]
	}
	return clientID + "-diagnose-" + hex.EncodeToString(b[:])
}

func fail(s *Step, err error, cause, hint string) {
	s.Status, s.Err, s.Cause, s.Hint = Failed, err, cause, hint
}

func ms(d time.Duration) string { return d.Round(10 * time.Microsecond).String() }
