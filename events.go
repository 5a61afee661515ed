package steadymqtt

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// EventKind tells what an Event reports.
type EventKind int

const (
	// KindState is a change of state, or a failed attempt (From == To).
	KindState EventKind = iota
	// KindMessageDropped: a message left a full outbox for a newer one
	// (WithDropOldest); Topic and Key name it.
	KindMessageDropped
	// KindPoisonMessage: a message was taken out of the outbox because the
	// broker closed the connection after each send; Err says more.
	KindPoisonMessage
	// KindHandlerOverflow: a received message was not handed to a
	// subscription's handler because its backlog was full; Topic names it.
	KindHandlerOverflow
	// KindSessionLost: a client with a persistent session
	// (WithCleanSession(false)) reconnected and the broker had no session
	// for it: subscriptions were made again, and what the broker would have
	// queued for the client while it was away is gone.
	KindSessionLost
	// KindOutboxSalvaged: the durable outbox was damaged and, with
	// WithOutboxSalvage, moved aside; Err says where it is now and how many
	// messages were recovered and lost. Delivered once, right after
	// Connect starts.
	KindOutboxSalvaged
)

var kindNames = [...]string{"state", "message-dropped", "poison-message", "handler-overflow", "session-lost", "outbox-salvaged"}

// String names the kind: "state", "message-dropped", "poison-message",
// "handler-overflow", "session-lost", "outbox-salvaged".
func (k EventKind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is one change of the client's state, one failed attempt (then
// From == To and Err says why), or, with a Kind other than KindState, a
// message the client could not deliver (From == To). Events of one client
// have strictly increasing Seq.
type Event struct {
	Seq      uint64 // strictly increasing per client
	Time     time.Time
	From, To State
	// Err says why: set on transitions caused by a failure (a lost
	// connection, a failed attempt, a degraded link) and on closing by
	// giving up.
	Err error
	// Step is the connection step Err happened at (StepTCP, StepTLS,
	// StepConnect, StepSubscribe, ...), "" when Err is not a connection
	// error.
	Step string
	// Attempt counts consecutive failed attempts since the last success:
	// on a failed attempt, including that one; on entering StateConnected,
	// the failures that preceded this success.
	Attempt int
	// Delay is the wait before the next attempt, on entering
	// StateReconnecting and on every failed attempt.
	Delay     time.Duration
	Broker    string // broker URL in use or last tried, credentials redacted
	Interface string // network interface in use when bound to one
	// Dropped counts the events this subscriber missed just before this one
	// because it was slow; they were coalesced away.
	Dropped int

	// SessionPresent is the CONNACK's session-present flag, on events that
	// enter or stay in a connected state.
	SessionPresent bool

	Kind  EventKind // KindState unless the event is about a message
	Topic string    // the message's topic, for message events
	Key   string    // the message's idempotency key, for message events
}

// OnStateChange calls fn with every change of state and every failed
// attempt (Kind == KindState), in order, on a goroutine of its own for this
// subscriber: a slow fn delays nobody else, and if it lags the oldest
// pending events are coalesced (Event.Dropped) so that it always gets the
// latest. A panic in fn is recovered and logged; fn keeps receiving.
// cancel stops the deliveries; it does not wait for a call in progress and
// may be called from fn. Message events (dropped, poison, handler
// overflow) go to OnEvent and Watch.
//
// Subscribe before Connect to see every event.
func (c *Client) OnStateChange(fn func(Event)) (cancel func()) {
	// Filtered before the mailbox: a storm of message events can neither
	// push a state change out nor count as missed.
	return c.subscribeEvents(func(ev Event) bool { return ev.Kind == KindState }, fn)
}

// OnEvent is OnStateChange for events of every kind: state changes and
// failed attempts, and the messages the client could not deliver
// (KindMessageDropped, KindPoisonMessage, KindHandlerOverflow).
func (c *Client) OnEvent(fn func(Event)) (cancel func()) { return c.subscribeEvents(nil, fn) }

func (c *Client) subscribeEvents(want func(Event) bool, fn func(Event)) (cancel func()) {
	return c.bus.SubscribeWhere(want, func(ev Event, dropped int, _ <-chan struct{}) bool {
		ev.Dropped = dropped
		fn(ev)
		return true
	}, nil)
}

// Watch returns a channel of events of every kind, with the same
// guarantees as OnEvent. The channel is closed when ctx ends, or after the final
// StateClosed event once the client is closed.
func (c *Client) Watch(ctx context.Context) <-chan Event {
	ch := make(chan Event)
	var (
		mu     sync.Mutex
		exited bool
		stop   func() bool
	)
	cancel := c.bus.Subscribe(func(ev Event, dropped int, abort <-chan struct{}) bool {
		ev.Dropped = dropped
		select {
		case ch <- ev:
			return true
		case <-ctx.Done():
			return false
		case <-abort:
			return false
		}
	}, func() {
		mu.Lock()
		exited = true
		if stop != nil {
			stop()
		}
		mu.Unlock()
		close(ch)
	})
	mu.Lock()
	if !exited {
		stop = context.AfterFunc(ctx, cancel)
	}
	mu.Unlock()
	return ch
}
