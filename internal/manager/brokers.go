package manager

import (
	"hash/fnv"
	"math/rand/v2"
	"net/url"
	"sync"
	"time"
)

// rotation is the broker policy: which endpoint an attempt goes to, and
// whether the wait before it is the backoff's or only a little jitter.
//
// With several endpoints (a cluster's nodes, or a primary and a standby),
// each client starts at its own place: the order is shuffled once, seeded
// by the client ID, so a fleet spreads over the nodes and a client keeps
// its order across restarts. Each attempt after a failure or a loss goes
// to the next endpoint; the backoff applies per full round of endpoints,
// and between the endpoints of one round the wait is a little jitter,
// enough that a fleet leaving a dead node does not arrive at the same
// instant.
//
// The first endpoint of a client's order is its preferred one: connected
// elsewhere, the client goes back to it once it has been reachable for the
// fail-back hold (see failback.go), so a recovered node is refilled.
type rotation struct {
	urls []*url.URL // in this client's order; urls[0] is preferred

	mu          sync.Mutex // the manager and the fail-back watcher
	i           int        // the endpoint of the next attempt
	streak      int        // rounds that ended badly since a stable connection
	failingBack bool       // the next attempt is a fail-back
	misses      int        // fail-backs in a row whose attempt failed
}

// hopJitter bounds the wait between two endpoints of one round.
const hopJitter = 50 * time.Millisecond

func newRotation(urls []*url.URL, clientID string, fixed bool) *rotation {
	r := &rotation{urls: append([]*url.URL(nil), urls...)}
	if !fixed && len(urls) > 1 {
		h := fnv.New64a()
		_, _ = h.Write([]byte(clientID))
		seed := h.Sum64()
		rng := rand.New(rand.NewPCG(seed, seed>>1|1))
		rng.Shuffle(len(r.urls), func(a, b int) { r.urls[a], r.urls[b] = r.urls[b], r.urls[a] })
	}
	return r
}

// next is the endpoint of the next attempt; the one after it comes next.
func (r *rotation) next() *url.URL {
	r.mu.Lock()
	defer r.mu.Unlock()
	u := r.urls[r.i%len(r.urls)]
	r.i++
	return u
}

// preferred is the endpoint this client returns to.
func (r *rotation) preferred() *url.URL { return r.urls[0] }

// failBack points the next attempt at the preferred endpoint.
func (r *rotation) failBack() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.i, r.failingBack = 0, true
}

// result records how an attempt to u went, for the fail-back hold: a
// fail-back that failed doubles the next hold, one that worked resets it.
func (r *rotation) result(u *url.URL, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if u != r.urls[0] {
		return
	}
	switch {
	case ok:
		r.misses = 0
	case r.failingBack:
		r.misses++
	}
	r.failingBack = false
}

// hold is how long the preferred endpoint must have been reachable before
// the client goes back to it: base, doubled for each fail-back that failed
// in a row, plus up to half of it at random so a fleet does not return at
// one instant.
func (r *rotation) hold(base time.Duration) time.Duration {
	r.mu.Lock()
	d := base << min(r.misses, 6)
	r.mu.Unlock()
	return d + rand.N(d/2+1)
}

// ended records a round that ended badly (a failed attempt or a lost
// connection; stable says the connection had lasted the stable period) and
// reports whether the backoff decides the wait before the next attempt.
// false: the next endpoint is tried after hop() only.
func (r *rotation) ended(stable bool) (useBackoff bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if stable {
		r.streak = 0
	}
	r.streak++
	return r.streak%len(r.urls) == 0
}

// hop is the wait between two endpoints of one round.
func (r *rotation) hop() time.Duration { return rand.N(hopJitter) }
