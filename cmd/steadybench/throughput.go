package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// throughputRows measures messages per second of 64-byte publishes, each
// publisher waiting for its own outcome (written for QoS 0, acknowledged
// for QoS 1 and 2): one publisher (1 in flight), and 100 of them (100 in
// flight; steadymqtt with WithInFlight(100) so that its window is not the
// limit). A busy machine moves these figures: read them as approximate.
func throughputRows(x *bench) {
	type kind struct {
		qos      byte
		inFlight int
	}
	for _, k := range []kind{{0, 1}, {1, 1}, {0, 100}, {1, 100}, {2, 100}} {
		r := &row{figure: fmt.Sprintf("QoS %d, %d in flight, 64 B", k.qos, k.inFlight), unit: "msg/s", digits: 0}
		if k.qos == 0 && k.inFlight == 1 || k.inFlight == 100 {
			r.target, r.met = "≥ 1.0×", atLeastTimes(1.0)
		}
		for round := 0; round < x.p.rounds; round++ {
			for _, lib := range order(round) {
				rate, err := measureRate(x, lib, k.qos, k.inFlight)
				if err != nil {
					x.note("%s, %s: %v", lib.name, r.figure, err)
					continue
				}
				*samples(r, lib) = append(*samples(r, lib), rate)
			}
		}
		x.add(r)
	}
}

func measureRate(x *bench, lib library, qos byte, inFlight int) (float64, error) {
	c, err := lib.dial(dialOpts{url: x.b.URL(), id: x.id("rate"), inFlight: max(inFlight, 32)})
	if err != nil {
		return 0, err
	}
	defer c.close()
	payload := make([]byte, 64)
	// A publish that waits much longer than the sample means the client
	// lost its connection: the sample fails instead of hanging.
	ctx, cancel := context.WithTimeout(context.Background(), x.p.throughputFor+30*time.Second)
	defer cancel()
	for range 200 { // warm-up
		if err := c.publish(ctx, qos, payload, ""); err != nil {
			return 0, err
		}
	}
	var done atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	stop := make(chan struct{})
	start := time.Now()
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := c.publish(ctx, qos, payload, ""); err != nil {
					failed.Store(&err)
					return
				}
				done.Add(1)
			}
		}()
	}
	time.Sleep(x.p.throughputFor)
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)
	if e := failed.Load(); e != nil {
		return 0, *e
	}
	return float64(done.Load()) / elapsed.Seconds(), nil
}
