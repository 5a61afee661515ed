// Package bus fans values out to subscribers, each on its own goroutine, in
// order, without ever blocking the publisher.
//
// Each subscriber has a bounded mailbox. When a subscriber lags and its
// mailbox is full, the oldest pending value is discarded and counted, so the
// newest value is always delivered and the count travels with the next value
// the subscriber does receive.
package bus

import (
	"context"
	"sync"
)

// Deliver hands v to a subscriber; dropped is how many values this
// subscriber missed just before v. abort is closed when the subscriber must
// give up a delivery that blocks (see Close). It returns false to
// unsubscribe.
type Deliver[T any] func(v T, dropped int, abort <-chan struct{}) bool

// Bus is a fan-out of T. The zero value is not usable; use New.
type Bus[T any] struct {
	size int
	// recover is called with the value of a panic raised by a Deliver.
	recover func(any)

	mu     sync.Mutex
	subs   map[*sub[T]]struct{}
	closed bool
	wg     sync.WaitGroup
}

// New makes a bus whose subscribers each hold at most size pending values.
// onPanic is called when a subscriber panics; that subscriber keeps going.
func New[T any](size int, onPanic func(any)) *Bus[T] {
	if size < 1 {
		size = 1
	}
	return &Bus[T]{size: size, recover: onPanic, subs: make(map[*sub[T]]struct{})}
}

type sub[T any] struct {
	mu      sync.Mutex
	queue   []T
	dropped int
	stopped bool // no more values will be queued
	wake    chan struct{}
	abort   chan struct{} // closed to make the goroutine leave at once
	aborted sync.Once
	want    func(T) bool // nil: every value
	deliver Deliver[T]
	onExit  func()
}

// Subscribe starts a subscriber. onExit, if not nil, runs on the
// subscriber's goroutine when it ends. The returned cancel is safe to call
// more than once and from inside deliver; it does not wait.
func (b *Bus[T]) Subscribe(deliver Deliver[T], onExit func()) (cancel func()) {
	return b.SubscribeWhere(nil, deliver, onExit)
}

// SubscribeWhere is Subscribe for the values want reports true for. The
// others never enter the subscriber's mailbox, so they can neither push a
// wanted value out of it nor count as dropped. want runs in Publish, under
// the bus's lock: it must be quick and must not call the bus.
func (b *Bus[T]) SubscribeWhere(want func(T) bool, deliver Deliver[T], onExit func()) (cancel func()) {
	s := &sub[T]{
		wake:    make(chan struct{}, 1),
		abort:   make(chan struct{}),
		want:    want,
		deliver: deliver,
		onExit:  onExit,
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		if onExit != nil {
			onExit()
		}
		return func() {}
	}
	b.subs[s] = struct{}{}
	b.wg.Add(1)
	b.mu.Unlock()
	go b.loop(s)
	var once sync.Once
	return func() { once.Do(func() { b.remove(s); s.cancel() }) }
}

func (b *Bus[T]) remove(s *sub[T]) {
	b.mu.Lock()
	delete(b.subs, s)
	b.mu.Unlock()
}

// cancel drops what is pending and ends the goroutine after the value being
// delivered, if any.
func (s *sub[T]) cancel() {
	s.mu.Lock()
	s.stopped = true
	s.queue = nil
	s.mu.Unlock()
	s.aborted.Do(func() { close(s.abort) })
}

func (s *sub[T]) push(v T, size int) {
	if s.want != nil && !s.want(v) {
		return
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	if len(s.queue) >= size {
		// Shift instead of reslicing so the backing array does not creep.
		copy(s.queue, s.queue[1:])
		s.queue = s.queue[:len(s.queue)-1]
		s.dropped++
	}
	s.queue = append(s.queue, v)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Publish queues v for every subscriber. It never blocks on a subscriber.
func (b *Bus[T]) Publish(v T) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	for s := range b.subs {
		s.push(v, b.size)
	}
}

func (b *Bus[T]) loop(s *sub[T]) {
	defer b.wg.Done()
	if s.onExit != nil {
		defer s.onExit()
	}
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			stopped := s.stopped
			s.mu.Unlock()
			if stopped {
				return
			}
			select {
			case <-s.wake:
			case <-s.abort:
			}
			continue
		}
		v := s.queue[0]
		var zero T
		s.queue[0] = zero
		s.queue = s.queue[1:]
		dropped := s.dropped
		s.dropped = 0
		s.mu.Unlock()
		if !b.call(s, v, dropped) {
			b.remove(s)
			s.mu.Lock()
			s.stopped, s.queue = true, nil
			s.mu.Unlock()
			return
		}
	}
}

func (b *Bus[T]) call(s *sub[T], v T, dropped int) (keep bool) {
	defer func() {
		if r := recover(); r != nil {
			keep = true
			if b.recover != nil {
				b.recover(r)
			}
		}
	}()
	return s.deliver(v, dropped, s.abort)
}

// Close stops accepting values and lets every subscriber drain what it has
// pending. It waits until they are done or ctx ends; then the ones still
// running are told to abort (a blocked channel send gives up; a callback
// that never returns cannot be stopped and keeps its goroutine until it
// returns).
func (b *Bus[T]) Close(ctx context.Context) error {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		for s := range b.subs {
			s.mu.Lock()
			s.stopped = true
			s.mu.Unlock()
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
	}
	subs := make([]*sub[T], 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()

	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, s := range subs {
			s.cancel()
		}
		return ctx.Err()
	}
}
