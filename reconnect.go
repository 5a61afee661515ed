package steadymqtt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// The connection manager: the one retry loop of a Client.
//
// One attempt: pick the next broker URL → open an epoch → paho.Connect,
// whose dial hook (dial.go) opens and wraps the socket → on CONNACK accepted,
// the state becomes connected and the keepalive monitor (health.go) watches
// the socket until it is lost → wait the backoff → next attempt.

// attempt is one connection attempt, shared with the dial hook that paho
// calls on its own goroutine.
type attempt struct {
	epoch  uint64
	broker *url.URL
	ctx    context.Context
	cancel context.CancelFunc

	probe     *certProbe  // what a TLS broker asked of our certificate
	tracker   *ackTracker // acknowledgements seen on this attempt's connection
	choice    choice      // the interface and source address, with WithInterfaces
	choiceErr error       // why none could be chosen

	// Each attempt has a paho client of its own: nothing of an old
	// connection (a hand-off blocked in paho, message identifiers paho
	// never released, a late callback) can reach the next one.
	paho mqtt.Client
	lost chan error // paho's connection-lost report, at most one

	mu      sync.Mutex
	conn    *wire.Conn
	dialErr error
	aborted bool
}

// setConn records the attempt's socket; false if the attempt was aborted.
func (a *attempt) setConn(conn *wire.Conn) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.aborted {
		return false
	}
	a.conn = conn
	return true
}

// abort makes a dial or MQTT handshake in progress fail now.
func (a *attempt) abort() {
	a.cancel()
	a.mu.Lock()
	a.aborted = true
	conn := a.conn
	a.mu.Unlock()
	if conn != nil {
		_ = conn.CloseWithError(ErrClosed)
	}
}

type attemptKey struct{}

// withAttempt lets the dial functions, called through paho and the
// WebSocket dialer, find the attempt they serve.
func withAttempt(ctx context.Context, a *attempt) context.Context {
	return context.WithValue(ctx, attemptKey{}, a)
}

func attemptFrom(ctx context.Context) *attempt {
	a, _ := ctx.Value(attemptKey{}).(*attempt)
	return a
}

func (c *Client) pahoOptions(a *attempt) *mqtt.ClientOptions {
	o := mqtt.NewClientOptions()
	// paho wants a server list; which broker an attempt really dials is the
	// manager's choice, made in the dial hook. Credentials stay out of it.
	first := *c.cfg.brokers[0]
	first.User = nil
	o.AddBroker(first.String())
	o.SetClientID(c.cfg.clientID)
	o.SetCleanSession(c.cfg.cleanSession)
	o.SetProtocolVersion(4) // no silent fallback to 3.1, which doubles every refused attempt
	o.SetKeepAlive(c.cfg.keepAlive)
	o.SetPingTimeout(c.cfg.keepAlive) // a fallback only; the monitor drops a silent link first
	o.SetConnectTimeout(c.cfg.connectTimeout)
	o.SetAutoReconnect(false) // one retry loop: ours (paho #509, #675)
	o.SetConnectRetry(false)
	o.SetResumeSubs(false)
	// Every message goes to route, in order, which only queues it for the
	// subscription's own worker and acknowledges it: handlers stay off
	// paho's receive path (paho #208).
	o.SetOrderMatters(true)
	o.SetDefaultPublishHandler(c.route)
	o.SetAutoAckDisabled(true)
	// paho keeps no copy of outgoing messages: the outbox resends what was
	// not acknowledged, so paho's own resend on resume would send it twice.
	o.SetStore(nopStore{})
	// paho waits this long to hand a packet to its writer; a hand-off must
	// not outlive a dead connection by much. paho also sets it as a write
	// deadline, which wire.Conn ignores: the keepalive monitor judges a slow
	// uplink by its progress instead.
	o.SetWriteTimeout(handoffTimeout)
	o.SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) { return c.openConn(a) })
	o.SetCredentialsProvider(func() (string, string) { return c.credentials(a) })
	o.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		select {
		case a.lost <- err:
		default:
		}
	})
	if w := c.cfg.will; w != nil {
		o.SetBinaryWill(w.topic, w.payload, w.qos, w.retained)
	}
	return o
}

// instantRetryAfter is how long a connection must have lasted for its loss
// to a local network change to be retried without a backoff wait.
const instantRetryAfter = time.Second

// handoffTimeout bounds how long paho may take to accept a packet for
// writing.
const handoffTimeout = time.Second

