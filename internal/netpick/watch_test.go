package netpick

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/clock"
	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/netif"
)

// lockedHost is a fake host the test changes while the watcher reads it.
type lockedHost struct {
	mu sync.Mutex
	f  *netif.Fake
}

func (h *lockedHost) Interfaces() ([]netif.Interface, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]netif.Interface(nil), h.f.List...), nil
}

func (h *lockedHost) set(i int, up bool) {
	h.mu.Lock()
	h.f.List[i].Up = up
	h.mu.Unlock()
}

type closer struct {
	mu    sync.Mutex
	cause error
}

func (c *closer) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.ParseIP("198.51.100.7")} }
func (c *closer) CloseWithError(err error) error {
	c.mu.Lock()
	c.cause = err
	c.mu.Unlock()
	return nil
}

// watch runs the watcher on a fake clock until it closed the connection,
// calling step after each of its polls.
func watch(t *testing.T, p *Picker, clk *clock.Fake, ch Choice, step func(elapsed time.Duration)) (*closer, time.Duration) {
	t.Helper()
	conn := &closer{}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { defer close(done); p.Watch(ch, conn, stop) }()
	t.Cleanup(func() { close(stop); <-done })
	start := clk.Now()
	for i := 0; i < 10000; i++ {
		waiting := make(chan struct{})
		go func() { clk.BlockUntil(1); close(waiting) }()
		select {
		case <-done:
			return conn, clk.Now().Sub(start)
		case <-waiting:
		}
		step(clk.AdvanceToNext().Sub(start))
	}
	t.Fatal("the watcher never closed the connection")
	return nil, 0
}

func TestFailbackAfterThePreferredInterfaceStayedUsable(t *testing.T) {
	host := &lockedHost{f: host()}
	clk := clock.NewFake(time.Now())
	p := New(Config{Interfaces: []string{"eth0", "wlan0"}, Family: FamilyIPv4, Failback: 5 * time.Second,
		Brokers: 1, Host: host, Clock: clk})
	onWLAN, err := p.Choose()
	require.NoError(t, err)
	require.Equal(t, "eth0", onWLAN.Interface)
	p.Failed(onWLAN, nil) // eth0 failed: the next attempt goes out on wlan0
	onWLAN, err = p.Choose()
	require.NoError(t, err)
	require.Equal(t, "wlan0", onWLAN.Interface)
	p.Connected(onWLAN)

	// eth0 flaps: down for a while after 2 s, which restarts its clock.
	var flapEnd time.Duration
	conn, after := watch(t, p, clk, onWLAN, func(elapsed time.Duration) {
		switch {
		case elapsed >= 2*time.Second && elapsed < 3*time.Second:
			host.set(1, false)
		case elapsed >= 3*time.Second && flapEnd == 0:
			host.set(1, true)
			flapEnd = elapsed
		}
	})
	require.ErrorIs(t, conn.cause, errs.NetworkChanged)
	require.GreaterOrEqual(t, after, flapEnd+5*time.Second, "moved back before eth0 was usable for the whole period")
	require.Less(t, after, flapEnd+5*time.Second+2*WatchInterval)
	back, err := p.Choose()
	require.NoError(t, err)
	require.Equal(t, "eth0", back.Interface, "the next attempt goes back to eth0")

	// That fail-back failed (eth0's link was up, its path was not): the
	// next one waits twice as long.
	p.Failed(back, nil)
	require.Equal(t, 10*time.Second, p.FailbackWait(0))
}

func TestBoundInterfaceGoingDownDropsTheConnection(t *testing.T) {
	host := &lockedHost{f: host()}
	clk := clock.NewFake(time.Now())
	p := New(Config{Interfaces: []string{"eth0"}, Family: FamilyIPv4, Failback: time.Hour, Brokers: 1, Host: host, Clock: clk})
	ch, err := p.Choose()
	require.NoError(t, err)
	conn, after := watch(t, p, clk, ch, func(elapsed time.Duration) {
		if elapsed >= time.Second {
			host.set(1, false)
		}
	})
	require.ErrorIs(t, conn.cause, errs.NetworkChanged)
	require.ErrorIs(t, conn.cause, errs.InterfaceDown)
	require.LessOrEqual(t, after, time.Second+2*WatchInterval)
	require.False(t, errors.Is(conn.cause, errs.NoCarrier))
}
