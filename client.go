package steadymqtt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/steadymqtt/steadymqtt/internal/bus"
	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/engine/paho5"
	"github.com/steadymqtt/steadymqtt/internal/manager"
	"github.com/steadymqtt/steadymqtt/internal/netpick"
	"github.com/steadymqtt/steadymqtt/internal/outbox"
	"github.com/steadymqtt/steadymqtt/internal/sender"
	"github.com/steadymqtt/steadymqtt/internal/subs"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// Client keeps one MQTT connection alive. It is safe for concurrent use.
//
// A Client owns exactly one retry loop (paho's own reconnect is off), one
// state machine, and the dial path of every attempt.
type Client struct {
	cfg    *config
	log    *zap.Logger
	m      *machine
	bus    *bus.Bus[Event]
	subs   *subs.Registry
	outbox *outbox.Outbox
	sender *sender.Sender
	picker *netpick.Picker
	stats  counters

	salvaged error       // what WithOutboxSalvage did at New, reported once Connect starts
	wasUp    atomic.Bool // a connection was up before: a session could have been kept

	v5      *paho5.Engine   // MQTT 5 and its session state; nil with ProtocolV311
	learned manager.Learned // brokers that refused MQTT 5

	liveMu sync.Mutex
	live   engine.Session // the session that is up, nil when none

	lifeMu   sync.Mutex
	started  bool
	closed   bool
	stop     context.Context // ended by Close: the manager stops
	halt     context.CancelFunc
	done     chan struct{} // closed when the manager has returned
	closeCtx context.Context
	unsent   int // set before done is closed
}

// New validates the options and builds a client. It does no network I/O.
func New(opts ...Option) (*Client, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	policy := outbox.Reject
	if cfg.dropOldest {
		policy = outbox.DropOldest
	}
	ob, err := outbox.Open(outbox.Config{
		MaxCount: cfg.outboxCount, MaxBytes: cfg.outboxBytes, Policy: policy,
		KeyWindow: cfg.keyWindow, KeyCount: cfg.keyCount, Dir: cfg.outboxDir, Now: cfg.clock.Now,
		Salvage: cfg.outboxSalvage,
	})
	switch {
	case errors.Is(err, ErrOutboxCorrupt), errors.Is(err, ErrOutboxLocked):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("%w: WithDurableOutbox: %w", ErrInvalidOption, err)
	}
	c := &Client{
		cfg:    cfg,
		log:    cfg.logger.With(zap.String("client_id", cfg.clientID)),
		outbox: ob,
		done:   make(chan struct{}),
	}
	if cfg.tls.Insecure {
		c.log.Warn("TLS certificate verification is OFF (WithInsecureSkipVerify): the broker is not authenticated")
	}
	c.stop, c.halt = context.WithCancel(context.Background())
	c.bus = bus.New[Event](cfg.eventBuffer, func(r any) {
		c.log.Error("event subscriber panicked; it keeps receiving", zap.Any("panic", r), zap.Stack("stack"))
	})
	c.m = newMachine(c.bus.Publish)
	if s := ob.Salvaged(); s != nil {
		c.salvaged = fmt.Errorf("%w: moved aside to %s; %d messages recovered, %s lost, %d idempotency keys lost: %w",
			ErrOutboxCorrupt, s.Damaged, s.Recovered, lostCount(s.Lost), s.LostKeys, s.Cause)
		c.log.Error("durable outbox was damaged and salvaged", zap.String("damaged_file", s.Damaged),
			zap.Int("recovered", s.Recovered), zap.Int("lost", s.Lost), zap.Int("lost_keys", s.LostKeys), zap.Error(s.Cause))
	}
	if n := ob.Len(); n > 0 {
		c.log.Info("durable outbox: messages recovered from disk; they are sent once connected",
			zap.String("dir", cfg.outboxDir), zap.Int("messages", n), zap.Int("bytes", ob.Bytes()))
	}
	if cfg.protocol != ProtocolV311 {
		c.v5 = paho5.New()
	}
	c.subs = subs.New(c.subsConfig())
	c.sender = sender.New(c.senderConfig())
	c.picker = netpick.New(cfg.pickConfig())
	return c, nil
}

func lostCount(n int) string {
	if n < 0 {
		return "an unknown number"
	}
	return fmt.Sprint(n)
}

// ClientID returns the MQTT client identifier in use.
func (c *Client) ClientID() string { return c.cfg.clientID }

// State returns the current connection state.
func (c *Client) State() State { return c.m.current() }

