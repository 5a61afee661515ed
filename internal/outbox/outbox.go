// Package outbox holds the messages a client accepted and has not yet seen
// acknowledged: bounded by count and bytes, in the order they were
// accepted, optionally on disk (bbolt) so that they survive a crash, with
// the recently delivered idempotency keys beside them.
package outbox

import (
	"errors"
	"sync"
	"time"
)

// Message is what a publisher handed over.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	Key     string // idempotency key, "" for none
}

func (m *Message) size() int { return len(m.Topic) + len(m.Payload) + len(m.Key) }

// Entry is a message in the outbox and the outcome its publishers wait for.
type Entry struct {
	Message
	seq      uint64
	inflight bool
	removed  bool
	// Strikes counts connections that the broker closed right after this
	// message was sent, with no acknowledgement of anything in between.
	Strikes int
	// Sends counts how many connections the message was handed to.
	Sends int
	done  chan struct{}
	err   error
}

// Done is closed when the entry has an outcome.
func (e *Entry) Done() <-chan struct{} { return e.done }

// Err is the outcome once Done is closed: nil when acknowledged.
func (e *Entry) Err() error { return e.err }

// Policy says what a full outbox does with one more message.
type Policy int

const (
	Reject     Policy = iota // refuse the new message
	DropOldest               // drop the oldest message that is not in flight
)

// Errors.
var (
	ErrFull    = errors.New("outbox full")
	ErrDropped = errors.New("dropped from a full outbox for a newer message")
	ErrClosed  = errors.New("outbox closed")
)

// Config bounds an outbox.
type Config struct {
	MaxCount  int
	MaxBytes  int
	Policy    Policy
	KeyWindow time.Duration // how long a delivered key is remembered
	KeyCount  int           // how many delivered keys are remembered at most
	Dir       string        // durable when not empty
}

// Outbox is safe for concurrent use.
type Outbox struct {
	cfg   Config
	store *store // nil when in memory

	mu      sync.Mutex
	queue   []*Entry // by seq
	byKey   map[string]*Entry
	bytes   int
	nextSeq uint64
	keys    recentKeys
	wake    chan struct{}
	closed  bool
}

// Open makes an outbox; with cfg.Dir it loads what a previous process left.
func Open(cfg Config) (*Outbox, error) {
	o := &Outbox{cfg: cfg, byKey: make(map[string]*Entry), wake: make(chan struct{}, 1),
		keys: recentKeys{at: make(map[string]time.Time)}}
	if cfg.Dir == "" {
		return o, nil
	}
	st, msgs, keys, err := openStore(cfg.Dir)
	if err != nil {
		return nil, err
	}
	o.store = st
	now := time.Now()
	for _, k := range keys {
		if now.Sub(k.at) < cfg.KeyWindow {
			o.keys.add(k.key, k.at, cfg.KeyCount)
		}
	}
	for _, m := range msgs {
		e := &Entry{Message: m.msg, seq: m.seq, done: make(chan struct{})}
		o.insert(e)
		o.nextSeq = max(o.nextSeq, m.seq)
	}
	return o, nil
}

func (o *Outbox) insert(e *Entry) {
	o.queue = append(o.queue, e)
	o.bytes += e.size()
	if e.Key != "" {
		o.byKey[e.Key] = e
	}
}

// Delivered reports whether a message with key was acknowledged within
// the key window.
func (o *Outbox) Delivered(key string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.keys.has(key, time.Now(), o.cfg.KeyWindow)
}

// Remember records key as delivered (a QoS 0 message written).
func (o *Outbox) Remember(key string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.keys.add(key, time.Now(), o.cfg.KeyCount)
}

