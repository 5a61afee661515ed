package steadymqtt

import (
	"context"
	"sync"
	"time"
)

// Event is one change of the client's state, or one failed attempt (then
// From == To and Err says why). Events of one client have strictly
// increasing Seq.
type Event struct {
	Seq      uint64 // strictly increasing per client
	Time     time.Time
	From, To State
	// Err says why: set on transitions caused by a failure (a lost
	// connection, a failed attempt, a degraded link) and on closing by
	// giving up.
	Err error
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
}

// OnStateChange calls fn with every event, in order, on a goroutine of its
// own for this subscriber: a slow fn delays nobody else, and if it lags the
// oldest pending events are coalesced (Event.Dropped) so that it always gets
// the latest. A panic in fn is recovered and logged; fn keeps receiving.
// cancel stops the deliveries; it does not wait for a call in progress and
// may be called from fn.
//
// Subscribe before Connect to see every event.
func (c *Client) OnStateChange(fn func(Event)) (cancel func()) {
	return c.bus.Subscribe(func(ev Event, dropped int, _ <-chan struct{}) bool {
		ev.Dropped = dropped
		fn(ev)
		return true
	}, nil)
}

// Watch returns a channel of events with the same guarantees as
// OnStateChange. The channel is closed when ctx ends, or after the final
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
