package steadymqtt

import (
	"encoding/json"
	"sync"
	"time"
)

// What the status page remembers of each client: the samples behind its
// sparklines and its last events. Both live in rings bounded by count, so
// a client that emits events without end costs the page no more memory
// than a quiet one.

// ring is a bounded FIFO: a push onto a full ring overwrites the oldest
// element.
type ring[T any] struct {
	buf   []T
	start int // index of the oldest element
	n     int
}

func newRing[T any](capacity int) *ring[T] { return &ring[T]{buf: make([]T, max(capacity, 1))} }

func (r *ring[T]) push(v T) {
	if r.n < len(r.buf) {
		r.buf[(r.start+r.n)%len(r.buf)] = v
		r.n++
		return
	}
	r.buf[r.start] = v
	r.start = (r.start + 1) % len(r.buf)
}

// newest is the most recent element, nil when the ring is empty; it is
// valid until the next push.
func (r *ring[T]) newest() *T {
	if r.n == 0 {
		return nil
	}
	return &r.buf[(r.start+r.n-1)%len(r.buf)]
}

func (r *ring[T]) len() int { return r.n }

// items copies the elements out, oldest first.
func (r *ring[T]) items() []T {
	out := make([]T, r.n)
	for i := range out {
		out[i] = r.buf[(r.start+i)%len(r.buf)]
	}
	return out
}

// statusSample is one point of the sparklines: what was seen during one
// step of the sampling (see statusHistory.observe).
type statusSample struct {
	At     time.Time     // when the step was last observed
	RTT    time.Duration // the highest keepalive round trip seen while connected
	HasRTT bool          // a round trip was measured on a live connection in the step
	Outbox int           // the deepest outbox seen in the step
}

// MarshalJSON writes {"t", "rtt_ms" (null when not connected or not
// measured), "outbox"}.
func (s statusSample) MarshalJSON() ([]byte, error) {
	type out struct {
		T      time.Time `json:"t"`
		RTT    *float64  `json:"rtt_ms"`
		Outbox int       `json:"outbox"`
	}
	o := out{T: s.At, Outbox: s.Outbox}
	if s.HasRTT {
		ms := float64(s.RTT) / float64(time.Millisecond)
		o.RTT = &ms
	}
	return json.Marshal(o)
}

// statusEvent is an Event as the page shows it: the error as text, so the
// ring holds no references into the client.
type statusEvent struct {
	Seq            uint64    `json:"seq"`
	Time           time.Time `json:"time"`
	Kind           string    `json:"kind"`
	From           State     `json:"from"`
	To             State     `json:"to"`
	Err            string    `json:"error,omitempty"`
	Step           string    `json:"step,omitempty"`
	Attempt        int       `json:"attempt,omitempty"`
	DelayMillis    float64   `json:"delay_ms,omitempty"`
	Broker         string    `json:"broker,omitempty"`
	Interface      string    `json:"interface,omitempty"`
	SessionPresent bool      `json:"session_present,omitempty"`
	Topic          string    `json:"topic,omitempty"`
	Dropped        int       `json:"dropped,omitempty"` // events coalesced away just before this one
	// Repeated counts the earlier failed attempts folded into this one:
	// those right before it that failed at the same step, to the same
	// broker and interface (FirstTime is the first's). A long outage would
	// otherwise push the loss itself off the list. ErrorsVaried: their
	// errors were not all this one's (they often differ only in a port).
	Repeated     int       `json:"repeated,omitempty"`
	FirstTime    time.Time `json:"first_time,omitzero"`
	ErrorsVaried bool      `json:"errors_varied,omitempty"`
}

// failedAttempt: a failed attempt that left the state as it was.
func (e *statusEvent) failedAttempt() bool { return e.Kind == "state" && e.From == e.To && e.Err != "" }

