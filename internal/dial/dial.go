// Package dial opens the transport of one connection attempt: TCP, TLS over
// TCP, or a WebSocket over either, always through one TCP dialer, so that
// binding to an interface or source address, TLS and the kernel's
// TCP_USER_TIMEOUT apply to every transport. Its errors are classified
// here, once: source-side failures (errs.SourceError), TLS failures
// (errs.TLSError) and timeouts (errs.ConnectTimeout).
package dial

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/netif"
	"github.com/steadymqtt/steadymqtt/internal/wsconn"
)

// Target is everything one dial needs, explicitly.
type Target struct {
	URL *url.URL // the broker; its scheme picks the transport

	// Where the connection leaves from: an interface (with its index and,
	// unless the kernel picks, a source address) or a source address alone.
	Interface string
	IfIndex   int
	Source    netip.Addr
	SourceIP  net.IP

	// UserTimeout is the kernel's TCP_USER_TIMEOUT: how long written data
	// may stay unacknowledged before the kernel drops the connection.
	UserTimeout time.Duration

	TLS   *TLSOptions // for ssl, tls, mqtts and wss URLs
	Probe *Probe      // filled in during the TLS handshake; may be nil
}

// IsTLS reports whether u's scheme runs over TLS.
func IsTLS(u *url.URL) bool {
	switch u.Scheme {
	case "ssl", "tls", "mqtts", "wss":
		return true
	}
	return false
}

// Dial opens t's transport. Host names are resolved here, at every
// attempt, so a broker that moved is found again.
// A dial that ran out of time matches errs.ConnectTimeout, whichever layer
// it was in.
func Dial(ctx context.Context, t Target) (net.Conn, error) {
	var (
		conn net.Conn
		err  error
	)
	switch t.URL.Scheme {
	case "ws", "wss":
		conn, err = dialWebSocket(ctx, t)
	case "ssl", "tls", "mqtts":
		conn, err = dialTLS(ctx, t, t.URL.Host)
	default:
		conn, err = dialTCP(ctx, t, t.URL.Host)
	}
	if err != nil && IsTimeout(err) {
		err = &timeoutError{err}
	}
	return conn, err
}

// timeoutError marks a dial that ran out of time; its text is the dial's.
type timeoutError struct{ err error }

func (e *timeoutError) Error() string        { return e.err.Error() }
func (e *timeoutError) Unwrap() error        { return e.err }
func (e *timeoutError) Is(target error) bool { return target == errs.ConnectTimeout }

// TCP opens a TCP connection to addr (host:port) from t's source, as every
// transport's first step does. The diagnosis dials each address of the
// broker with it.
func TCP(ctx context.Context, t Target, addr string) (net.Conn, error) { return dialTCP(ctx, t, addr) }

// dialTCP opens the TCP connection of every transport.
func dialTCP(ctx context.Context, t Target, addr string) (net.Conn, error) {
	network, from := "tcp", ""
	d := &net.Dialer{Control: netif.Control(t.Interface, t.IfIndex, t.UserTimeout)}
	switch {
	case t.Interface != "":
		if t.Source.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: t.Source.AsSlice(), Zone: t.Source.Zone()}
		}
		from = "interface " + t.Interface
		if t.Source.IsValid() {
			from += " (" + t.Source.String() + ")"
			network = map[bool]string{true: "tcp4", false: "tcp6"}[t.Source.Is4()]
		}
	case t.SourceIP != nil:
		d.LocalAddr = &net.TCPAddr{IP: t.SourceIP}
		from = "source address " + t.SourceIP.String()
	}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		if from != "" {
			err = classifySource(err, from)
		}
		return nil, errs.AtStep(tcpStep(t, err), fmt.Errorf("steadymqtt: %s: %w", t.URL.Redacted(), err))
	}
	return conn, nil
}

// tcpStep names the step a failed TCP dial failed at: the name, the source
// side, the route or the connection itself.
func tcpStep(t Target, err error) string {
	var (
		dns  *net.DNSError
		addr *net.AddrError
	)
	switch {
	case errors.As(err, &dns):
		return errs.StepDNS
	case errors.As(err, &addr): // "no suitable address": none of the family asked for
		return errs.StepDNS
	case errors.Is(err, errs.InterfaceNotFound):
		return errs.StepInterface
	case errors.Is(err, errs.AddressNotAssignable):
		return errs.StepAddress
	case errors.Is(err, syscall.EHOSTUNREACH):
		// A router's "host unreachable", or no neighbour answering on a
		// connected link: only the second has a route.
		if ip, ok := remoteIP(err); ok {
			if _, rerr := Route(t, ip); rerr == nil {
				return errs.StepTCP
			}
		}
		return errs.StepRoute
	case errors.Is(err, errs.NoRoute), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.EINVAL), errors.Is(err, syscall.EACCES): // blackhole, prohibit routes
		return errs.StepRoute
	}
	return errs.StepTCP
}