// Add accepts m. If a message with the same key is pending, that entry is
// returned and joined is true. dropped is the entry pushed out under
// DropOldest (already completed with ErrDropped).
func (o *Outbox) Add(m Message) (e *Entry, joined bool, dropped *Entry, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, false, nil, ErrClosed
	}
	if m.Key != "" {
		if pending, ok := o.byKey[m.Key]; ok {
			return pending, true, nil, nil
		}
	}
	for len(o.queue)+1 > o.cfg.MaxCount || o.bytes+m.size() > o.cfg.MaxBytes {
		if o.cfg.Policy != DropOldest || dropped != nil {
			return nil, false, dropped, ErrFull
		}
		victim := o.oldestQueued()
		if victim == nil {
			return nil, false, nil, ErrFull
		}
		if err := o.removeLocked(victim, ErrDropped, false); err != nil {
			return nil, false, nil, err
		}
		dropped = victim
	}
	o.nextSeq++
	e = &Entry{Message: m, seq: o.nextSeq, done: make(chan struct{})}
	if o.store != nil {
		if err := o.store.put(e.seq, &e.Message); err != nil {
			return nil, false, dropped, err
		}
	}
	o.insert(e)
	o.signal()
	return e, false, dropped, nil
}

func (o *Outbox) oldestQueued() *Entry {
	for _, e := range o.queue {
		if !e.inflight {
			return e
		}
	}
	return nil
}

func (o *Outbox) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Next hands out the oldest entry that is not in flight, marking it in
// flight; it waits until there is one or stop is closed (then nil).
func (o *Outbox) Next(stop <-chan struct{}) *Entry {
	for {
		o.mu.Lock()
		if e := o.oldestQueued(); e != nil && !o.closed {
			e.inflight = true
			e.Sends++
			o.mu.Unlock()
			return e
		}
		o.mu.Unlock()
		select {
		case <-o.wake:
		case <-stop:
			return nil
		}
	}
}

// Requeue puts an in-flight entry back in its place, to be sent again.
func (o *Outbox) Requeue(e *Entry, strike bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if e.removed {
		return
	}
	e.inflight = false
	if strike {
		e.Strikes++
	}
	o.signal()
}

// Ack removes an acknowledged entry, remembers its key, and completes it.
func (o *Outbox) Ack(e *Entry) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.removeLocked(e, nil, true)
}

// Fail removes an entry and completes it with err.
func (o *Outbox) Fail(e *Entry, err error) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.removeLocked(e, err, false)
}

func (o *Outbox) removeLocked(e *Entry, outcome error, delivered bool) error {
	if e.removed {
		return nil
	}
	now := time.Now()
	if o.store != nil {
		key := ""
		if delivered {
			key = e.Key
		}
		// The message leaves and its key is remembered in one transaction:
		// after a crash, either it is sent again or it is known as sent.
		if err := o.store.remove(e.seq, key, now); err != nil {
			return err
		}
	}
	e.removed = true
	for i, x := range o.queue {
		if x == e {
			o.queue = append(o.queue[:i], o.queue[i+1:]...)
			break
		}
	}
	o.bytes -= e.size()
	if e.Key != "" && o.byKey[e.Key] == e {
		delete(o.byKey, e.Key)
	}
	if delivered && e.Key != "" {
		o.keys.add(e.Key, now, o.cfg.KeyCount)
	}
	e.err = outcome
	close(e.done)
	return nil
}

// Len and Bytes describe what is waiting (queued or in flight).
func (o *Outbox) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue)
}

// Bytes is the size of what is waiting.
func (o *Outbox) Bytes() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.bytes
}

// Durable reports whether the outbox is on disk.
func (o *Outbox) Durable() bool { return o.store != nil }

// Close refuses new messages and completes the waiting ones with err; on
// disk they stay, to be sent by the next process.
func (o *Outbox) Close(err error) (unsent int, cerr error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return 0, nil
	}
	o.closed = true
	unsent = len(o.queue)
	for _, e := range o.queue {
		e.removed = true
		e.err = err
		close(e.done)
	}
	o.queue = nil
	if o.store != nil {
		cerr = o.store.close()
	}
	return unsent, cerr
}

// recentKeys remembers delivered keys for a window of time and count.
type recentKeys struct {
	at    map[string]time.Time
	order []string // oldest first; may hold keys already expired
}

func (r *recentKeys) add(key string, at time.Time, limit int) {
	if _, ok := r.at[key]; !ok {
		r.order = append(r.order, key)
	}
	r.at[key] = at
	for len(r.at) > limit && len(r.order) > 0 {
		delete(r.at, r.order[0])
		r.order = r.order[1:]
	}
}

func (r *recentKeys) has(key string, now time.Time, window time.Duration) bool {
	at, ok := r.at[key]
	return ok && now.Sub(at) < window
}
