package main

import (
	"sync"
	"time"

	"github.com/steadymqtt/steadymqtt/internal/testsupport/netproxy"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// idleLinkRows measures, for one idle client of each library, the PINGREQs
// it sends per keepalive period (counted on the wire by a proxy), and the
// time it takes to notice that the link went dead (a relay that forwards
// nothing more and keeps the client's socket open). The libraries run side by side, each behind
// its own proxy: these rows mostly wait.
func idleLinkRows(x *bench) {
	pings := &row{figure: "PINGREQs per keepalive period, one idle client (keepalive " + x.p.pingKeepAlive.String() + ")",
		digits: 2, target: "≤ 1", met: atMost(1)}
	dead := &row{figure: "dead link (blackholed) noticed after, keepalive " + x.p.deadKeepAlive.String(),
		unit: "s", digits: 1, target: "≤ 1.5 × keepalive", met: atMost(1.5 * x.p.deadKeepAlive.Seconds())}
	for r := 0; r < x.p.slowRounds; r++ {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, lib := range order(r) {
			wg.Add(2)
			go func() {
				defer wg.Done()
				n, err := countPings(x, lib)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					x.note("%s, pings: %v", lib.name, err)
					return
				}
				*samples(pings, lib) = append(*samples(pings, lib), n)
			}()
			go func() {
				defer wg.Done()
				d, err := deadLink(x, lib)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					x.note("%s, dead link: %v", lib.name, err)
					return
				}
				*samples(dead, lib) = append(*samples(dead, lib), d.Seconds())
			}()
		}
		wg.Wait()
	}
	x.add(pings, dead)
}

// samples is the list of r that holds lib's figures.
func samples(r *row, lib library) *[]float64 {
	if lib.name == paho.name {
		return &r.paho
	}
	return &r.steady
}

// pingCounter counts the PINGREQs clients send through a proxy.
type pingCounter struct {
	mu      sync.Mutex
	parsers map[int]*wire.Parser
	n       int
}

func (p *pingCounter) feed(conn int, b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ps := p.parsers[conn]
	if ps == nil {
		ps = &wire.Parser{}
		p.parsers[conn] = ps
	}
	ps.Feed(b, func(h wire.Header) {
		if h.Type == wire.PINGREQ {
			p.n++
		}
	})
}

func (p *pingCounter) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// countPings connects one idle client through a proxy and returns its
// PINGREQs per keepalive period over the watch, after one period to settle.
func countPings(x *bench, lib library) (float64, error) {
	proxy, err := netproxy.Start(x.b.Addr())
	if err != nil {
		return 0, err
	}
	defer proxy.Close()
	pc := &pingCounter{parsers: map[int]*wire.Parser{}}
	proxy.Tap(pc.feed)
	ka := x.p.pingKeepAlive
	c, err := lib.dial(dialOpts{url: proxy.URL(), id: x.id("ping"), keepAlive: ka})
	if err != nil {
		return 0, err
	}
	defer c.close()
	time.Sleep(ka)
	n0 := pc.count()
	time.Sleep(x.p.pingWatch)
	return float64(pc.count()-n0) / (float64(x.p.pingWatch) / float64(ka)), nil
}

// deadLink connects one client through a proxy, lets it idle for a
// keepalive, blackholes the proxy and returns how long the client took to
// report the connection lost.
func deadLink(x *bench, lib library) (time.Duration, error) {
	proxy, err := startBlackhole(x.b.Addr())
	if err != nil {
		return 0, err
	}
	defer proxy.Close()
	lost := make(chan time.Time, 1)
	ka := x.p.deadKeepAlive
	c, err := lib.dial(dialOpts{url: proxy.URL(), id: x.id("dead"), keepAlive: ka, down: func(at time.Time) {
		select {
		case lost <- at:
		default:
		}
	}})
	if err != nil {
		return 0, err
	}
	defer c.close()
	time.Sleep(ka)
	start := time.Now()
	proxy.Cut()
	select {
	case at := <-lost:
		return at.Sub(start), nil
	case <-time.After(4*ka + 30*time.Second):
		return 0, errTimeout("no loss reported")
	}
}

type errTimeout string

func (e errTimeout) Error() string { return string(e) }