// sameFailure reports whether e repeats the failed attempt last.
func (e *statusEvent) sameFailure(last *statusEvent) bool {
	return e.failedAttempt() && last.failedAttempt() && e.To == last.To &&
		e.Step == last.Step && e.Broker == last.Broker && e.Interface == last.Interface
}

func newStatusEvent(ev Event) statusEvent {
	e := statusEvent{
		Seq: ev.Seq, Time: ev.Time, Kind: ev.Kind.String(), From: ev.From, To: ev.To, Step: ev.Step,
		Attempt: ev.Attempt, DelayMillis: float64(ev.Delay) / float64(time.Millisecond),
		Broker: ev.Broker, Interface: ev.Interface, SessionPresent: ev.SessionPresent,
		Topic: ev.Topic, Dropped: ev.Dropped,
	}
	if ev.Err != nil {
		e.Err = ev.Err.Error()
	}
	return e
}

// statusHistory is one client's memory. Samples are kept one per step
// (observations within a step are merged), so their ring spans the window
// whatever the rate of events and requests.
type statusHistory struct {
	step time.Duration

	mu      sync.Mutex
	samples *ring[statusSample]
	events  *ring[statusEvent]
	seen    uint64 // events the client emitted since the page started, missed ones included
	missed  uint64 // events coalesced away before they reached the page
}

func newStatusHistory(cfg statusConfig) *statusHistory {
	return &statusHistory{
		step:    cfg.step,
		samples: newRing[statusSample](cfg.sampleCapacity()),
		events:  newRing[statusEvent](cfg.events),
	}
}

// observe merges a Health snapshot into the sample of its step: the
// highest RTT (only while connected: Health keeps the last RTT through an
// outage, which would draw a line where there is no link) and the deepest
// outbox, so a spike between two ticks still shows.
func (h *statusHistory) observe(now time.Time, hl Health) {
	up := hl.State.Up() && hl.RTT > 0
	h.mu.Lock()
	defer h.mu.Unlock()
	if last := h.samples.newest(); last != nil && last.At.Truncate(h.step).Equal(now.Truncate(h.step)) {
		last.At = now
		if up && (!last.HasRTT || hl.RTT > last.RTT) {
			last.RTT, last.HasRTT = hl.RTT, true
		}
		last.Outbox = max(last.Outbox, hl.Outbox)
		return
	}
	s := statusSample{At: now, Outbox: hl.Outbox}
	if up {
		s.RTT, s.HasRTT = hl.RTT, true
	}
	h.samples.push(s)
}

// event records one event the client delivered (ev.Dropped is how many it
// coalesced away just before it). A failed attempt that repeats the one
// before (same step, broker and interface) replaces it, counted.
func (h *statusHistory) event(ev statusEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seen += 1 + uint64(ev.Dropped)
	h.missed += uint64(ev.Dropped)
	if last := h.events.newest(); last != nil && ev.sameFailure(last) {
		ev.Repeated = last.Repeated + 1
		ev.Dropped += last.Dropped
		ev.FirstTime = last.FirstTime
		ev.ErrorsVaried = last.ErrorsVaried || last.Err != ev.Err
		if ev.FirstTime.IsZero() {
			ev.FirstTime = last.Time
		}
		*last = ev
		return
	}
	h.events.push(ev)
}

// snapshot copies the samples within window of now (oldest first) and the
// events (newest first).
func (h *statusHistory) snapshot(now time.Time, window time.Duration) (samples []statusSample, events []statusEvent, seen, missed uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	all := h.samples.items()
	from := now.Add(-window)
	samples = all[:0]
	for _, s := range all {
		if !s.At.Before(from) {
			samples = append(samples, s)
		}
	}
	events = h.events.items()
	for i, j := 0, len(events)-1; i < j; i, j = i+1, j-1 {
		events[i], events[j] = events[j], events[i]
	}
	return samples, events, h.seen, h.missed
}

// counts reports how many samples and events are stored now.
func (h *statusHistory) counts() (samples, events int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.samples.len(), h.events.len()
}
