package steadymqtt

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFullJitterBackOff(t *testing.T) {
	b := NewFullJitterBackOff(100*time.Millisecond, time.Second)
	ceilings := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for round := 0; round < 2; round++ {
		for i, want := range ceilings {
			want *= time.Millisecond
			require.Equal(t, want, b.Ceiling(), "step %d", i)
			// Draws stay inside [0, ceiling]; many draws must also spread
			// over it (full jitter), not cluster near the top.
			var lo, hi time.Duration = want, 0
			for k := 0; k < 200; k++ {
				c := *b
				d := c.NextBackOff()
				require.GreaterOrEqual(t, d, time.Duration(0))
				require.LessOrEqual(t, d, want)
				lo, hi = min(lo, d), max(hi, d)
			}
			require.Less(t, lo, want/4, "step %d: draws never near 0", i)
			require.Greater(t, hi, want*3/4, "step %d: draws never near the ceiling", i)
			b.NextBackOff()
		}
		b.Reset()
	}
}

func TestFullJitterBackOffDoesNotOverflow(t *testing.T) {
	b := &FullJitterBackOff{Initial: time.Hour, Max: 1 << 62, Multiplier: 1e9}
	for i := 0; i < 10; i++ {
		require.GreaterOrEqual(t, b.NextBackOff(), time.Duration(0))
	}
	require.Equal(t, time.Duration(1<<62), b.Ceiling())
}

// A short outage must not meet an interval that doubled faster than the
// outage went on: the draws stay within twice the time since the first.
func TestOutageFactorBoundsTheDraws(t *testing.T) {
	now := time.Unix(1000, 0)
	b := NewFullJitterBackOff(100*time.Millisecond, time.Minute)
	b.OutageFactor, b.Now = 2, func() time.Time { return now }
	for i := 0; i < 6; i++ { // the exponential ceiling reaches 3.2 s
		require.LessOrEqual(t, b.NextBackOff(), 100*time.Millisecond, "no time has passed: Initial bounds it")
	}
	now = now.Add(time.Second)
	var hi time.Duration
	for k := 0; k < 500; k++ {
		c := *b
		d := c.NextBackOff()
		require.LessOrEqual(t, d, 2*time.Second)
		hi = max(hi, d)
	}
	require.Greater(t, hi, 1500*time.Millisecond, "still full jitter over the bound")
	// A long outage meets the exponential ceiling again.
	now = now.Add(time.Hour)
	c := *b
	require.LessOrEqual(t, c.NextBackOff(), b.Ceiling())
	b.Reset()
	require.LessOrEqual(t, b.NextBackOff(), 100*time.Millisecond, "a reset starts the outage again")
}
