package steadymqtt

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"
)

// Goroutines per idle client, counted. Both libraries run in this one
// process against the embedded broker: a goroutine count is exact whatever
// ran before (unlike memory, which a Go process does not give back, so
// the idle heap and stacks are measured in fresh processes by
// BenchmarkIdleFootprint and cmd/steadybench). The broker's own goroutines
// are told apart by their stacks and left out, so the count is the
// client's alone.
func TestFootprintGoroutinesPerIdleClient(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	const n = 20

	pahoPer, pahoKinds := goroutinesPerClient(t, n, func(i int) func() {
		o := mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID(fmt.Sprintf("fp-paho-%d", i)).
			SetKeepAlive(30 * time.Second).SetAutoReconnect(false)
		c := mqtt.NewClient(o)
		tok := c.Connect()
		tok.Wait()
		require.NoError(t, tok.Error())
		return func() { c.Disconnect(100) }
	})
	oursPer, oursKinds := goroutinesPerClient(t, n, func(i int) func() {
		c, err := New(WithBroker(b.URL()), WithClientID(fmt.Sprintf("fp-steady-%d", i)), WithKeepAlive(30*time.Second))
		require.NoError(t, err)
		connect(t, c)
		return func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			require.NoError(t, c.Close(ctx))
		}
	})
	t.Logf("raw paho: %.2f goroutines per idle client:\n%s", pahoPer, describe(pahoKinds, n))
	t.Logf("steadymqtt: %.2f goroutines per idle client:\n%s", oursPer, describe(oursKinds, n))

	// The target is raw paho's count plus one: the client's own retry loop,
	// which also runs the keepalive, is all it may add.
	require.LessOrEqual(t, oursPer, pahoPer+1, "steadymqtt runs more than one goroutine per idle client beyond raw paho's")
}

// goroutinesPerClient connects n clients with open, waits until the count
// of goroutines outside the broker stops moving, and returns the count per
// client above what ran before, with a breakdown by where each was
// started. The clients are closed before it returns.
func goroutinesPerClient(t *testing.T, n int, open func(i int) (close func())) (float64, map[goroutineKind]int) {
	t.Helper()
	before := clientGoroutines()
	closers := make([]func(), n)
	for i := range closers {
		closers[i] = open(i)
	}
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	// Settled: the same count twice in a row, a while apart. Goroutines
	// that come and go (a connect's helpers) are gone by then; those that
	// stay are what an idle client costs.
	after := settledGoroutines()
	delta := map[goroutineKind]int{}
	total := 0
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			delta[k] = d
			total += d
		}
	}
	for k, v := range before {
		if _, ok := after[k]; !ok {
			delta[k] = -v
			total -= v
		}
	}
	return float64(total) / float64(n), delta
}

// describe lists the kinds of goroutines per client, by where they wait
// and where they were started (file:line).
func describe(kinds map[goroutineKind]int, n int) string {
	lines := make([]string, 0, len(kinds))
	for k, v := range kinds {
		lines = append(lines, fmt.Sprintf("  %5.2f  %s  ← %s (%s)", float64(v)/float64(n), k.top, k.createdBy, k.at))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func settledGoroutines() map[goroutineKind]int {
	prev := clientGoroutines()
	for range 50 {
		time.Sleep(100 * time.Millisecond)
		now := clientGoroutines()
		if sameCounts(prev, now) {
			return now
		}
		prev = now
	}
	return prev
}

func sameCounts(a, b map[goroutineKind]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

var createdBy = regexp.MustCompile(`(?m)^created by (\S+)(?: in goroutine \d+)?\n\s+(\S+)`)

// goroutineKind is where a goroutine waits and where it was started.
type goroutineKind struct {
	top       string // the function it is in
	createdBy string // the function that started it
	at        string // file:line of the go statement
}

// clientGoroutines counts the goroutines of this process that are not the
// embedded broker's, by kind.
func clientGoroutines() map[goroutineKind]int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	counts := map[goroutineKind]int{}
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		s := string(g)
		if strings.Contains(s, "mochi-mqtt/server") {
			continue
		}
		lines := strings.Split(s, "\n")
		if len(lines) < 2 {
			continue
		}
		var k goroutineKind
		k.top = lines[1]
		if i := strings.LastIndexByte(k.top, '('); i > 0 {
			k.top = k.top[:i]
		}
		if m := createdBy.FindStringSubmatch(s); m != nil {
			k.createdBy, k.at = m[1], m[2]
			if i := strings.Index(k.at, "/pkg/mod/"); i >= 0 {
				k.at = k.at[i+len("/pkg/mod/"):]
			} else if i := strings.LastIndex(k.at, "/internal/"); i >= 0 {
				k.at = k.at[i+1:]
			} else {
				k.at = filepath.Base(k.at)
			}
			if i := strings.Index(k.at, " +0x"); i >= 0 {
				k.at = k.at[:i]
			}
		}
		counts[k]++
	}
	return counts
}
