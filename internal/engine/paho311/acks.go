package paho311

import (
	"sync"

	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// ackTracker sees, on one connection, the acknowledgements the broker
// sends: for each packet identifier, the order number of its last PUBACK or
// PUBCOMP. A token is believed only if its identifier was acknowledged
// after the publish started (paho #563: tokens can complete without one).
type ackTracker struct {
	mu   sync.Mutex
	seq  uint64
	last map[uint16]uint64
}

func newAckTracker() *ackTracker { return &ackTracker{last: make(map[uint16]uint64)} }

func (t *ackTracker) observe(dir wire.Dir, h wire.Header) {
	if dir != wire.Received || (h.Type != wire.PUBACK && h.Type != wire.PUBCOMP) || h.Len < 2 {
		return
	}
	id := uint16(h.Head[0])<<8 | uint16(h.Head[1])
	t.mu.Lock()
	t.seq++
	t.last[id] = t.seq
	t.mu.Unlock()
}

// mark is the order number of the last acknowledgement so far.
func (t *ackTracker) mark() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.seq
}

// acked reports, and forgets, whether id was acknowledged after mark.
func (t *ackTracker) acked(id uint16, mark uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.last[id]
	delete(t.last, id)
	return ok && at > mark
}
