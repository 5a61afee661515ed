package main

import (
	"fmt"
	"sync"
	"syscall"
	"time"
)

// idleCPURows measures the CPU that many idle clients cost, the client
// process (a fresh one per library) and the broker, over a window after
// all are connected and settled. Off unless -idle-clients or the full
// preset asks for it.
func idleCPURows(x *bench) {
	n := x.p.idleClients
	many := fmt.Sprintf("%d idle clients, %v", n, x.p.idleWindow)
	if n <= 0 {
		many = "many idle clients"
	}
	cli := &row{figure: many + ": CPU of the client process (% of one core)", unit: "%", digits: 1, target: "≤ 1.0×", met: atMostTimes(1.0)}
	brk := &row{figure: many + ": CPU of the broker (% of one core)", unit: "%", digits: 1, target: "≤ 1.0×", met: atMostTimes(1.0)}
	if n <= 0 {
		x.add(skipped(cli, "off; -idle-clients 10000 or the full preset"), skipped(brk, "off"))
		return
	}
	pid := x.b.Pid()
	for r := 0; r < x.p.slowRounds; r++ {
		for _, lib := range order(r) {
			c, err := startChild("idle", lib, "-broker", x.b.URL(), "-n", fmt.Sprint(n), "-window", x.p.idleWindow.String())
			if err != nil {
				x.note("idle CPU of %s: %v", lib.name, err)
				continue
			}
			if _, err := c.waitFor("ready"); err != nil {
				x.note("idle CPU of %s: %v", lib.name, err)
				_ = c.cmd.Wait()
				continue
			}
			b0, _ := cpuSeconds(pid)
			t0 := time.Now()
			_, err = c.waitFor("window-end")
			b1, _ := cpuSeconds(pid)
			wall := time.Since(t0).Seconds()
			var res idleCPU
			if err == nil {
				err = c.result(&res) // after the child closed its clients
			}
			if err != nil {
				x.note("idle CPU of %s: %v", lib.name, err)
				continue
			}
			*samples(cli, lib) = append(*samples(cli, lib), 100*res.CPU/res.Wall)
			*samples(brk, lib) = append(*samples(brk, lib), 100*(b1-b0)/wall)
		}
	}
	x.add(cli, brk)
	x.note("idle CPU: keepalive 30 s (both libraries' default), one fresh client process per library and round; the broker's CPU read from /proc over the same window")
}

type idleCPU struct {
	CPU, Wall float64 // seconds
}

func rusageSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// childIdleCPU connects n clients, waits for the connects to settle,
// prints "ready" and returns its own CPU over the window.
func childIdleCPU(lib library, url string, n int, window time.Duration) (idleCPU, error) {
	id := fmt.Sprintf("idle-%d", time.Now().UnixNano())
	clients := make([]client, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	work := make(chan int)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				var c client
				var err error
				for try := 0; try < 5; try++ { // a loaded broker may refuse a burst of connects
					if c, err = lib.dial(dialOpts{url: url, id: fmt.Sprintf("%s-%d", id, i)}); err == nil {
						break
					}
					time.Sleep(200 * time.Millisecond)
				}
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
	defer func() {
		var cw sync.WaitGroup
		for _, c := range clients {
			if c != nil {
				cw.Add(1)
				go func() { defer cw.Done(); c.close() }()
			}
		}
		cw.Wait()
	}()
	if first != nil {
		return idleCPU{}, fmt.Errorf("connecting %d clients: %w", n, first)
	}
	time.Sleep(5 * time.Second)
	fmt.Println("ready")
	c0, t0 := rusageSeconds(), time.Now()
	time.Sleep(window)
	res := idleCPU{CPU: rusageSeconds() - c0, Wall: time.Since(t0).Seconds()}
	fmt.Println("window-end") // before the clients are closed
	return res, nil
}
