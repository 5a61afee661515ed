package main

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/steadymqtt/steadymqtt/internal/testsupport/netproxy"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// replayRows publishes many QoS 1 messages while the broker is down and
// measures, on the wire (a proxy between client and broker), how the
// backlog drains once it is back: the rate from the new connection's
// CONNACK to the last PUBACK, the most PUBLISHes sent and not yet
// acknowledged at any moment, and the publishes that the library reported
// done before their PUBACK had crossed the proxy.
func replayRows(x *bench) {
	n := x.p.replay
	what := fmt.Sprintf("replay %d QoS 1 after an outage", n)
	rate := &row{figure: what + ": drain rate", unit: "msg/s", digits: 0, target: "≥ 0.9× paho", met: atLeastTimes(0.9)}
	peak := &row{figure: what + ": most in flight", digits: 0, target: "bounded"}
	early := &row{figure: what + ": completed before their PUBACK", digits: 0, target: "0", met: atMost(0)}
	run := func(lib library, window int, rs [3]*row) {
		res, err := replay(x, lib, window)
		if err != nil {
			x.note("%s, replay (window %d): %v", lib.name, window, err)
			return
		}
		*samples(rs[0], lib) = append(*samples(rs[0], lib), res.rate)
		*samples(rs[1], lib) = append(*samples(rs[1], lib), float64(res.peak))
		*samples(rs[2], lib) = append(*samples(rs[2], lib), float64(res.early))
	}
	for r := 0; r < x.p.slowRounds; r++ {
		for _, lib := range order(r) {
			run(lib, 0, [3]*row{rate, peak, early})
		}
	}
	x.add(rate, peak, early)
	for _, w := range x.p.replayWindows {
		wr := &row{figure: fmt.Sprintf("↳ steadymqtt WithInFlight(%d): drain rate", w), unit: "msg/s", digits: 0, paho: rate.paho, target: rate.target, met: rate.met}
		wp := &row{figure: fmt.Sprintf("↳ WithInFlight(%d): most in flight", w), digits: 0, paho: peak.paho}
		we := &row{figure: fmt.Sprintf("↳ WithInFlight(%d): completed before their PUBACK", w), digits: 0, paho: early.paho, target: "0", met: atMost(0)}
		for range x.p.slowRounds {
			run(steady, w, [3]*row{wr, wp, we})
		}
		x.add(wr, wp, we)
	}
}

type replayResult struct {
	rate        float64
	peak, early int
}

// wireCount follows one client's connections through the proxy.
type wireCount struct {
	mu        sync.Mutex
	parsers   map[int]*wire.Parser
	first     int // the connection that was up before the outage
	connackAt time.Time
	lastAckAt time.Time
	pubs      int
	acks      atomic.Int64
	peak      int
	want      int
}

func (w *wireCount) fromClient(conn int, b []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ps := w.parsers[conn]
	if ps == nil {
		ps = &wire.Parser{}
		w.parsers[conn] = ps
	}
	ps.Feed(b, func(h wire.Header) {
		if h.Type == wire.PUBLISH && conn != w.first {
			w.pubs++
			w.peak = max(w.peak, w.pubs-int(w.acks.Load()))
		}
	})
}

func (w *wireCount) fromBroker(conn int, h wire.Header, dropped bool) {
	if dropped {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.first == 0 && h.Type == wire.CONNACK:
		w.first = conn
	case conn == w.first:
	case h.Type == wire.CONNACK && w.connackAt.IsZero():
		w.connackAt = time.Now()
	case h.Type == wire.PUBACK:
		if int(w.acks.Add(1)) == w.want {
			w.lastAckAt = time.Now()
		}
	}
}

func replay(x *bench, lib library, window int) (replayResult, error) {
	n := x.p.replay
	proxy, err := netproxy.Start(x.b.Addr())
	if err != nil {
		return replayResult{}, err
	}
	defer proxy.Close()
	wc := &wireCount{parsers: map[int]*wire.Parser{}, want: n}
	proxy.Tap(wc.fromClient)
	proxy.ObserveFromBroker(wc.fromBroker)
	rec := newRecorder()
	c, err := lib.dial(rec.hooks(0, dialOpts{url: proxy.URL(), id: x.id("replay"), inFlight: window, outbox: 2 * n}))
	if err != nil {
		return replayResult{}, err
	}
	defer c.close()
	rec.arm()
	kill := time.Now()
	if err := x.b.Down(); err != nil {
		return replayResult{}, err
	}
	if !rec.waitCount(1, func() int { return len(rec.downs) }, kill.Add(10*time.Second)) {
		_ = x.b.Up()
		return replayResult{}, errTimeout("the loss was not noticed")
	}
	payload := make([]byte, 64)
	var completed, early atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	for range n {
		o := c.publishAsync(1, payload)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-o.Done()
			if err := o.Err(); err != nil {
				failed.Store(&err)
				return
			}
			if completed.Add(1) > wc.acks.Load() {
				early.Add(1)
			}
		}()
	}
	if err := x.b.Up(); err != nil {
		return replayResult{}, err
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		return replayResult{}, fmt.Errorf("%d of %d completed, %d PUBACKs seen, in 90 s", completed.Load(), n, wc.acks.Load())
	}
	if e := failed.Load(); e != nil {
		return replayResult{}, *e
	}
	// The PUBACKs may trail a library that completed early.
	for end := time.Now().Add(30 * time.Second); wc.acks.Load() < int64(n) && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
	wc.mu.Lock()
	defer wc.mu.Unlock()
	if wc.lastAckAt.IsZero() || wc.connackAt.IsZero() {
		return replayResult{}, fmt.Errorf("%d PUBACKs seen of %d", wc.acks.Load(), n)
	}
	return replayResult{rate: float64(n) / wc.lastAckAt.Sub(wc.connackAt).Seconds(), peak: wc.peak, early: int(early.Load())}, nil
}
