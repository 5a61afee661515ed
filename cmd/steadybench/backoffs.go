package main

import (
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Backoff policies tried beside steadymqtt's default (full jitter over an
// interval from 1 s doubling to 2 min) when -storm-variants is on. Each is
// a backoff.BackOff handed to WithBackoff: nothing here is the library's.

// variant is a policy under a name; make returns a fresh one per client.
type variant struct {
	name string
	make func() backoff.BackOff
}

var variants = []variant{
	{"decorrelated jitter 1 s → 2 min", func() backoff.BackOff { return &decorrelated{base: time.Second, max: 2 * time.Minute} }},
	{"full jitter, interval ≤ the outage so far", func() backoff.BackOff {
		return &outageBounded{initial: time.Second, max: 2 * time.Minute, factor: 1}
	}},
	{"full jitter, interval ≤ 2 × the outage so far", func() backoff.BackOff {
		return &outageBounded{initial: time.Second, max: 2 * time.Minute, factor: 2}
	}},
}

// decorrelated is "decorrelated jitter": each wait is drawn from
// [base, 3 × the previous wait], capped at max.
type decorrelated struct {
	base, max time.Duration
	prev      time.Duration
}

func (d *decorrelated) NextBackOff() time.Duration {
	if d.prev < d.base {
		d.prev = d.base
	}
	hi := min(3*d.prev, d.max)
	w := d.base + time.Duration(rand.Int64N(int64(hi-d.base)+1))
	d.prev = w
	return w
}

func (d *decorrelated) Reset() { d.prev = 0 }

// outageBounded is full jitter whose interval doubles from initial to max
// but never exceeds factor × the time since the first failure after a
// reset (nor falls below initial): a fleet that lost its broker a moment
// ago comes back within about factor × as long again, spread over that
// time, while a long outage meets the usual growing waits.
type outageBounded struct {
	initial, max time.Duration
	factor       float64
	ceiling      time.Duration
	since        time.Time
}

func (o *outageBounded) NextBackOff() time.Duration {
	now := time.Now()
	if o.ceiling <= 0 {
		o.ceiling, o.since = o.initial, now
	}
	c := min(o.ceiling, o.max, max(o.initial, time.Duration(o.factor*float64(now.Sub(o.since)))))
	o.ceiling = min(2*o.ceiling, o.max)
	return time.Duration(rand.Int64N(int64(c) + 1))
}

func (o *outageBounded) Reset() { o.ceiling = 0 }
