package steadymqtt

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
)

// leakCheck must be the first call of a test: cleanups run last-in
// first-out, so the check runs after the client and brokers are gone.
// Goroutines that existed before the test (the examples' broker) are not
// the test's.
func leakCheck(t *testing.T) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
}

func startEmbedded(t *testing.T, opts ...broker.EmbeddedOption) *broker.Embedded {
	t.Helper()
	b, err := broker.StartEmbedded("127.0.0.1:0", opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Stop() })
	return b
}

// needBroker skips when a broker binary is missing, unless CI asked for
// the interoperability tests to be required.
func needBroker(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, broker.ErrNotInstalled) && os.Getenv("STEADYMQTT_REQUIRE_INTEROP") != "1" {
		t.Skipf("skipping: %v (set STEADYMQTT_REQUIRE_INTEROP=1 to make this a failure)", err)
	}
	require.NoError(t, err)
}

func startMosquitto(t *testing.T, cfg broker.MosquittoConfig) *broker.Process {
	t.Helper()
	p, err := broker.StartMosquitto(t.TempDir(), cfg)
	needBroker(t, err)
	t.Cleanup(func() {
		_ = p.Kill()
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", p.LogText())
		}
	})
	return p
}

// mosquittoBeside starts Mosquitto for a test that also runs against the
// embedded broker: without the binary (and without
// STEADYMQTT_REQUIRE_INTEROP=1) it logs why and returns nil, and the test
// goes on with the embedded broker alone.
func mosquittoBeside(t *testing.T) *broker.Process {
	t.Helper()
	p, err := broker.StartMosquitto(t.TempDir(), broker.MosquittoConfig{})
	switch {
	case err == nil:
		t.Cleanup(func() { _ = p.Kill() })
		return p
	case errors.Is(err, broker.ErrNotInstalled) && os.Getenv("STEADYMQTT_REQUIRE_INTEROP") != "1":
		t.Logf("mosquitto part skipped: %v (set STEADYMQTT_REQUIRE_INTEROP=1 to make this a failure)", err)
		return nil
	}
	require.NoError(t, err)
	return nil
}

// restartable is a broker a test can take down and bring back.
type restartable interface {
	URL() string
	Start() error
	Stop() error
}

// protocolUnderTest is the MQTT version the tests' clients speak unless a
// test says otherwise: STEADYMQTT_PROTOCOL=5 (or auto) runs the suite on
// the MQTT 5 engine; the default is the library's.
func protocolUnderTest() []Option {
	switch os.Getenv("STEADYMQTT_PROTOCOL") {
	case "5":
		return []Option{WithProtocol(ProtocolV5)}
	case "auto":
		return []Option{WithProtocol(ProtocolAuto)}
	case "3.1.1":
		return []Option{WithProtocol(ProtocolV311)}
	}
	return nil
}

func newClient(t *testing.T, opts ...Option) *Client {
	t.Helper()
	c, err := New(append(protocolUnderTest(), opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Close(ctx); !errors.Is(err, ErrNotDelivered) { // tests that leave messages behind check that themselves
			require.NoError(t, err)
		}
	})
	return c
}

func connect(t *testing.T, c *Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, c.Connect(ctx))
}

// recorder keeps every event a client emits.
type recorder struct {
	mu      sync.Mutex
	events  []Event
	changed chan struct{}
	cursor  int
}

func record(c *Client) *recorder {
	r := &recorder{changed: make(chan struct{})}
	c.OnEvent(func(ev Event) {
		r.mu.Lock()
		r.events = append(r.events, ev)
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
	})
	return r
}

func (r *recorder) all() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// next waits for the first event after the previous match that satisfies
// ok, and fails the test after timeout.
func (r *recorder) next(t *testing.T, timeout time.Duration, what string, ok func(Event) bool) Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		for i := r.cursor; i < len(r.events); i++ {
			if ok(r.events[i]) {
				r.cursor = i + 1
				ev := r.events[i]
				r.mu.Unlock()
				return ev
			}
		}
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no event %q within %v; events: %v", what, timeout, r.all())
		}
	}
}

// unread makes the last event matched by next the first one next sees.
func (r *recorder) unread() {
	r.mu.Lock()
	r.cursor--
	r.mu.Unlock()
}

func to(s State) func(Event) bool { return func(ev Event) bool { return ev.To == s && ev.From != s } }

// requireConsistent checks what every subscriber may rely on: Seq strictly
// increasing and each change starting where the previous one ended.
func requireConsistent(t *testing.T, events []Event) {
	t.Helper()
	for i := 1; i < len(events); i++ {
		require.Greater(t, events[i].Seq, events[i-1].Seq, "event %d", i)
		require.Equal(t, events[i-1].To, events[i].From, "event %d: %+v after %+v", i, events[i], events[i-1])
	}
}
