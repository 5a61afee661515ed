package steadymqtt

import (
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// FullJitterBackOff is exponential backoff with full jitter: the n-th wait
// (from 0) is drawn uniformly from [0, min(Max, Initial·Multiplier^n)].
//
// Full jitter spreads a fleet that lost its broker at the same instant over
// the whole interval, where ±25 % jitter (backoff.ExponentialBackOff) keeps
// them in a tight herd. It never stops by itself; wrap it in
// backoff.WithMaxRetries to give up.
//
// It is not safe for concurrent use; a Client calls it from one goroutine.
type FullJitterBackOff struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
	// OutageFactor, when above 0, also bounds each draw by that many times
	// the time since the first wait after a Reset (never below Initial): a
	// fleet that lost its broker a moment ago comes back within about
	// that many times as long again, spread over it, instead of waiting
	// out an interval that doubled faster than the outage went on. A long
	// outage still meets the growing waits. The client's default policy
	// uses 2.
	OutageFactor float64
	// Now tells the time for OutageFactor; nil: time.Now.
	Now func() time.Time

	ceiling time.Duration // upper bound of the next draw; 0 before the first
	since   time.Time     // the first wait after a Reset
}

var _ backoff.BackOff = (*FullJitterBackOff)(nil)

// NewFullJitterBackOff returns a policy that starts at initial, doubles, and
// stays at max once there (without OutageFactor).
func NewFullJitterBackOff(initial, max time.Duration) *FullJitterBackOff {
	return &FullJitterBackOff{Initial: initial, Max: max, Multiplier: 2}
}

// NextBackOff returns the next wait and widens the interval.
func (b *FullJitterBackOff) NextBackOff() time.Duration {
	now := time.Now
	if b.Now != nil {
		now = b.Now
	}
	if b.ceiling <= 0 {
		b.ceiling = b.Initial
		if b.OutageFactor > 0 {
			b.since = now()
		}
	}
	ceiling := min(b.ceiling, b.Max)
	if b.OutageFactor > 0 {
		outage := time.Duration(b.OutageFactor * float64(now().Sub(b.since)))
		ceiling = min(ceiling, max(outage, b.Initial))
	}
	next := time.Duration(float64(b.ceiling) * b.Multiplier)
	if next < b.ceiling || next > b.Max { // overflow or cap
		next = b.Max
	}
	b.ceiling = next
	if ceiling <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(ceiling) + 1))
}

// Reset starts again from Initial.
func (b *FullJitterBackOff) Reset() { b.ceiling = 0 }

// Ceiling reports the upper bound of the next wait; useful in tests and
// dashboards.
func (b *FullJitterBackOff) Ceiling() time.Duration {
	if b.ceiling <= 0 {
		return min(b.Initial, b.Max)
	}
	return min(b.ceiling, b.Max)
}
