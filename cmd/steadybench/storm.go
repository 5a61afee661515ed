package main

import (
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// stormRows takes the broker down for a few seconds under many connected
// clients of one library and measures how they come back: the largest
// share of them that reconnected within one 100 ms window (the herd the
// broker sees) and how long after the broker returned 90 % and all of them
// were connected again.
func stormRows(x *bench) {
	n, down := x.p.stormClients, x.p.stormDown
	what := fmt.Sprintf("storm: %d clients, broker down %v", n, down)
	burst := &row{figure: what + ": largest 100 ms burst", unit: "%", digits: 0, target: "≤ 10 %", met: atMost(10)}
	p90 := &row{figure: what + ": 90 % back after the broker returned", unit: "s", digits: 1, target: "≤ 4 s", met: atMost(4)}
	p100 := &row{figure: what + ": 100 % back", unit: "s", digits: 1, target: "≤ 6 s", met: atMost(6)}
	for r := 0; r < x.p.stormRounds; r++ {
		for _, lib := range order(r) {
			s, err := storm(x, lib, dialOpts{}, nil)
			if err != nil {
				x.note("%s, storm: %v", lib.name, err)
				continue
			}
			*samples(burst, lib) = append(*samples(burst, lib), s.burst)
			*samples(p90, lib) = append(*samples(p90, lib), s.p90)
			*samples(p100, lib) = append(*samples(p100, lib), s.p100)
		}
	}
	x.add(burst, p90, p100)
	if !x.p.stormVariants {
		return
	}
	for _, v := range variants {
		vb := &row{figure: "↳ steadymqtt with " + v.name + ": burst", unit: "%", digits: 0, paho: burst.paho, target: burst.target, met: burst.met}
		v90 := &row{figure: "↳ " + v.name + ": 90 % back", unit: "s", digits: 1, paho: p90.paho, target: p90.target, met: p90.met}
		v100 := &row{figure: "↳ " + v.name + ": 100 % back", unit: "s", digits: 1, paho: p100.paho, target: p100.target, met: p100.met}
		for r := 0; r < x.p.stormRounds; r++ {
			s, err := storm(x, steady, dialOpts{}, v.make)
			if err != nil {
				x.note("storm with %s: %v", v.name, err)
				continue
			}
			vb.steady = append(vb.steady, s.burst)
			v90.steady = append(v90.steady, s.p90)
			v100.steady = append(v100.steady, s.p100)
		}
		x.add(vb, v90, v100)
	}
}

type stormResult struct{ burst, p90, p100 float64 }

// recorder keeps the times at which each client came back.
type recorder struct {
	mu    sync.Mutex
	armed bool
	downs map[int]time.Time
	ups   map[int]time.Time
	wake  chan struct{}
}

func newRecorder() *recorder {
	return &recorder{downs: map[int]time.Time{}, ups: map[int]time.Time{}, wake: make(chan struct{}, 1)}
}

func (r *recorder) hooks(i int, o dialOpts) dialOpts {
	o.up = func(at time.Time) {
		r.mu.Lock()
		// Only a connection after this client's loss counts.
		if down, lost := r.downs[i]; lost && at.After(down) {
			if _, seen := r.ups[i]; !seen {
				r.ups[i] = at
			}
		}
		r.mu.Unlock()
		r.signal()
	}
	o.down = func(at time.Time) {
		r.mu.Lock()
		if _, seen := r.downs[i]; r.armed && !seen {
			r.downs[i] = at
		}
		r.mu.Unlock()
		r.signal()
	}
	return o
}

func (r *recorder) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *recorder) arm() { r.mu.Lock(); r.armed = true; r.mu.Unlock() }

// waitCount waits until count() reaches n or the deadline passes.
func (r *recorder) waitCount(n int, count func() int, deadline time.Time) bool {
	for {
		r.mu.Lock()
		c := count()
		r.mu.Unlock()
		if c >= n {
			return true
		}
		select {
		case <-r.wake:
		case <-time.After(time.Until(deadline)):
			return false
		}
	}
}

// outage takes the broker down for down (counted from the kill), once the
// clients in rec noticed or a while passed, and returns when it was
// started again.
func outage(x *bench, rec *recorder, n int, down time.Duration) (time.Time, error) {
	rec.arm()
	kill := time.Now()
	if err := x.b.Down(); err != nil {
		return time.Time{}, err
	}
	rec.waitCount(n, func() int { return len(rec.downs) }, kill.Add(down))
	time.Sleep(time.Until(kill.Add(down)))
	up := time.Now()
	if err := x.b.Up(); err != nil {
		return time.Time{}, err
	}
	return up, nil
}

func storm(x *bench, lib library, base dialOpts, policy func() backoff.BackOff) (stormResult, error) {
	n := x.p.stormClients
	rec := newRecorder()
	clients, err := dialMany(x, lib, n, func(i int) dialOpts {
		o := base
		o.url, o.id = x.b.URL(), x.id("storm")
		if policy != nil {
			o.backoff = policy()
		}
		return rec.hooks(i, o)
	})
	defer closeAll(clients)
	if err != nil {
		return stormResult{}, err
	}
	time.Sleep(500 * time.Millisecond)
	up, err := outage(x, rec, n, x.p.stormDown)
	if err != nil {
		return stormResult{}, err
	}
	back := rec.waitCount(n, func() int { return len(rec.ups) }, up.Add(90*time.Second))
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var after []float64
	for _, t := range rec.ups {
		after = append(after, math.Max(t.Sub(up).Seconds(), 0))
	}
	sort.Float64s(after)
	res := stormResult{burst: 100 * float64(largestBurst(after, 0.1)) / float64(n)}
	res.p90, res.p100 = math.Inf(1), math.Inf(1)
	if k := int(math.Ceil(0.9*float64(n))) - 1; k < len(after) {
		res.p90 = after[k]
	}
	if back {
		res.p100 = after[n-1]
	}
	return res, nil
}

// largestBurst is the most values of sorted within any window of width w.
func largestBurst(sorted []float64, w float64) int {
	best, j := 0, 0
	for i := range sorted {
		for sorted[i]-sorted[j] > w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// dialMany connects n clients, a few at a time.
func dialMany(x *bench, lib library, n int, opts func(i int) dialOpts) ([]client, error) {
	clients := make([]client, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	work := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				c, err := lib.dial(opts(i))
				mu.Lock()
				clients[i] = c
				if err != nil && first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	return clients, first
}

func closeAll(clients []client) {
	var wg sync.WaitGroup
	for _, c := range clients {
		if c != nil {
			wg.Add(1)
			go func() { defer wg.Done(); c.close() }()
		}
	}
	wg.Wait()
}