// Connect starts the connection manager (once) and waits until the client
// is connected or ctx ends. If ctx ends first, the error wraps both ctx's
// error and the last connection error (errors.Is works on either), and the
// manager keeps trying in the background until Close.
func (c *Client) Connect(ctx context.Context) error {
	c.lifeMu.Lock()
	if c.closed {
		c.lifeMu.Unlock()
		return ErrClosed
	}
	if !c.started {
		c.started = true
		// Logging is a subscriber like any other, so a slow log sink can
		// never hold up a state change or a Health call; a logger that
		// writes nothing (the default) costs no subscriber at all.
		if c.log.Core().Enabled(zapcore.WarnLevel) {
			c.bus.Subscribe(c.logEvent, nil)
		}
		c.m.begin()
		if c.salvaged != nil {
			c.m.notice(KindOutboxSalvaged, c.salvaged, "", "")
		}
		mgr := manager.New(c.managerConfig(), c.managerHooks(), c.stop)
		go func() { c.finish(mgr.Run()) }()
	}
	c.lifeMu.Unlock()

	for {
		st, changed, lastErr := c.m.snapshot()
		switch {
		case st.Up():
			return nil
		case st == StateClosed:
			if errors.Is(lastErr, ErrGaveUp) {
				return lastErr
			}
			return ErrClosed
		}
		select {
		case <-changed:
		case <-ctx.Done():
			_, _, lastErr = c.m.snapshot()
			if lastErr == nil {
				return fmt.Errorf("steadymqtt: connect: %w", ctx.Err())
			}
			return fmt.Errorf("steadymqtt: connect: %w; last attempt: %w", ctx.Err(), lastErr)
		}
	}
}