// credentials are read by paho for each CONNECT; user information in the
// broker URL of the attempt wins over WithCredentials.
func (c *Client) credentials(a *attempt) (string, string) {
	if a.broker.User != nil {
		p, _ := a.broker.User.Password()
		return a.broker.User.Username(), p
	}
	return c.cfg.username, c.cfg.password
}

func (c *Client) run() {
	var final error
	defer func() { c.finish(final) }()
	for i := 0; ; i++ {
		a := c.newAttempt(c.cfg.brokers[i%len(c.cfg.brokers)])
		upAt, err, stopped := c.attemptAndHold(a)
		if stopped {
			break
		}
		delay, ok := c.delayAfter(err, upAt)
		if upAt.IsZero() { // failed, or lost while its subscriptions were being restored
			c.failOver(a)
			if ok {
				c.m.failed(a.epoch, err, delay)
			}
		} else {
			c.m.lost(a.epoch, err, delay)
		}
		if !ok {
			final = fmt.Errorf("%w: %w", ErrGaveUp, err)
			break
		}
		if !c.sleep(delay) {
			break
		}
	}
}

// attemptAndHold makes one attempt and, if it connects, holds the
// connection until it is lost (err) or Close is called (stopped). upAt is
// when "connected" was announced, zero if it never was.
func (c *Client) attemptAndHold(a *attempt) (upAt time.Time, err error, stopped bool) {
	conn, sessionPresent, err := c.connectOnce(a)
	if c.stopping() {
		if err == nil {
			c.disconnect(a, conn)
		}
		return time.Time{}, nil, true
	}
	if err != nil {
		return time.Time{}, err, false
	}
	upAt, err, stopped = c.hold(a, conn, sessionPresent)
	if stopped {
		c.disconnect(a, conn)
	}
	return upAt, err, stopped
}

// delayAfter is the wait before the next attempt; false when the backoff
// gave up.
func (c *Client) delayAfter(err error, upAt time.Time) (time.Duration, bool) {
	if !upAt.IsZero() {
		// Only a connection that proved stable earns a fresh backoff; a
		// broker that kicks the client right after CONNACK must meet
		// growing delays, not a tight loop.
		if time.Since(upAt) >= c.cfg.stableAfter {
			c.cfg.backoff.Reset()
		}
		// A connection dropped because the local network changed (the
		// interface or address went away, or a fail-back) is not the
		// broker's doing: the next attempt goes at once, elsewhere; unless
		// the change keeps coming right after connecting.
		if errors.Is(err, ErrNetworkChanged) && time.Since(upAt) >= instantRetryAfter {
			return 0, true
		}
	}
	return c.nextDelay()
}

// failOver moves to the next interface once every broker failed from the
// current one, so that each broker is tried from each interface.
func (c *Client) failOver(a *attempt) {
	if a.choiceErr != nil || len(c.cfg.interfaces) == 0 {
		return
	}
	c.failbackResult(a.choice.pos, false)
	if c.ifaceFails++; c.ifaceFails >= len(c.cfg.brokers) {
		c.ifaceFails = 0
		c.ifacePos.Store(int32((a.choice.pos + 1) % len(c.cfg.interfaces)))
	}
}

func (c *Client) newAttempt(broker *url.URL) *attempt {
	a := &attempt{broker: broker, probe: &certProbe{}, tracker: newAckTracker()}
	if len(c.cfg.interfaces) > 0 {
		a.choice, a.choiceErr = chooseInterface(c.cfg.netSource, c.cfg.interfaces, int(c.ifacePos.Load()), c.cfg.family)
	}
	a.epoch = c.m.newAttempt(broker.Redacted(), a.choice.iface)
	a.ctx, a.cancel = context.WithTimeout(c.stopCtx, c.cfg.connectTimeout)
	a.lost = make(chan error, 1)
	a.paho = mqtt.NewClient(c.pahoOptions(a))
	return a
}

// connectOnce runs one paho Connect through our dial hook.
func (c *Client) connectOnce(a *attempt) (*wire.Conn, bool, error) {
	defer a.cancel()
	tok := a.paho.Connect()
	select {
	case <-tok.Done():
	case <-c.stop:
		a.abort()
		<-tok.Done() // bounded: the socket is closed and the dial cancelled
	}
	ct := tok.(*mqtt.ConnectToken)
	if err := tok.Error(); err != nil {
		return nil, false, c.attemptError(a, ct, err)
	}
	return a.conn, ct.SessionPresent(), nil
}

