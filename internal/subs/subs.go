// Package subs holds the subscriptions a client (re)makes after every
// reconnect and routes each received message to the ones it matches.
//
// Routing never blocks the engine's receive path: a message is put in the
// bounded backlog of each matching subscription and acknowledged at once,
// in the order received (MQTT-4.6.0-2). Waiting for the handler would let
// one slow handler fill the broker's in-flight window (Mosquitto: 20) and
// stop every subscription. Each subscription has one worker that calls its
// handler in order.
package subs

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/topic"
)

// Config is what the registry is told by the client.
type Config struct {
	Backlog        int           // messages waiting per subscription
	RestoreTimeout time.Duration // for each SUBSCRIBE made after a reconnect
	// Reports.
	Received func()
	Unrouted func()
	Overflow func(filter, topic string) // a message dropped from a full backlog
	Panicked func(filter string, r any) // a handler panicked; the subscription goes on
	Warn     func(msg string, filters []string, err error)
}

type subscription struct {
	filter  string // as subscribed, possibly $share/group/…
	match   string // what topics are matched against
	qos     byte
	granted byte
	handler func(engine.Message)
	// active: the broker acknowledged it in the current session, so a
	// reconnect that finds the session present need not subscribe again.
	active bool
	queue  chan engine.Message
}

// Registry holds the subscriptions and the unsubscriptions asked for while
// offline, which a broker that kept the session must still be told about.
type Registry struct {
	cfg     Config
	mu      sync.Mutex
	subs    map[string]*subscription
	dropped map[string]uint64 // filter → the removal it stems from
	removal uint64
	stopped bool
	workers sync.WaitGroup
}

// New returns an empty registry.
func New(cfg Config) *Registry {
	return &Registry{cfg: cfg, subs: make(map[string]*subscription), dropped: make(map[string]uint64)}
}

// Backlog is the number of received messages waiting for their handlers.
func (r *Registry) Backlog() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.subs {
		n += len(s.queue)
	}
	return n
}

// Add registers h for filter, replacing the handler of a filter that was
// there, and starts its worker. It returns errs.Closed once stopped, and
// undo, which puts back what the filter had before (its subscription, or
// its pending removal) when the broker refuses the new one.
func (r *Registry) Add(filter string, qos byte, h func(engine.Message)) (undo func(), err error) {
	match, err := topic.ValidateFilter(filter)
	if err != nil {
		return nil, err
	}
	s := &subscription{filter: filter, match: match, qos: qos, handler: h,
		queue: make(chan engine.Message, r.cfg.Backlog)}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return nil, errs.Closed
	}
	old, hadOld := r.subs[filter]
	removal, hadRemoval := r.dropped[filter]
	if hadOld {
		close(old.queue) // its worker finishes what it has, then ends
	}
	r.subs[filter] = s
	delete(r.dropped, filter) // subscribed again: the SUBSCRIBE replaces any pending UNSUBSCRIBE
	r.start(s)
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.stopped || r.subs[filter] != s {
			return // replaced or removed since: that change stands
		}
		close(s.queue)
		delete(r.subs, filter)
		if hadOld {
			back := &subscription{filter: old.filter, match: old.match, qos: old.qos, granted: old.granted,
				handler: old.handler, active: old.active, queue: make(chan engine.Message, r.cfg.Backlog)}
			r.subs[filter] = back
			r.start(back)
		}
		if hadRemoval {
			r.dropped[filter] = removal
		}
	}, nil
}

// start runs the worker of s; mu must be held.
func (r *Registry) start(s *subscription) {
	r.workers.Add(1)
	go r.work(s)
}

// Removal names one call of Remove, for Confirm.
type Removal uint64

// Remove takes filters out of the registry. Until Confirm says the broker
// acknowledged the UNSUBSCRIBE, each stays on the list told to a broker
// that kept the session at the next connection: an UNSUBSCRIBE that a
// loss overtook is not lost.
func (r *Registry) Remove(filters []string) (Removal, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return 0, errs.Closed
	}
	r.removal++
	for _, f := range filters {
		if s, ok := r.subs[f]; ok {
			close(s.queue)
			delete(r.subs, f)
		}
		r.dropped[f] = r.removal
	}
	return Removal(r.removal), nil
}

// Confirm records that the broker acknowledged the UNSUBSCRIBE of filters
// sent for removal rm. A filter removed again since stays on the list
// until its own UNSUBSCRIBE is acknowledged.
func (r *Registry) Confirm(rm Removal, filters []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range filters {
		if r.dropped[f] == uint64(rm) {
			delete(r.dropped, f)
		}
	}
}

