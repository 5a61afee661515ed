package manager

import (
	"context"
	"errors"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/steadymqtt/steadymqtt/internal/clock"
	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/netpick"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// fakeEngine accepts every CONNECT; the test ends each session by hand.
type fakeEngine struct{ sessions chan *fakeSession }

func (e fakeEngine) Connect(_ context.Context, conn *wire.Conn, _ engine.Options) (engine.Session, error) {
	s := &fakeSession{conn: conn, lost: make(chan error, 1)}
	e.sessions <- s
	return s, nil
}

type fakeSession struct {
	conn *wire.Conn
	lost chan error
}

func (s *fakeSession) SessionPresent() bool                  { return false }
func (s *fakeSession) Publish(engine.Message) engine.Pending { panic("not used") }
func (s *fakeSession) Subscribe(context.Context, string, byte) (byte, error) {
	return 0, errors.New("not used")
}
func (s *fakeSession) Unsubscribe(context.Context, ...string) error { return nil }
func (s *fakeSession) Disconnect(time.Duration)                     { _ = s.conn.Close() }
func (s *fakeSession) Version() byte                                { return 4 }
func (s *fakeSession) ReceiveMaximum() int                          { return 0 }
func (s *fakeSession) ClientID() string                             { return "fake" }
func (s *fakeSession) Acks() uint64                                 { return 0 }
func (s *fakeSession) Lost() <-chan error                           { return s.lost }

// kick ends the connection as an engine does: closed, then reported.
func (s *fakeSession) kick(err error) {
	_ = s.conn.Close()
	s.lost <- err
}

type countingBackOff struct {
	mu           sync.Mutex
	next, resets int
}

func (b *countingBackOff) NextBackOff() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next++
	return time.Second
}

func (b *countingBackOff) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.resets++
}

func (b *countingBackOff) counts() (next, resets int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.next, b.resets
}

// listener accepts TCP connections for the dial stage and holds them.
func listener(t *testing.T) *url.URL {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var conns []net.Conn
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return &url.URL{Scheme: "tcp", Host: l.Addr().String()}
}

// Only a connection that stayed up for the stable period resets the
// backoff; one the broker drops sooner (a duplicate client ID, an ACL
// kick) meets growing delays. Driven by a fake clock: no sleeps.
func TestBackoffResetsOnlyAfterAStableConnection(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // runs last, after the listener is gone
	clk := clock.NewFake(time.Now())
	eng := fakeEngine{sessions: make(chan *fakeSession, 1)}
	bo := &countingBackOff{}
	ups, losses := make(chan struct{}, 4), make(chan error, 4)
	cfg := Config{
		Brokers: []*url.URL{listener(t)}, ClientID: "c", KeepAlive: time.Hour, ConnectTimeout: 5 * time.Second,
		StableAfter: 30 * time.Second, Backoff: bo, Picker: netpick.New(netpick.Config{Clock: clk}),
		Engine: eng, Clock: clk,
	}
	hooks := Hooks{
		Attempt: func(string, string) uint64 { return 1 },
		Failed:  func(uint64, error, time.Duration) { t.Error("no attempt should fail") },
		Up:      func(uint64, *wire.Conn, bool) { ups <- struct{}{} },
		Lost:    func(_ uint64, err error, _ time.Duration) { losses <- err },
		Degrade: func(uint64, error) {},
		Live:    func(engine.Session) {},
		Restore: func(context.Context, engine.Session, bool) error { return nil },
		Serve:   func(_ engine.Session, _ *wire.Conn, end <-chan struct{}) { <-end },
		Flush:   func(context.Context, *wire.Conn) {},
		CloseContext: func() context.Context {
			return context.Background()
		},
	}
	stop, cancel := context.WithCancel(context.Background())
	ran := make(chan error)
	go func() { ran <- New(cfg, hooks, stop).Run() }()

	// Up for the stable period, then lost: the backoff starts afresh.
	s := <-eng.sessions
	<-ups
	clk.Advance(30 * time.Second)
	s.kick(errors.New("kicked"))
	require.ErrorContains(t, <-losses, "kicked")
	next, resets := bo.counts()
	require.Equal(t, 1, resets)
	require.Equal(t, 1, next)

	// The manager waits its delay on the fake clock.
	s = nextSession(t, clk, eng)
	<-ups
	clk.Advance(29 * time.Second) // not stable yet
	s.kick(errors.New("kicked again"))
	<-losses
	next, resets = bo.counts()
	require.Equal(t, 1, resets, "a connection shorter than the stable period earns no reset")
	require.Equal(t, 2, next)

	nextSession(t, clk, eng)
	<-ups
	cancel()
	require.NoError(t, <-ran)
}

// nextSession moves the fake clock on until the manager's wait is over
// and it made its next connection.
func nextSession(t *testing.T, clk *clock.Fake, eng fakeEngine) *fakeSession {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case s := <-eng.sessions:
			return s
		case <-deadline:
			t.Fatal("no new connection")
		case <-time.After(5 * time.Millisecond):
			clk.Advance(100 * time.Millisecond)
		}
	}
}

var _ backoff.BackOff = (*countingBackOff)(nil)
