package steadymqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// openConn is paho's open-connection hook: every attempt, whatever its
// transport, goes through here, so that binding, TLS and the stream
// observer apply to all of them. paho's URL is ignored: the manager chose
// the broker of this attempt.
func (c *Client) openConn(_ *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
	a := c.currentAttempt()
	if a == nil {
		return nil, errors.New("steadymqtt: dial outside of an attempt")
	}
	a.mu.Lock()
	a.hook = true
	a.mu.Unlock()
	raw, err := c.dial(a.ctx, a.broker)
	if err != nil {
		a.mu.Lock()
		a.dialErr = err
		a.mu.Unlock()
		return nil, err
	}
	conn := wire.NewConn(raw, nil)
	if !a.setConn(conn) {
		_ = conn.Close()
		return nil, ErrClosed
	}
	return conn, nil
}

// dial opens the transport of u. Host names are resolved here, at every
// attempt, so a broker that moved is found again.
func (c *Client) dial(ctx context.Context, u *url.URL) (net.Conn, error) {
	d := &net.Dialer{}
	if ip := c.cfg.sourceIP; ip != nil {
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: %w", ErrConnectTimeout, err)
		}
		return nil, fmt.Errorf("steadymqtt: %s: %w", u.Redacted(), err)
	}
	if !isTLS(u) {
		return conn, nil
	}
	tc := tls.Client(conn, c.tlsConfigFor(u))
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("steadymqtt: %s: TLS handshake: %w", u.Redacted(), err)
	}
	return tc, nil
}
