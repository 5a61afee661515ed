// Package outbox holds the messages a client accepted and has not yet seen
// acknowledged: bounded by count and bytes, in the order they were
// accepted, optionally on disk (bbolt) so that they survive a crash, with
// the recently settled idempotency keys beside them.
//
// No disk I/O happens under the outbox's lock: a probe reading Len never
// waits for an fsync.
package outbox

import (
	"crypto/sha256"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/steadymqtt/steadymqtt/internal/engine"
)

// Message is what a publisher handed over.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	Key     string             // idempotency key, "" for none
	Props   *engine.Properties // MQTT 5 properties, nil for none
}

func (m *Message) size() int { return len(m.Topic) + len(m.Payload) + len(m.Key) + propsSize(m.Props) }

// digest identifies a message's content, to tell a retry from a different
// message that reuses a key. Only a key is ever compared by it, so a message
// without one has none (the zero value): hashing every payload would cost
// each publish for nothing. On disk a digest is kept only in the record of
// a delivered key, as it always was: a file written before keeps its
// meaning.
func (m *Message) digest() [sha256.Size]byte {
	var d [sha256.Size]byte
	if m.Key == "" {
		return d
	}
	h := sha256.New()
	h.Write([]byte{m.QoS, boolByte(m.Retain)})
	h.Write([]byte(m.Topic))
	h.Write([]byte{0})
	h.Write(m.Payload)
	if m.Props != nil { // a message without properties keeps the digest it always had
		h.Write([]byte{0})
		h.Write(encodeProps(nil, m.Props))
	}
	h.Sum(d[:0])
	return d
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// Entry is a message in the outbox and the outcome its publishers wait for.
type Entry struct {
	Message
	seq      uint64
	digest   [sha256.Size]byte // zero without a key
	ready    bool              // on disk (or in memory only): may be sent
	inflight bool
	removed  bool
	// Strikes counts connections that the broker closed right after this
	// message was sent, with nothing acknowledged in between.
	Strikes int
	// Sends counts how many connections the message was handed to.
	Sends int
	done  chan struct{}
	err   error
}

// Seq is the entry's place in the outbox order.
func (e *Entry) Seq() uint64 { return e.seq }

// Done is closed when the entry has an outcome.
func (e *Entry) Done() <-chan struct{} { return e.done }

// Err is the outcome once Done is closed: nil when acknowledged.
func (e *Entry) Err() error { return e.err }

// Policy says what a full outbox does with one more message.
type Policy int

const (
	Reject     Policy = iota // refuse the new message
	DropOldest               // drop the oldest messages that are not in flight
)

// Errors.
var (
	ErrFull     = errors.New("outbox full")
	ErrDropped  = errors.New("dropped from a full outbox for a newer message")
	ErrClosed   = errors.New("outbox closed")
	ErrConflict = errors.New("idempotency key already used for a different message")
)

// Config bounds an outbox.
type Config struct {
	MaxCount  int
	MaxBytes  int
	Policy    Policy
	KeyWindow time.Duration // how long a settled key is remembered
	KeyCount  int           // how many settled keys are remembered at most
	Dir       string        // durable when not empty
	// Now is the clock of the key window: when a key was settled, and
	// whether it still is within KeyWindow (also for the keys a durable
	// outbox loads). nil means time.Now.
	Now func() time.Time
	// Salvage moves a damaged file aside (renamed, never deleted) and starts
	// with what could be read from it, instead of failing Open with
	// errs.OutboxCorrupt.
	Salvage bool
}

// Outbox is safe for concurrent use.
type Outbox struct {
	cfg   Config
	store *store // nil when in memory

	mu      sync.Mutex
	queue   []*Entry // by seq
	byKey   map[string]*Entry
	bytes   int
	writing int // entries still being written to disk (not ready)
	nextSeq uint64
	keys    recentKeys
	evicted []string // keys forgotten in memory, still to delete on disk
	wake    chan struct{}
	closed  bool

	salvaged *Salvage // what Open moved aside, nil if nothing
}

// Salvaged reports the damaged file Open moved aside and what it gave
// back, or nil when the file was sound.
func (o *Outbox) Salvaged() *Salvage { return o.salvaged }

// now reads the outbox's clock.
func (o *Outbox) now() time.Time {
	if o.cfg.Now != nil {
		return o.cfg.Now()
	}
	return time.Now()
}

// Open makes an outbox; with cfg.Dir it loads what a previous process left.
func Open(cfg Config) (*Outbox, error) {
	o := &Outbox{cfg: cfg, byKey: make(map[string]*Entry), wake: make(chan struct{}, 1),
		keys: recentKeys{recs: make(map[string]keyRecord)}}
	if cfg.Dir == "" {
		return o, nil
	}
	st, msgs, keys, salvaged, err := openStore(cfg.Dir, cfg.Salvage)
	if err != nil {
		return nil, err
	}
	o.store, o.salvaged = st, salvaged
	// Oldest first, so that the count bound forgets the oldest.
	sort.Slice(keys, func(i, j int) bool { return keys[i].at.Before(keys[j].at) })
	now := o.now()
	var stale []string
	for _, k := range keys {
		if now.Sub(k.at) >= cfg.KeyWindow {
			stale = append(stale, k.key)
			continue
		}
		stale = append(stale, o.keys.add(k.key, keyRecord{at: k.at, digest: k.digest}, cfg.KeyCount)...)
	}
	if err := st.forget(stale); err != nil {
		_ = st.close()
		return nil, err
	}
	for _, m := range msgs {
		e := &Entry{Message: m.msg, seq: m.seq, digest: m.msg.digest(), ready: true, done: make(chan struct{})}
		o.queue = append(o.queue, e)
		o.bytes += e.size()
		if e.Key != "" {
			o.byKey[e.Key] = e
		}
		o.nextSeq = max(o.nextSeq, m.seq)
	}
	return o, nil
}

// Added says what Add did.
type Added struct {
	Entry   *Entry   // the entry to wait for; nil when Settled
	Joined  bool     // a pending entry with the same key was returned
	Settled bool     // the key was settled within the window: nothing queued
	Prior   error    // with Settled: the earlier outcome (nil when delivered)
	Dropped []*Entry // pushed out under DropOldest, already completed with ErrDropped
}

// Add accepts m (keeping m.Payload: the caller must not change it).
func (o *Outbox) Add(m Message) (Added, error) {
	var res Added
	d := m.digest()
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return res, ErrClosed
	}
	if m.Key != "" {
		if rec, ok := o.keys.get(m.Key, o.now(), o.cfg.KeyWindow); ok {
			o.mu.Unlock()
			if rec.digest != d {
				return res, ErrConflict
			}
			res.Settled, res.Prior = true, rec.err
			return res, nil
		}
		if pending, ok := o.byKey[m.Key]; ok {
			o.mu.Unlock()
			if pending.digest != d {
				return res, ErrConflict
			}
			res.Entry, res.Joined = pending, true
			return res, nil
		}
	}
	victims, err := o.victims(m.size())
	if err != nil {
		o.mu.Unlock()
		return res, err
	}
	for _, v := range victims {
		o.unlink(v)
		v.err = ErrDropped
		close(v.done)
	}
	res.Dropped = victims
	o.nextSeq++
	e := &Entry{Message: m, seq: o.nextSeq, digest: d, ready: o.store == nil, done: make(chan struct{})}
	o.queue = append(o.queue, e)
	o.bytes += e.size()
	if e.Key != "" {
		o.byKey[e.Key] = e // a concurrent retry joins it even before it is on disk
	}
	if !e.ready {
		o.writing++
	}
	o.mu.Unlock()

	if o.store != nil {
		drop := make([]uint64, len(victims))
		for i, v := range victims {
			drop[i] = v.seq
		}
		err := o.store.put(e.seq, &e.Message, drop)
		o.mu.Lock()
		o.writing--
		if err != nil {
			o.unlink(e)
			e.err = err
			close(e.done)
			o.mu.Unlock()
			return res, err
		}
		e.ready = true
		o.signal()
		o.mu.Unlock()
	} else {
		o.signal()
	}
	res.Entry = e
	return res, nil
}

