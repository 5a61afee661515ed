package steadymqtt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"go.uber.org/zap"

	"github.com/steadymqtt/steadymqtt/internal/bus"
	"github.com/steadymqtt/steadymqtt/internal/outbox"
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
	subs   *registry
	outbox *outbox.Outbox
	stats  counters

	// live is the paho client of the connection that is up, nil when none.
	liveMu sync.Mutex
	live   mqtt.Client
	// ifacePos is where the next attempt starts in the interface
	// preference list; only the manager and its watcher touch it.
	ifacePos   atomic.Int32
	ifaceFails int // failed attempts on ifacePos since it was chosen (manager only)
	// failingBack is the position a fail-back is moving to, -1 if none;
	// failbackMisses counts fail-backs to a position that failed in a row.
	failingBack    atomic.Int32
	failbackMu     sync.Mutex
	failbackMisses map[int]int

	lifeMu   sync.Mutex
	started  bool
	closed   bool
	stop     chan struct{} // closed by Close
	stopCtx  context.Context
	cancel   context.CancelFunc
	done     chan struct{} // closed when the manager has returned
	closeCtx context.Context
	unsent   int // set before done is closed
}

// New validates the options and builds a client. It does no network I/O.
func New(opts ...Option) (*Client, error) {
	cfg := defaultConfig()
	var errs []error
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(cfg); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	policy := outbox.Reject
	if cfg.dropOldest {
		policy = outbox.DropOldest
	}
	ob, err := outbox.Open(outbox.Config{
		MaxCount: cfg.outboxCount, MaxBytes: cfg.outboxBytes, Policy: policy,
		KeyWindow: cfg.keyWindow, KeyCount: cfg.keyCount, Dir: cfg.outboxDir,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: WithDurableOutbox: %w", ErrInvalidOption, err)
	}
	c := &Client{
		cfg:    cfg,
		log:    cfg.logger.With(zap.String("client_id", cfg.clientID)),
		subs:   newRegistry(),
		outbox: ob,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	c.failingBack.Store(-1)
	c.failbackMisses = make(map[int]int)
	c.stopCtx, c.cancel = context.WithCancel(context.Background())
	c.bus = bus.New[Event](cfg.eventBuffer, func(r any) {
		c.log.Error("event subscriber panicked; it keeps receiving", zap.Any("panic", r), zap.Stack("stack"))
	})
	c.m = newMachine(c.bus.Publish)
	return c, nil
}

func (c *Client) setLive(p mqtt.Client) {
	c.liveMu.Lock()
	c.live = p
	c.liveMu.Unlock()
}

// livePaho returns the paho client of the live connection, or nil.
func (c *Client) livePaho() mqtt.Client {
	c.liveMu.Lock()
	defer c.liveMu.Unlock()
	return c.live
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
		// never hold up a state change or a Health call.
		c.bus.Subscribe(c.logEvent, nil)
		c.m.begin()
		go c.run()
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

// Close stops the client: it refuses new work (ErrClosed), sends DISCONNECT
// if connected, delivers the final StateClosed event to subscribers (giving
// them at most 2 s), and stops every goroutine it started. It waits for all
// that until ctx ends, and returns ctx's error if it had to stop waiting;
// the shutdown still completes in the background. Calling it again is
// harmless. It may be called from an event callback.
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
		close(c.stop)
		c.cancel()
		if !started {
			go c.finish(nil)
		}
	}
	select {
	case <-c.done:
		if n := c.unsent; n > 0 {
			where := "lost"
			if c.outbox.Durable() {
				where = "kept in the durable outbox for the next start"
			}
			return fmt.Errorf("%w: close: %d messages not acknowledged (%s)", ErrNotDelivered, n, where)
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
	unsent, err := c.outbox.Close(fmt.Errorf("%w: the client closed first", ErrNotDelivered))
	if err != nil {
		c.log.Error("closing the durable outbox", zap.Error(err))
	}
	c.unsent = unsent
	c.subs.stop(drainTimeout)
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
	if ev.Err != nil {
		c.log.Warn("mqtt connection", append(fields, zap.Error(ev.Err))...)
		return true
	}
	c.log.Info("mqtt connection", fields...)
	return true
}
