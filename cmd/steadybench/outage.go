package main

import (
	"fmt"
	"time"
)

// outageRows takes the broker down for 2 s and for 5 s under one idle
// client of each library (and of each backoff variant, when asked), all
// in the same outage, and measures the time from the broker's restart to
// each client being connected again.
func outageRows(x *bench) {
	type contender struct {
		lib  library
		opts dialOpts
		row  *row
		v    *variant
	}
	for _, down := range []time.Duration{2 * time.Second, 5 * time.Second} {
		target, limit := "median ≤ 1.5 s", 1.5
		if down > 2*time.Second {
			target, limit = "median ≤ 2.5 s", 2.5
		}
		main := &row{figure: fmt.Sprintf("one client, broker down %v: broker up → connected", down), unit: "s", digits: 1, target: target, met: atMost(limit)}
		cs := []contender{{lib: paho, row: main}, {lib: steady, row: main}}
		if x.p.stormVariants {
			for i := range variants {
				v := &variants[i]
				cs = append(cs, contender{lib: steady, v: v, row: &row{figure: "↳ steadymqtt with " + v.name, unit: "s", digits: 1, target: target, met: atMost(limit)}})
			}
		}
		for r := 0; r < x.p.slowRounds; r++ {
			rec := newRecorder()
			clients := make([]client, 0, len(cs))
			for i, c := range cs {
				o := c.opts
				o.url, o.id = x.b.URL(), x.id("outage")
				if c.v != nil {
					o.backoff = c.v.make()
				}
				cl, err := c.lib.dial(rec.hooks(i, o))
				if err != nil {
					x.note("outage, %s: %v", c.lib.name, err)
					continue
				}
				clients = append(clients, cl)
			}
			up, err := outage(x, rec, len(clients), down)
			if err != nil {
				x.note("outage: %v", err)
				closeAll(clients)
				continue
			}
			rec.waitCount(len(clients), func() int { return len(rec.ups) }, up.Add(60*time.Second))
			rec.mu.Lock()
			for i, c := range cs {
				if at, ok := rec.ups[i]; ok {
					*samples(c.row, c.lib) = append(*samples(c.row, c.lib), max(at.Sub(up), 0).Seconds())
				}
			}
			rec.mu.Unlock()
			closeAll(clients)
		}
		x.add(main)
		for _, c := range cs[2:] {
			c.row.paho = main.paho
			x.add(c.row)
		}
	}
}
