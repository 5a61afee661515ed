// Package wsconn presents a WebSocket as a net.Conn carrying MQTT: binary
// messages in, one message per Write out (MQTT over WebSocket, MQTT 3.1.1
// section 6).
package wsconn

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Conn is a net.Conn over a WebSocket.
type Conn struct {
	ws  *websocket.Conn
	rmu sync.Mutex
	r   io.Reader // the message being read, nil between messages
	wmu sync.Mutex
}

// New wraps an established WebSocket.
func New(ws *websocket.Conn) *Conn { return &Conn{ws: ws} }

// Read reads across message boundaries: MQTT packets may span or share
// WebSocket messages.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, errors.New("wsconn: broker sent a non-binary WebSocket message")
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

// Write sends p as one binary message.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close closes the underlying connection without the closing handshake,
// which a dead link could not complete anyway.
func (c *Conn) Close() error { return c.ws.Close() }

func (c *Conn) LocalAddr() net.Addr  { return c.ws.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }

func (c *Conn) SetDeadline(t time.Time) error {
	return errors.Join(c.ws.SetReadDeadline(t), c.ws.SetWriteDeadline(t))
}
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }

// NetConn is the connection the WebSocket runs over.
func (c *Conn) NetConn() net.Conn { return c.ws.NetConn() }