// victims returns the oldest entries that are not in flight whose removal
// makes room for size more bytes, or ErrFull (dropping nothing).
func (o *Outbox) victims(size int) ([]*Entry, error) {
	count, bytes := len(o.queue)+1, o.bytes+size
	if count <= o.cfg.MaxCount && bytes <= o.cfg.MaxBytes {
		return nil, nil
	}
	if o.cfg.Policy != DropOldest || size > o.cfg.MaxBytes {
		return nil, ErrFull
	}
	var out []*Entry
	for _, e := range o.queue {
		if count <= o.cfg.MaxCount && bytes <= o.cfg.MaxBytes {
			break
		}
		if e.inflight || !e.ready {
			continue
		}
		out = append(out, e)
		count--
		bytes -= e.size()
	}
	if count > o.cfg.MaxCount || bytes > o.cfg.MaxBytes {
		return nil, ErrFull
	}
	return out, nil
}

// unlink takes e out of the queue; mu must be held.
func (o *Outbox) unlink(e *Entry) {
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
}

func (o *Outbox) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *Outbox) oldestQueued() *Entry {
	for _, e := range o.queue {
		if !e.inflight && e.ready {
			return e
		}
	}
	return nil
}

// Next hands out the oldest entry that is not in flight, marking it in
// flight; it waits until there is one or stop is closed (then nil). A
// closed stop wins over a waiting entry: a connection that ended must not
// take back what its end just put back.
func (o *Outbox) Next(stop <-chan struct{}) *Entry {
	for {
		select {
		case <-stop:
			return nil
		default:
		}
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

// OldestInFlight is the seq of the oldest entry in flight, 0 if none.
func (o *Outbox) OldestInFlight() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, e := range o.queue {
		if e.inflight {
			return e.seq
		}
	}
	return 0
}

// Requeue puts an in-flight entry back in its place, to be sent again.
// It returns the entry's strikes.
func (o *Outbox) Requeue(e *Entry, strike bool) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if e.removed {
		return e.Strikes
	}
	e.inflight = false
	if strike {
		e.Strikes++
	}
	o.signal()
	return e.Strikes
}