func (c *Client) attemptError(a *attempt, tok *mqtt.ConnectToken, err error) error {
	broker := a.broker.Redacted()
	a.mu.Lock()
	dialErr, conn := a.dialErr, a.conn
	a.mu.Unlock()
	switch rc := tok.ReturnCode(); {
	case dialErr != nil:
		return dialErr
	case rc >= 1 && rc <= 5:
		return &ConnectRefusedError{Code: rc, Broker: broker}
	case isTLS(a.broker) && classifyTLS(err, broker) != nil:
		// TLS 1.3 brokers reject a client certificate only after the
		// client's side of the handshake is done: the alert arrives
		// where paho waits for CONNACK.
		return classifyTLS(err, broker)
	case isTLS(a.broker) && classifyCertRejection(err, a.probe, broker, receivedAny(conn)) != nil:
		return classifyCertRejection(err, a.probe, broker, receivedAny(conn))
	case conn != nil && conn.Cause() != nil:
		return fmt.Errorf("steadymqtt: %s: %w", broker, conn.Cause())
	case isTimeout(err):
		return fmt.Errorf("%w: %s: no CONNACK within %v", ErrConnectTimeout, broker, c.cfg.connectTimeout)
	}
	return fmt.Errorf("steadymqtt: %s: MQTT handshake failed: %w", broker, err)
}

func receivedAny(conn *wire.Conn) bool { return conn != nil && conn.Stats().BytesIn > 0 }

// hold runs a connection from CONNACK to its loss or to Close. The
// keepalive monitor starts at once; the state becomes connected only once
// the subscriptions are in place, so that "connected" means messages flow.
// upAt is zero if the connection was lost before that.
func (c *Client) hold(a *attempt, conn *wire.Conn, sessionPresent bool) (upAt time.Time, lossErr error, stopped bool) {
	if len(c.cfg.interfaces) > 0 {
		c.ifacePos.Store(int32(a.choice.pos)) // stay where it works
		c.ifaceFails = 0
		c.failbackResult(a.choice.pos, true)
	}
	l := &link{conn: conn, tracker: a.tracker, paho: a.paho, end: make(chan struct{})}
	c.setLive(a.paho)
	defer c.setLive(nil)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.monitor(a.epoch, conn, l.end)
	}()
	if len(c.cfg.interfaces) > 0 || c.cfg.sourceIP != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.watchNetwork(a.choice, conn, l.end)
		}()
	}
	defer func() {
		close(l.end)
		wg.Wait()
	}()

	c.syncSubscriptions(a.paho, sessionPresent && !c.cfg.cleanSession)
	select {
	case <-conn.Done():
	default:
		c.m.up(a.epoch, conn)
		upAt = time.Now()
		// Whatever was registered while the first sync ran.
		c.syncSubscriptions(a.paho, true)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.send(l)
		}()
	}
	for {
		select {
		case <-c.stop:
			ctx, cancel := c.closeContext()
			c.flush(ctx, l)
			cancel()
			return upAt, nil, true
		case err := <-a.lost:
			if cause := conn.Cause(); cause != nil {
				err = cause
			}
			return upAt, fmt.Errorf("steadymqtt: connection to %s lost: %w", c.Health().Broker, err), false
		}
	}
}

// closeContext is Close's context, bounded to flushTimeout when it has no
// deadline, so that a broker that never acknowledges cannot hold Close.
func (c *Client) closeContext() (context.Context, context.CancelFunc) {
	c.lifeMu.Lock()
	ctx := c.closeCtx
	c.lifeMu.Unlock()
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, flushTimeout)
}

// flushTimeout bounds how long Close without a deadline waits for the
// outbox to drain.
const flushTimeout = 5 * time.Second

// disconnect sends DISCONNECT within what Close's context allows.
func (c *Client) disconnect(a *attempt, conn *wire.Conn) {
	c.lifeMu.Lock()
	ctx := c.closeCtx
	c.lifeMu.Unlock()
	quiesce := time.Second
	if ctx != nil {
		if dl, ok := ctx.Deadline(); ok {
			quiesce = min(max(time.Until(dl)/2, 0), 5*time.Second)
		}
	}
	a.paho.Disconnect(uint(quiesce / time.Millisecond))
	// paho may return before its teardown closed the socket.
	select {
	case <-conn.Done():
	case <-time.After(quiesce + time.Second):
		_ = conn.Close()
	}
}

func (c *Client) nextDelay() (time.Duration, bool) {
	d := c.cfg.backoff.NextBackOff()
	if d == backoff.Stop {
		return 0, false
	}
	return max(d, 0), true
}

func (c *Client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.stop:
		return false
	}
}

func (c *Client) stopping() bool {
	select {
	case <-c.stop:
		return true
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
