package mqtttest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
)

// Broker is an MQTT 3.1.1 broker running in the test process on a loopback
// port, behind a proxy that can freeze the link (see Freeze). Its methods
// are safe for concurrent use.
type Broker struct {
	tb       testing.TB // nil for a broker from Start
	embedded *broker.Embedded
	link     *link
	url      string
	gate     *gate
	presence *presence

	mu     sync.Mutex // orders Start, Stop and Close
	closed bool
}

// NewBroker starts a broker on a free loopback port for the test tb and
// closes it when the test ends (tb.Cleanup). It fails the test with
// tb.Fatalf when the broker cannot start. Stop, Start and the other methods
// of this broker report their failures with tb.Fatalf too, so call them
// from the test's goroutine.
func NewBroker(tb testing.TB, opts ...Option) *Broker {
	tb.Helper()
	b, err := Start(opts...)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	b.tb = tb
	tb.Cleanup(func() {
		if err := b.Close(); err != nil {
			tb.Errorf("mqtttest: close the broker: %v", err)
		}
	})
	return b
}

// Start starts a broker on a free loopback port, for programs that have no
// testing.TB (a demo, a tool); a test calls NewBroker instead. The caller
// must Close it. Where a broker from NewBroker would fail the test, the
// methods of this one panic; Restart returns its error instead, for a
// program that wants to handle it.
func Start(opts ...Option) (*Broker, error) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	b := &Broker{gate: newGate(&cfg), presence: newPresence()}
	eopts := []broker.EmbeddedOption{broker.WithHook(b.gate), broker.WithHook(b.presence)}
	scheme := "tcp://"
	if cfg.tls != nil {
		eopts = append(eopts, broker.WithTLS(cfg.tls))
		scheme = "ssl://"
	}
	e, err := broker.StartEmbedded("127.0.0.1:0", eopts...)
	if err != nil {
		return nil, fmt.Errorf("mqtttest: start the broker: %w", err)
	}
	k, err := listenLink(e.Addr())
	if err != nil {
		_ = e.Stop()
		return nil, fmt.Errorf("mqtttest: start the proxy: %w", err)
	}
	b.embedded, b.link, b.url = e, k, scheme+k.addr()
	return b, nil
}

// URL is where clients connect: tcp://127.0.0.1:port (ssl:// with
// WithTLS). It stays the same for the broker's whole life, across Stop and
// Start.
func (b *Broker) URL() string { return b.url }

// Stop takes the broker down: every connection ends, and new ones are
// closed at once, until Start. Use it to test what a client does while its
// broker is gone, then Start to test how it comes back. Stopping a stopped
// broker does nothing.
func (b *Broker) Stop() {
	if b.tb != nil {
		b.tb.Helper()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.check(b.stop())
}

// Start brings a stopped broker back on the same port, so URL still
// reaches it. Like a broker that restarted without persistence, it
// remembers no session, subscription or retained message. Starting a
// running broker does nothing.
func (b *Broker) Start() {
	if b.tb != nil {
		b.tb.Helper()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.check(b.start())
}

// Restart stops the broker if it runs and starts it again on the same
// port, and returns what went wrong instead of failing the test or
// panicking: for programs, which have no testing.TB, and for tests that
// expect the failure.
func (b *Broker) Restart() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.stop(); err != nil {
		return err
	}
	return b.start()
}

// Close stops the broker and its proxy and ends every connection; the
// broker cannot be started again. A broker from NewBroker is closed when
// its test ends; calling Close again does nothing.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	err := b.stop()
	return errors.Join(err, b.link.close())
}

func (b *Broker) stop() error {
	defer b.presence.reset()
	b.link.down() // no connection may reach the broker while it shuts down
	err := b.embedded.Stop()
	b.link.hangUpBroker() // one that came in just before is not left open
	if err != nil {
		return fmt.Errorf("mqtttest: stop the broker: %w", err)
	}
	return nil
}

func (b *Broker) start() error {
	if b.closed {
		return errors.New("mqtttest: start: the broker was closed")
	}
	if err := b.embedded.Start(); err != nil {
		return fmt.Errorf("mqtttest: start the broker again on %s: %w", b.embedded.Addr(), err)
	}
	b.link.up()
	return nil
}

// check reports a failure: through the test's tb, or by panicking when
// there is none.
func (b *Broker) check(err error) {
	if err == nil {
		return
	}
	if b.tb != nil {
		b.tb.Helper()
		b.tb.Fatalf("%v", err)
	}
	panic(err)
}