// Close stops the client:
//
//   - it refuses new work: Publish and Subscribe return ErrClosed;
//   - it flushes: the outbox keeps being sent while ctx allows (5 s when
//     ctx has no deadline), and a Publish waiting for its acknowledgement
//     still gets it;
//   - it publishes the "offline" presence message (WithPresence) and sends
//     DISCONNECT if connected, so the broker does not publish the will;
//   - it delivers the final StateClosed event to subscribers (giving them
//     at most 2 s) and stops every goroutine it started.
//
// It waits for all that until ctx ends, and returns ctx's error if it had
// to stop waiting; the shutdown still completes in the background. When
// messages were left in the outbox the error is a *CloseError with their
// count and whether they are on disk for the next start (it matches
// ErrNotDelivered); their Publish calls return ErrNotDelivered. Calling
// Close again is harmless. It may be called from an event callback.
func (c *Client) Close(ctx context.Context) error {
	c.lifeMu.Lock()
	first := !c.closed
	c.closed = true
	started := c.started
	if first {
		c.closeCtx = ctx
	}
	c.lifeMu.Unlock()

	if first {
		c.halt()
		if !started {
			go c.finish(nil)
		}
	}
	select {
	case <-c.done:
		if n := c.unsent; n > 0 {
			return &CloseError{NotDelivered: n, Durable: c.outbox.Durable()}
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("steadymqtt: close: %w (the client goes on stopping in the background)", ctx.Err())
	}
}

// drainTimeout bounds how long the final events may take to reach
// subscribers. It is not the caller's context: a Close whose context is
// already over, or one called from an event callback (whose own delivery
// cannot finish before Close returns), must still end every goroutine.
const drainTimeout = 2 * time.Second

// finish is the end of every client: the final state, the last events
// delivered (within drainTimeout), then done.
func (c *Client) finish(final error) {
	c.lifeMu.Lock()
	c.closed = true // also after giving up: Publish and Subscribe say ErrClosed
	c.lifeMu.Unlock()
	c.m.close(final)
	if c.v5 != nil {
		// Messages an MQTT 5 session kept for a next connection go back to
		// the outbox first, to be reported (and kept on disk) with the rest.
		_ = c.v5.Close()
		c.sender.Wait()
	}
	unsent, err := c.outbox.Close(fmt.Errorf("%w: the client closed first", ErrNotDelivered))
	if err != nil {
		c.log.Error("closing the durable outbox", zap.Error(err))
	}
	for q, n := range unsent {
		c.unsent += n
		if !c.outbox.Durable() {
			c.stats.failed[q].Add(uint64(n))
		}
	}
	c.subs.Stop(drainTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	if err := c.bus.Close(ctx); err != nil {
		c.log.Warn("event subscribers still busy at close; their pending events were dropped", zap.Error(err))
	}
	cancel()
	close(c.done)
}

func (c *Client) isClosed() bool {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	return c.closed
}

// liveSession is the session of the connection that is up, or nil.
func (c *Client) liveSession() engine.Session {
	c.liveMu.Lock()
	defer c.liveMu.Unlock()
	return c.live
}

// managerConfig and managerHooks wire the connection manager to the
// client's stages: the manager decides when, the client's state machine
// says what it means.
func (c *Client) managerConfig() manager.Config {
	mc := c.cfg.dialConfig()
	mc.Picker, mc.OnMessage, mc.Learned = c.picker, c.subs.Route, &c.learned
	if c.v5 != nil {
		mc.EngineV5 = c.v5
	}
	return mc
}

func (c *Client) managerHooks() manager.Hooks {
	h := manager.Hooks{
		Attempt: func(broker, iface string) uint64 {
			c.stats.attempts.Add(1)
			return c.m.newAttempt(broker, iface)
		},
		Failed:  c.m.failed,
		Up:      c.up,
		Lost:    c.m.lost,
		Degrade: c.m.degrade,
		Live: func(s engine.Session) {
			c.liveMu.Lock()
			c.live = s
			c.liveMu.Unlock()
		},
		Restore: c.subs.Sync,
		Serve:   c.sender.Run,
		Flush:   c.sender.Flush,
		CloseContext: func() context.Context {
			c.lifeMu.Lock()
			defer c.lifeMu.Unlock()
			return c.closeCtx
		},
	}
	if c.cfg.presence != "" {
		h.Announce, h.Farewell = c.announce, c.farewell
	}
	return h
}

// up is the manager's report of a connection that is ready. A persistent
// session the broker no longer has is worth an event of its own: the
// messages it would have queued while the client was away are gone.
func (c *Client) up(epoch uint64, conn *wire.Conn, sessionPresent bool) {
	proto := ProtocolV311
	if s := c.liveSession(); s != nil && s.Version() == 5 {
		proto = ProtocolV5
	}
	if !c.m.up(epoch, conn, sessionPresent, proto) {
		return
	}
	again := c.wasUp.Swap(true)
	if again {
		c.stats.reconnects.Add(1)
	}
	if again && !c.cfg.cleanSession && !sessionPresent {
		c.m.notice(KindSessionLost, errors.New("steadymqtt: the broker had no session for this client; subscriptions were made again, and messages queued for it while it was away are lost"), "", "")
	}
}

func (c *Client) subsConfig() subs.Config {
	return subs.Config{
		Backlog: c.cfg.handlerBacklog, RestoreTimeout: c.cfg.connectTimeout,
		Received: func() { c.stats.received.Add(1) },
		Unrouted: func() { c.stats.unrouted.Add(1) },
		Overflow: func(filter, topicName string) {
			c.stats.handlerDrops.Add(1)
			c.m.notice(KindHandlerOverflow, fmt.Errorf("steadymqtt: handler of %q is %d messages behind; message dropped",
				filter, c.cfg.handlerBacklog), topicName, "")
		},
		Panicked: func(filter string, r any) {
			c.log.Error("message handler panicked; the subscription goes on", zap.String("filter", filter), zap.Any("panic", r))
		},
		Warn: func(msg string, filters []string, err error) {
			c.log.Warn(msg, zap.Strings("filters", filters), zap.Error(err))
		},
	}
}

func (c *Client) senderConfig() sender.Config {
	return sender.Config{
		Outbox: c.outbox, InFlight: c.cfg.inFlight, PoisonAfter: c.cfg.poisonAfter, Envelope: c.cfg.envelope,
		Refused: func(e *outbox.Entry, err error) {
			c.stats.failed[e.QoS].Add(1)
			c.log.Warn("broker refused a message", zap.String("topic", e.Topic), zap.Error(err))
		},
		Acked:       func(qos byte) { c.stats.acknowledged[qos].Add(1) },
		Redelivered: func() { c.stats.redelivered.Add(1) },
		Poisoned: func(e *outbox.Entry, err error) {
			c.stats.dropped[e.QoS].Add(1)
			c.m.notice(KindPoisonMessage, err, e.Topic, e.Key)
		},
		Unconfirmed: func(e *outbox.Entry) {
			c.log.Warn("publish completed without an acknowledgement on the wire; sent again after the next reconnect",
				zap.String("topic", e.Topic))
		},
		StoreFailed: func(what string, err error) { c.log.Error("durable outbox: "+what, zap.Error(err)) },
	}
}

func (c *Client) logEvent(ev Event, dropped int, _ <-chan struct{}) bool {
	fields := []zap.Field{
		zap.Stringer("from", ev.From), zap.Stringer("to", ev.To),
		zap.String("broker", ev.Broker), zap.Int("attempt", ev.Attempt),
	}
	if dropped > 0 {
		fields = append(fields, zap.Int("coalesced", dropped))
	}
	if ev.Delay > 0 {
		fields = append(fields, zap.Duration("next_attempt_in", ev.Delay))
	}
	if ev.Kind != KindState {
		fields = append(fields, zap.Stringer("kind", ev.Kind), zap.String("topic", ev.Topic))
	}
	if ev.Err != nil {
		c.log.Warn("mqtt connection", append(fields, zap.Error(ev.Err))...)
		return true
	}
	c.log.Info("mqtt connection", fields...)
	return true
}
