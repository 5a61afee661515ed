package steadymqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"

	"github.com/gorilla/websocket"

	"github.com/steadymqtt/steadymqtt/internal/netif"
	"github.com/steadymqtt/steadymqtt/internal/wire"
	"github.com/steadymqtt/steadymqtt/internal/wsconn"
)

// openConn is paho's open-connection hook: every attempt, whatever its
// transport, goes through here, so that binding, TLS and the stream
// observer apply to all of them. paho's URL is ignored: the manager chose
// the broker of this attempt.
func (c *Client) openConn(a *attempt) (net.Conn, error) {
	if a.choiceErr != nil {
		a.mu.Lock()
		a.dialErr = a.choiceErr
		a.mu.Unlock()
		return nil, a.choiceErr
	}
	raw, err := c.dial(withAttempt(a.ctx, a), a.broker)
	if err != nil {
		a.mu.Lock()
		a.dialErr = err
		a.mu.Unlock()
		return nil, err
	}
	conn := wire.NewConn(raw, a.tracker.observe)
	if !a.setConn(conn) {
		_ = conn.Close()
		return nil, ErrClosed
	}
	return conn, nil
}

// dial opens the transport of u: TCP, TLS over TCP, or a WebSocket over
// either. Host names are resolved here, at every attempt, so a broker that
// moved is found again.
func (c *Client) dial(ctx context.Context, u *url.URL) (net.Conn, error) {
	switch u.Scheme {
	case "ws", "wss":
		return c.dialWebSocket(ctx, u)
	case "ssl", "tls", "mqtts":
		return c.dialTLS(ctx, u, u.Host)
	}
	return c.dialTCP(ctx, u, u.Host)
}

// dialTCP opens the TCP connection of every transport: bound to the
// attempt's interface and source address when there is one, with the
// kernel's TCP_USER_TIMEOUT set to the 1.5 × keepalive a broker allows.
func (c *Client) dialTCP(ctx context.Context, u *url.URL, addr string) (net.Conn, error) {
	var ch choice
	if a := attemptFrom(ctx); a != nil {
		ch = a.choice
	}
	network, from := "tcp", ""
	d := &net.Dialer{Control: netif.Control(ch.iface, ch.index, c.cfg.keepAlive*3/2)}
	switch {
	case ch.iface != "":
		d.LocalAddr = sourceAddr(ch.addr)
		from = "interface " + ch.iface
		if ch.addr.IsValid() {
			from += " (" + ch.addr.String() + ")"
			network = map[bool]string{true: "tcp4", false: "tcp6"}[ch.addr.Is4()]
		}
	case c.cfg.sourceIP != nil:
		d.LocalAddr = &net.TCPAddr{IP: c.cfg.sourceIP}
		from = "source address " + c.cfg.sourceIP.String()
	}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		if isTimeout(err) {
			err = fmt.Errorf("%w: %w", ErrConnectTimeout, err)
		}
		if from != "" {
			err = classifyDialErr(err, from)
		}
		return nil, fmt.Errorf("steadymqtt: %s: %w", u.Redacted(), err)
	}
	return conn, nil
}

func (c *Client) dialTLS(ctx context.Context, u *url.URL, addr string) (net.Conn, error) {
	cfg, err := c.tlsConfigFor(u, probeFrom(ctx))
	if err != nil {
		return nil, fmt.Errorf("steadymqtt: %s: %w", u.Redacted(), err)
	}
	conn, err := c.dialTCP(ctx, u, addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		if classified := classifyTLS(err, u.Redacted()); classified != nil {
			return nil, classified
		}
		if classified := classifyMissingCert(err, probeFrom(ctx), u.Redacted()); classified != nil {
			return nil, classified
		}
		if isTimeout(err) {
			err = fmt.Errorf("%w: %w", ErrConnectTimeout, err)
		}
		return nil, fmt.Errorf("steadymqtt: %s: TLS handshake: %w", u.Redacted(), err)
	}
	if p := probeFrom(ctx); p != nil {
		p.version.Store(uint32(tc.ConnectionState().Version))
	}
	return tc, nil
}

// dialWebSocket opens MQTT over WebSocket. paho's own WebSocket dialer
// takes no custom dialer, so it would bypass binding and the TLS options;
// this one dials through dialTCP and dialTLS.
func (c *Client) dialWebSocket(ctx context.Context, u *url.URL) (net.Conn, error) {
	var dialErr error // already classified and prefixed
	d := &websocket.Dialer{
		Subprotocols: []string{"mqtt"},
		NetDialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			conn, err := c.dialTCP(ctx, u, addr)
			dialErr = err
			return conn, err
		},
		NetDialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			conn, err := c.dialTLS(ctx, u, addr)
			dialErr = err
			return conn, err
		},
	}
	target := *u
	target.User = nil
	if target.Path == "" {
		target.Path = "/mqtt"
	}
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
		if u.Scheme == "wss" {
			if classified := classifyTLS(err, u.Redacted()); classified != nil {
				return nil, classified
			}
			if classified := classifyCertRejection(err, probeFrom(ctx), u.Redacted(), false); classified != nil {
				return nil, classified
			}
		}
		if resp != nil {
			return nil, fmt.Errorf("steadymqtt: %s: WebSocket upgrade refused: %s", u.Redacted(), resp.Status)
		}
		if isTimeout(err) && !errors.Is(err, ErrConnectTimeout) {
			err = fmt.Errorf("%w: %w", ErrConnectTimeout, err)
		}
		return nil, fmt.Errorf("steadymqtt: %s: WebSocket: %w", u.Redacted(), err)
	}
	return wsconn.New(ws), nil
}

// isTimeout covers both ways a dial runs out of time: the context's
// deadline, and the socket deadline the dialer derives from it.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}
