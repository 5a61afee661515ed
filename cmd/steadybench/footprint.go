package main

import (
	"fmt"
	"runtime"
	"time"
)

// footprintRows measures what an idle, connected client costs: heap,
// goroutine stacks and goroutines, each library in a fresh process.
func footprintRows(x *bench) {
	heap := &row{figure: "idle client: heap, fresh process", unit: "KiB", digits: 1, target: "≤ 1.2×", met: atMostTimes(1.2)}
	stacks := &row{figure: "idle client: goroutine stacks, fresh process", unit: "KiB", digits: 1, target: "≤ 1.2×", met: atMostTimes(1.2)}
	gs := &row{figure: "idle client: goroutines", digits: 1, target: "≤ paho + 1", met: atMostPlus(1)}
	for r := 0; r < x.p.slowRounds; r++ {
		for _, lib := range order(r) {
			c, err := startChild("footprint", lib, "-broker", x.b.URL(), "-n", fmt.Sprint(x.p.footprintN))
			if err != nil {
				x.note("footprint of %s: %v", lib.name, err)
				continue
			}
			var f footprint
			if err := c.result(&f); err != nil {
				x.note("footprint of %s: %v", lib.name, err)
				continue
			}
			*samples(heap, lib) = append(*samples(heap, lib), f.Heap/1024)
			*samples(stacks, lib) = append(*samples(stacks, lib), f.Stacks/1024)
			*samples(gs, lib) = append(*samples(gs, lib), f.Goroutines)
		}
	}
	x.add(heap, stacks, gs)
	x.note("idle footprint: per client, over %d clients connected after one warm-up client, in a fresh process per library; heap is live heap after GC", x.p.footprintN)
}

// footprint is what one idle client costs, on average.
type footprint struct {
	Heap, Stacks, Goroutines float64
}

type memSample struct {
	heap, stacks uint64
	goroutines   int
}

func sampleMemory() memSample {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memSample{heap: m.HeapAlloc, stacks: m.StackInuse, goroutines: runtime.NumGoroutine()}
}

// childFootprint connects a warm-up client, then n more, lets them idle,
// and returns the cost per client of the n.
func childFootprint(lib library, url string, n int) (footprint, error) {
	id := fmt.Sprintf("fp-%d", time.Now().UnixNano())
	warm, err := lib.dial(dialOpts{url: url, id: id + "-warm"})
	if err != nil {
		return footprint{}, err
	}
	defer warm.close()
	time.Sleep(200 * time.Millisecond)
	before := sampleMemory()
	clients := make([]client, 0, n)
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()
	for i := range n {
		c, err := lib.dial(dialOpts{url: url, id: fmt.Sprintf("%s-%d", id, i)})
		if err != nil {
			return footprint{}, err
		}
		clients = append(clients, c)
	}
	time.Sleep(time.Second) // what a connect leaves behind is gone
	after := sampleMemory()
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	return footprint{
		Heap:       per(after.heap, before.heap),
		Stacks:     per(after.stacks, before.stacks),
		Goroutines: float64(after.goroutines-before.goroutines) / float64(n),
	}, nil
}