// confirmUpTo is Confirm for every removal up to rm.
func (r *Registry) confirmUpTo(rm Removal, filters []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range filters {
		if g, ok := r.dropped[f]; ok && g <= uint64(rm) {
			delete(r.dropped, f)
		}
	}
}

func (r *Registry) work(s *subscription) {
	defer r.workers.Done()
	for m := range s.queue {
		r.deliver(s, m)
	}
}

func (r *Registry) deliver(s *subscription, m engine.Message) {
	defer func() {
		if p := recover(); p != nil {
			r.cfg.Panicked(s.filter, p)
		}
	}()
	s.handler(m)
}

// Route hands m to every matching subscription. It never blocks.
func (r *Registry) Route(m engine.Message) {
	r.cfg.Received()
	r.mu.Lock()
	matched := 0
	var overflow []string
	if !r.stopped {
		for _, s := range r.subs {
			if !topic.Match(s.match, m.Topic) {
				continue
			}
			matched++
			select {
			case s.queue <- m:
			default:
				overflow = append(overflow, s.filter)
			}
		}
	}
	r.mu.Unlock()
	if matched == 0 {
		r.cfg.Unrouted()
	}
	for _, f := range overflow {
		r.cfg.Overflow(f, m.Topic)
	}
}

// Subscribe makes the subscription of filter at the broker and records the
// QoS granted.
func (r *Registry) Subscribe(ctx context.Context, sess engine.Session, filter string) error {
	r.mu.Lock()
	s, ok := r.subs[filter]
	r.mu.Unlock()
	if !ok {
		return nil // unsubscribed meanwhile
	}
	return r.subscribe(ctx, sess, s)
}

func (r *Registry) subscribe(ctx context.Context, sess engine.Session, s *subscription) error {
	granted, err := sess.Subscribe(ctx, s.filter, s.qos)
	if err != nil {
		return fmt.Errorf("steadymqtt: subscribe %q: %w", s.filter, err)
	}
	r.mu.Lock()
	s.granted, s.active = granted, true
	r.mu.Unlock()
	return nil
}

// Granted returns the QoS the broker granted for filter, and false when
// the filter is not subscribed in the current session.
func (r *Registry) Granted(filter string) (byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.subs[filter]
	if !ok || !s.active {
		return 0, false
	}
	return s.granted, true
}

// Sync brings the broker's session in line with the registry after a
// CONNACK: when the session is gone, everything is subscribed again; when
// it was kept, only what changed while offline. It returns the first
// failure, which names its filter; each is also reported to Warn.
func (r *Registry) Sync(ctx context.Context, sess engine.Session, sessionPresent bool) (first error) {
	r.mu.Lock()
	var todo []*subscription
	for _, s := range r.subs {
		if !sessionPresent {
			s.active = false
		}
		if !s.active {
			todo = append(todo, s)
		}
	}
	var drop []string
	rm := Removal(r.removal)
	if sessionPresent {
		for f := range r.dropped {
			drop = append(drop, f)
		}
	} else {
		clear(r.dropped) // the broker lost them with the session
	}
	r.mu.Unlock()

	for _, s := range todo {
		sctx, cancel := context.WithTimeout(ctx, r.cfg.RestoreTimeout)
		if err := r.subscribe(sctx, sess, s); err != nil {
			r.cfg.Warn("restoring subscription failed", []string{s.filter}, err)
			if first == nil {
				first = err
			}
		}
		cancel()
	}
	if len(drop) > 0 {
		uctx, cancel := context.WithTimeout(ctx, r.cfg.RestoreTimeout)
		if err := sess.Unsubscribe(uctx, drop...); err != nil {
			r.cfg.Warn("unsubscribing what was dropped while offline failed; told again at the next connection", drop, err)
			if first == nil {
				first = fmt.Errorf("steadymqtt: unsubscribe %q: %w", drop, err)
			}
		} else {
			r.confirmUpTo(rm, drop)
		}
		cancel()
	}
	return first
}

// Stop ends the workers after they handed over what they hold, waiting at
// most timeout for handlers to return.
func (r *Registry) Stop(timeout time.Duration) {
	r.mu.Lock()
	if !r.stopped {
		r.stopped = true
		for _, s := range r.subs {
			close(s.queue)
		}
	}
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.workers.Wait(); close(done) }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}