// remoteIP is the address a failed dial was connecting to.
func remoteIP(err error) (netip.Addr, bool) {
	var op *net.OpError
	if !errors.As(err, &op) {
		return netip.Addr{}, false
	}
	ta, ok := op.Addr.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	a, ok := netip.AddrFromSlice(ta.IP)
	return a.Unmap(), ok
}

func dialTLS(ctx context.Context, t Target, addr string) (net.Conn, error) {
	cfg, err := t.TLS.Config(t.URL.Hostname(), t.Probe) // before any packet is sent
	if err != nil {
		return nil, errs.AtStep(errs.StepTLS, fmt.Errorf("steadymqtt: %s: %w", t.URL.Redacted(), err))
	}
	conn, err := dialTCP(ctx, t, addr)
	if err != nil {
		return nil, err
	}
	return handshake(ctx, t, conn, cfg)
}

// Handshake runs the TLS handshake of t over conn, with t's TLS options,
// and classifies its failure; conn is closed when it fails. The diagnosis
// runs it over the connection its TCP step opened.
func Handshake(ctx context.Context, t Target, conn net.Conn) (*tls.Conn, error) {
	cfg, err := t.TLS.Config(t.URL.Hostname(), t.Probe)
	if err != nil {
		_ = conn.Close()
		return nil, errs.AtStep(errs.StepTLS, fmt.Errorf("steadymqtt: %s: %w", t.URL.Redacted(), err))
	}
	return handshake(ctx, t, conn, cfg)
}

func handshake(ctx context.Context, t Target, conn net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	broker := t.URL.Redacted()
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		if classified := classifyHandshake(err, t.Probe, broker); classified != nil {
			return nil, errs.AtStep(errs.StepTLS, classified)
		}
		return nil, errs.AtStep(errs.StepTLS, fmt.Errorf("steadymqtt: %s: TLS handshake: %w", broker, err))
	}
	if t.Probe != nil {
		t.Probe.version.Store(uint32(tc.ConnectionState().Version))
	}
	return tc, nil
}

// dialWebSocket opens MQTT over WebSocket. gorilla's dialer takes our TCP
// and TLS dial functions, so binding and the TLS options hold here too.
func dialWebSocket(ctx context.Context, t Target) (net.Conn, error) {
	var dialErr error // already classified and prefixed
	d := &websocket.Dialer{
		Subprotocols: []string{"mqtt"},
		NetDialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			conn, err := dialTCP(ctx, t, addr)
			dialErr = err
			return conn, err
		},
		NetDialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			conn, err := dialTLS(ctx, t, addr)
			dialErr = err
			return conn, err
		},
	}
	target := *t.URL
	target.User = nil
	if target.Path == "" {
		target.Path = "/mqtt"
	}
	broker := t.URL.Redacted()
	ws, resp, err := d.DialContext(ctx, target.String(), http.Header{})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		if dialErr != nil {
			return nil, dialErr
		}
		// A TLS 1.3 broker rejects a client certificate after the
		// handshake, so the alert comes while reading the upgrade response.
		if t.URL.Scheme == "wss" {
			if classified := AfterHandshake(err, t.Probe, broker, false); classified != nil {
				return nil, errs.AtStep(errs.StepTLS, classified)
			}
		}
		if resp != nil {
			return nil, errs.AtStep(errs.StepWebSocket, fmt.Errorf("steadymqtt: %s: WebSocket upgrade refused: %s", broker, resp.Status))
		}
		return nil, errs.AtStep(errs.StepWebSocket, fmt.Errorf("steadymqtt: %s: WebSocket: %w", broker, err))
	}
	return wsconn.New(ws), nil
}

// Socket returns the TCP connection under c, through the TLS and
// WebSocket layers Dial may have put on it.
func Socket(c net.Conn) net.Conn {
	for {
		switch v := c.(type) {
		case *tls.Conn:
			c = v.NetConn()
		case *wsconn.Conn:
			c = v.NetConn()
		default:
			return c
		}
	}
}

// IsTimeout covers both ways a dial runs out of time: the context's
// deadline, and the socket deadline the dialer derives from it.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// classifySource names what a failed dial says about the source side.
func classifySource(err error, from string) error {
	var kind error
	switch {
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		kind = errs.AddressNotAssignable
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.EINVAL), errors.Is(err, syscall.EACCES): // blackhole, prohibit routes
		kind = errs.NoRoute
	case errors.Is(err, syscall.ENODEV):
		kind = errs.InterfaceNotFound
	default:
		return err
	}
	return &errs.SourceError{Kind: kind, From: from, Err: err}
}
