package keepalive

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/clock"
	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// peer is a broker on the far end of a fake socket: it answers PINGREQs
// (or not, once silent) and records when each one came.
type peer struct {
	net.Conn // nil: only the methods below are used
	clk      *clock.Fake
	toReader chan []byte
	readDone chan struct{}

	mu     sync.Mutex
	silent bool
	pings  []time.Time
}

func (p *peer) Write(b []byte) (int, error) {
	if len(b) == 2 && b[0] == wire.PINGREQ<<4 {
		p.mu.Lock()
		p.pings = append(p.pings, p.clk.Now())
		silent := p.silent
		p.mu.Unlock()
		if !silent {
			p.toReader <- []byte{wire.PINGRESP << 4, 0}
			<-p.readDone
		}
	}
	return len(b), nil
}

func (p *peer) Read(b []byte) (int, error) {
	msg, ok := <-p.toReader
	if !ok {
		return 0, net.ErrClosed
	}
	return copy(b, msg), nil
}

func (p *peer) SetWriteDeadline(time.Time) error { return nil }
func (p *peer) Close() error                     { return nil }

func (p *peer) pingTimes() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.pings...)
}

type run struct {
	clk   *clock.Fake
	peer  *peer
	conn  *wire.Conn
	start time.Time
	done  chan struct{}

	mu       sync.Mutex
	degraded []time.Time
}

func start(t *testing.T, cfg Config) *run {
	t.Helper()
	clk := clock.NewFake(time.Now())
	p := &peer{clk: clk, toReader: make(chan []byte), readDone: make(chan struct{})}
	conn := wire.NewConn(p, clk.Now)
	go func() {
		buf := make([]byte, 16)
		for {
			if _, err := conn.Read(buf); err != nil {
				return
			}
			p.readDone <- struct{}{}
		}
	}()
	r := &run{clk: clk, peer: p, conn: conn, start: clk.Now(), done: make(chan struct{})}
	cfg.Clock = clk
	stop := make(chan struct{})
	go func() {
		defer close(r.done)
		Run(cfg, conn, func(why error) {
			if why != nil {
				r.mu.Lock()
				r.degraded = append(r.degraded, clk.Now())
				r.mu.Unlock()
			}
		}, stop)
	}()
	t.Cleanup(func() {
		close(stop)
		<-r.done
		close(p.toReader)
	})
	return r
}

// until drives the fake clock from one of the monitor's wake-ups to the
// next until d has passed or the monitor ended.
func (r *run) until(d time.Duration) {
	for r.clk.Now().Sub(r.start) < d {
		select {
		case <-r.done:
			return
		default:
		}
		waited := make(chan struct{})
		go func() { r.clk.BlockUntil(1); close(waited) }()
		select {
		case <-waited:
		case <-r.done:
			return
		}
		r.clk.AdvanceToNext()
	}
}

func TestIdleLinkCarriesOnePingPerKeepalive(t *testing.T) {
	const ka = 10 * time.Second
	r := start(t, Config{KeepAlive: ka})
	r.until(100 * time.Second)
	pings := r.peer.pingTimes()
	require.NotEmpty(t, pings)
	require.Equal(t, ka-pingMargin, pings[0].Sub(r.start), "the first ping goes a keepalive (less the margin) after the last packet")
	for i := 1; i < len(pings); i++ {
		require.GreaterOrEqual(t, pings[i].Sub(pings[i-1]), ka-pingMargin, "ping %d came too soon", i)
		require.Less(t, pings[i].Sub(pings[i-1]), ka, "ping %d: the broker must hear from the client within a keepalive", i)
	}
	require.Len(t, pings, 10, "100 s at keepalive 10 s")
	require.Empty(t, r.degraded, "a link that answers at once is never degraded")
	require.Nil(t, r.conn.Cause())
}

func TestSilentLinkIsDegradedThenDroppedWithinTheDeadline(t *testing.T) {
	const ka = 10 * time.Second
	r := start(t, Config{KeepAlive: ka})
	r.peer.mu.Lock()
	r.peer.silent = true // the path dies right after the connection came up
	r.peer.mu.Unlock()
	r.until(time.Minute)
	<-r.done
	require.ErrorIs(t, r.conn.Cause(), errs.KeepaliveTimeout)
	dead := r.clk.Now().Sub(r.start)
	require.GreaterOrEqual(t, dead, time.Duration(DeadAfter*float64(ka)))
	require.LessOrEqual(t, dead, ka*3/2, "the promise: a dead link is left within 1.5 × keepalive")
	require.NotEmpty(t, r.degraded, "degraded is shown before the link is dropped")
	first := r.degraded[0].Sub(r.start)
	require.GreaterOrEqual(t, first, time.Duration(DegradedAfter*float64(ka)))
	require.Less(t, first, dead)
	require.Len(t, r.peer.pingTimes(), 1, "one outstanding ping is enough")
}
