package main

import (
	"context"
	"fmt"
	"runtime"
)

// allocationRows measures the allocations and bytes a publish costs, one
// publish at a time (each waits for its outcome), from the process's
// allocation counters: everything the library does for the message is
// counted, on every goroutine.
func allocationRows(x *bench) {
	type kind struct {
		label string
		qos   byte
		key   bool
	}
	kinds := []kind{{"QoS 1 publish (no key)", 1, false}, {"QoS 1 publish with an idempotency key", 1, true},
		{"QoS 0 publish", 0, false}, {"QoS 2 publish", 2, false}}
	for _, k := range kinds {
		allocs := &row{figure: "allocations per " + k.label, digits: 1}
		bytes := &row{figure: "bytes allocated per " + k.label, unit: "B", digits: 0}
		if k.qos == 1 && !k.key {
			allocs.target, allocs.met = "≤ paho + 1", atMostPlus(1)
			bytes.target, bytes.met = "≤ 1.1×", atMostTimes(1.1)
		}
		if k.key {
			allocs.pahoText, bytes.pahoText = "— (no keys)", "— (no keys)"
		}
		for r := 0; r < x.p.rounds; r++ {
			for _, lib := range order(r) {
				if k.key && lib.name == paho.name {
					continue
				}
				a, b, err := measureAllocs(x, lib, k.qos, k.key, 2000)
				if err != nil {
					x.note("%s, %s: %v", lib.name, k.label, err)
					continue
				}
				*samples(allocs, lib) = append(*samples(allocs, lib), a)
				*samples(bytes, lib) = append(*samples(bytes, lib), b)
			}
		}
		x.add(allocs, bytes)
	}
}

func measureAllocs(x *bench, lib library, qos byte, keyed bool, n int) (allocs, bytes float64, err error) {
	c, err := lib.dial(dialOpts{url: x.b.URL(), id: x.id("alloc")})
	if err != nil {
		return 0, 0, err
	}
	defer c.close()
	payload := make([]byte, 64)
	keys := make([]string, 2*n)
	if keyed {
		for i := range keys {
			keys[i] = fmt.Sprintf("key-%d-%d", x.ids.Load(), i)
		}
	}
	ctx := context.Background()
	for i := range n / 4 { // warm-up
		if err := c.publish(ctx, qos, payload, keys[n+i]); err != nil {
			return 0, 0, err
		}
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	for i := range n {
		if err := c.publish(ctx, qos, payload, keys[i]); err != nil {
			return 0, 0, err
		}
	}
	runtime.ReadMemStats(&m1)
	return float64(m1.Mallocs-m0.Mallocs) / float64(n), float64(m1.TotalAlloc-m0.TotalAlloc) / float64(n), nil
}
