package manager

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func nodes(n int) []*url.URL {
	var out []*url.URL
	for i := range n {
		out = append(out, &url.URL{Scheme: "tcp", Host: fmt.Sprintf("node%d:1883", i)})
	}
	return out
}

// Thirty replicas given the same three URLs spread over the nodes, each
// keeping its order across restarts.
func TestFleetSpreadsOverTheEndpoints(t *testing.T) {
	urls := nodes(3)
	first := map[string]int{}
	for i := range 30 {
		id := fmt.Sprintf("gateway-%d", i)
		r := newRotation(urls, id, false)
		first[r.next().Host]++
		again := newRotation(urls, id, false)
		require.Equal(t, r.urls, again.urls, "%s: the same order after a restart", id)
	}
	t.Logf("first endpoints: %v", first)
	for _, u := range urls {
		require.GreaterOrEqual(t, first[u.Host], 6, "no worse than 14/10/6: %v", first)
		require.LessOrEqual(t, first[u.Host], 14, "no worse than 14/10/6: %v", first)
	}
	fixed := newRotation(urls, "gateway-0", true)
	require.Equal(t, urls, fixed.urls, "a fixed order is the order given")
}

// After a failure the other endpoints are tried at once; the backoff
// decides only once a whole round failed, and a connection that did not
// last the stable period does not start a new round.
func TestBackoffPerRoundOfEndpoints(t *testing.T) {
	r := newRotation(nodes(3), "c", false)
	var backoffs []bool
	for range 6 {
		backoffs = append(backoffs, r.ended(false))
	}
	require.Equal(t, []bool{false, false, true, false, false, true}, backoffs)
	require.Less(t, r.hop(), hopJitter)

	// A node that accepts and drops the client at once: its losses count
	// like failures, so a fleet kicked everywhere still backs off.
	require.False(t, r.ended(false))
	require.False(t, r.ended(false))
	require.True(t, r.ended(false))
	// A stable connection starts a fresh round.
	require.False(t, r.ended(true))

	single := newRotation(nodes(1), "c", false)
	require.True(t, single.ended(false), "one broker: the backoff after every failure, as before")
	require.True(t, single.ended(true))
}

// A fail-back whose attempt failed doubles the next hold; one that worked
// resets it. The jitter adds at most half.
func TestFailbackHoldGrowsAfterFailedFailbacks(t *testing.T) {
	r := newRotation(nodes(2), "c", true)
	const base = time.Second
	within := func(want time.Duration) {
		t.Helper()
		d := r.hold(base)
		require.GreaterOrEqual(t, d, want)
		require.LessOrEqual(t, d, want+want/2)
	}
	within(base)
	r.failBack()
	require.Equal(t, r.preferred(), r.next())
	r.result(r.preferred(), false)
	within(2 * base)
	r.failBack()
	r.result(r.preferred(), false)
	within(4 * base)
	r.result(r.urls[1], false) // not the preferred one: no bearing
	within(4 * base)
	r.result(r.preferred(), true)
	within(base)
}
