package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/steadymqtt/steadymqtt"
)

// The two libraries behind one small interface, each used the way its own
// documentation shows: raw paho with its defaults (auto-reconnect on, its
// own pinger and store), steadymqtt through its public API only.

// dialOpts is what a measurement asks of a client.
type dialOpts struct {
	url       string
	id        string
	keepAlive time.Duration // 0: the library's default (30 s for both)
	inFlight  int           // steadymqtt's window; 0: its default
	outbox    int           // steadymqtt's outbox count limit; 0: its default
	backoff   backoff.BackOff
	// up and down are called (from the library's goroutines) with the time
	// of each change: connected, and a live connection lost.
	up, down func(at time.Time)
}

// client is one connected client of either library.
type client interface {
	// publish waits for the outcome: written (QoS 0) or acknowledged.
	publish(ctx context.Context, qos byte, payload []byte, key string) error
	// publishAsync hands a message over without waiting.
	publishAsync(qos byte, payload []byte) outcome
	close()
}

// outcome is a publish in progress.
type outcome interface {
	Done() <-chan struct{}
	Err() error
}

type library struct {
	name string
	dial func(dialOpts) (client, error)
}

var (
	paho   = library{name: "raw paho", dial: dialPaho}
	steady = library{name: "steadymqtt", dial: dialSteady}
)

const topicName = "steadybench/t"

// --- raw paho

type pahoClient struct{ c mqtt.Client }

func dialPaho(o dialOpts) (client, error) {
	po := mqtt.NewClientOptions().AddBroker(o.url).SetClientID(o.id)
	if o.keepAlive > 0 {
		po.SetKeepAlive(o.keepAlive)
	}
	po.SetOnConnectHandler(func(mqtt.Client) {
		if o.up != nil {
			o.up(time.Now())
		}
	})
	po.SetConnectionLostHandler(func(mqtt.Client, error) {
		if o.down != nil {
			o.down(time.Now())
		}
	})
	c := mqtt.NewClient(po)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		c.Disconnect(0)
		return nil, errors.New("paho: connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("paho: %w", err)
	}
	return &pahoClient{c: c}, nil
}

func (p *pahoClient) publish(ctx context.Context, qos byte, payload []byte, _ string) error {
	t := p.c.Publish(topicName, qos, false, payload)
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

type pahoOutcome struct{ t mqtt.Token }

func (o pahoOutcome) Done() <-chan struct{} { return o.t.Done() }
func (o pahoOutcome) Err() error            { return o.t.Error() }

func (p *pahoClient) publishAsync(qos byte, payload []byte) outcome {
	return pahoOutcome{p.c.Publish(topicName, qos, false, payload)}
}

func (p *pahoClient) close() { p.c.Disconnect(100) }

// --- steadymqtt

type steadyClient struct{ c *steadymqtt.Client }

func dialSteady(o dialOpts) (client, error) {
	opts := []steadymqtt.Option{steadymqtt.WithBroker(o.url), steadymqtt.WithClientID(o.id)}
	if o.keepAlive > 0 {
		opts = append(opts, steadymqtt.WithKeepAlive(o.keepAlive))
	}
	if o.inFlight > 0 {
		opts = append(opts, steadymqtt.WithInFlight(o.inFlight))
	}
	if o.outbox > 0 {
		opts = append(opts, steadymqtt.WithOutboxLimit(o.outbox, 1<<30))
	}
	if o.backoff != nil {
		opts = append(opts, steadymqtt.WithBackoff(o.backoff))
	}
	c, err := steadymqtt.New(opts...)
	if err != nil {
		return nil, err
	}
	// Events reach a subscriber on its own goroutine, a moment after the
	// change: dial returns once the first connected event was delivered,
	// so that a measurement never takes it for a reconnection.
	first := make(chan struct{})
	if o.up != nil || o.down != nil {
		var wasUp atomic.Bool
		var once sync.Once
		c.OnStateChange(func(ev steadymqtt.Event) {
			up := ev.To == steadymqtt.StateConnected || ev.To == steadymqtt.StateDegraded
			switch {
			case up && !wasUp.Load():
				wasUp.Store(true)
				if o.up != nil {
					o.up(ev.Time)
				}
				once.Do(func() { close(first) })
			case !up && wasUp.Load():
				wasUp.Store(false)
				if o.down != nil {
					o.down(ev.Time)
				}
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		_ = c.Close(context.Background())
		return nil, err
	}
	if o.up != nil || o.down != nil {
		select {
		case <-first:
		case <-ctx.Done():
		}
	}
	return &steadyClient{c: c}, nil
}

func (s *steadyClient) publish(ctx context.Context, qos byte, payload []byte, key string) error {
	if key != "" {
		return s.c.Publish(ctx, topicName, payload, steadymqtt.WithQoS(qos), steadymqtt.WithIdempotencyKey(key))
	}
	return s.c.Publish(ctx, topicName, payload, steadymqtt.WithQoS(qos))
}

func (s *steadyClient) publishAsync(qos byte, payload []byte) outcome {
	return s.c.PublishAsync(context.Background(), topicName, payload, steadymqtt.WithQoS(qos))
}

func (s *steadyClient) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.c.Close(ctx)
}