// Ack removes an acknowledged entry, remembers its key, and completes it.
// A store error is returned after the entry was completed all the same:
// the broker has the message; at worst the next process sends it again.
func (o *Outbox) Ack(e *Entry) error { return o.settle(e, nil) }

// Fail removes an entry and completes it with err; its key is remembered
// with err, so that a retry gets the same answer without a send.
func (o *Outbox) Fail(e *Entry, err error) error { return o.settle(e, err) }

func (o *Outbox) settle(e *Entry, outcome error) error {
	o.mu.Lock()
	if e.removed {
		o.mu.Unlock()
		return nil
	}
	o.unlink(e)
	if e.Key != "" {
		o.byKey[e.Key] = e // retries keep joining until the key is recorded
	}
	evicted := o.evicted
	o.evicted = nil
	o.mu.Unlock()

	now := o.now()
	var serr error
	if o.store != nil {
		key := ""
		if outcome == nil {
			key = e.Key // only deliveries are kept across a restart
		}
		// The message leaves and its key is recorded in one transaction:
		// after a crash, either it is sent again or it is known as sent.
		serr = o.store.remove(e.seq, key, e.digest, now, evicted)
	}

	o.mu.Lock()
	if e.Key != "" {
		if o.byKey[e.Key] == e {
			delete(o.byKey, e.Key)
		}
		o.evicted = append(o.evicted, o.keys.add(e.Key, keyRecord{at: now, digest: e.digest, err: outcome}, o.cfg.KeyCount)...)
	}
	e.err = outcome
	close(e.done)
	o.mu.Unlock()
	return serr
}

// Len is the number of messages waiting (queued or in flight); with a
// durable outbox, only those already on disk.
func (o *Outbox) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue) - o.writing
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
// disk they stay, to be sent by the next process. unsent counts them by
// QoS.
func (o *Outbox) Close(err error) (unsent [3]int, cerr error) {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return unsent, nil
	}
	o.closed = true
	for _, e := range o.queue {
		unsent[e.QoS]++
		e.removed = true
		e.err = err
		close(e.done)
	}
	o.queue, o.bytes = nil, 0
	o.mu.Unlock()
	if o.store != nil {
		cerr = o.store.close()
	}
	return unsent, cerr
}

// keyRecord is a settled key: when, for which content, with what outcome.
type keyRecord struct {
	at     time.Time
	digest [sha256.Size]byte
	err    error // nil: delivered
}

// recentKeys remembers settled keys for a window of time and count.
type recentKeys struct {
	recs  map[string]keyRecord
	order []string // oldest first; may hold keys already replaced
}

// add records key and returns the keys it pushed out.
func (r *recentKeys) add(key string, rec keyRecord, limit int) []string {
	if _, ok := r.recs[key]; !ok {
		r.order = append(r.order, key)
	}
	r.recs[key] = rec
	var out []string
	for len(r.recs) > limit && len(r.order) > 0 {
		delete(r.recs, r.order[0])
		out = append(out, r.order[0])
		r.order = r.order[1:]
	}
	return out
}

func (r *recentKeys) get(key string, now time.Time, window time.Duration) (keyRecord, bool) {
	rec, ok := r.recs[key]
	return rec, ok && now.Sub(rec.at) < window
}
