// Command quickstart shows steadymqtt in a minute: it connects, prints
// every state change, subscribes and publishes, keeps publishing while the
// broker is down and delivers once it is back, and prints the health
// snapshot.
//
//	go run ./examples/quickstart                          # embedded broker
//	go run ./examples/quickstart -broker tcp://host:1883  # a real one
//
// The embedded broker comes from the public test kit
// github.com/steadymqtt/steadymqtt/mqtttest, which a gateway's own tests
// can use the same way.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/steadymqtt/steadymqtt"
	"github.com/steadymqtt/steadymqtt/mqtttest"
)

const (
	topicName = "steadymqtt/quickstart"
	offline   = 3 // messages published while the broker is down
)

func main() {
	brokerURL := flag.String("broker", "", "broker URL (default: start an embedded broker on a loopback port)")
	flag.Parse()
	if err := run(os.Stdout, *brokerURL); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(out io.Writer, url string) error {
	var embedded *mqtttest.Broker
	if url == "" {
		var err error
		if embedded, err = mqtttest.Start(); err != nil {
			return err
		}
		defer embedded.Close()
		url = embedded.URL()
		fmt.Fprintln(out, "embedded broker on", url)
	}

	client, err := steadymqtt.New(
		steadymqtt.WithBroker(url),
		steadymqtt.WithKeepAlive(5*time.Second),
		// Quick first retries so the demo is short; the default starts at 1 s.
		steadymqtt.WithBackoff(steadymqtt.NewFullJitterBackOff(200*time.Millisecond, 2*time.Second)),
	)
	if err != nil {
		return err
	}
	lost := make(chan struct{}, 1)
	client.OnStateChange(func(ev steadymqtt.Event) {
		line := fmt.Sprintf("event #%d: %s → %s", ev.Seq, ev.From, ev.To)
		if ev.Err != nil {
			line += fmt.Sprintf(" (%v; next attempt in %v)", ev.Err, ev.Delay.Round(time.Millisecond))
		}
		fmt.Fprintln(out, line)
		if ev.To == steadymqtt.StateReconnecting {
			select {
			case lost <- struct{}{}:
			default:
			}
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client.Connect(ctx); err != nil {
		return err
	}

	got := make(chan steadymqtt.Message, 2*offline)
	if err := client.Subscribe(ctx, topicName, 1, func(m steadymqtt.Message) { got <- m }); err != nil {
		return err
	}
	if err := client.Publish(ctx, topicName, []byte("hello"), steadymqtt.WithQoS(1)); err != nil {
		return err
	}
	if err := receive(ctx, out, got, 1); err != nil {
		return err
	}

	if embedded != nil {
		if err := publishThroughOutage(ctx, out, client, embedded, lost, got); err != nil {
			return err
		}
	}

	h, _ := json.MarshalIndent(client.Health(), "", "  ")
	fmt.Fprintln(out, "health:", string(h))
	return client.Close(ctx)
}

// publishThroughOutage stops the broker, publishes while it is down (the
// messages wait in the outbox), starts it again, and shows the outbox
// drain and the messages arrive.
func publishThroughOutage(ctx context.Context, out io.Writer, client *steadymqtt.Client, b *mqtttest.Broker,
	lost <-chan struct{}, got <-chan steadymqtt.Message) error {
	fmt.Fprintln(out, "stopping the broker…")
	b.Stop()
	select {
	case <-lost:
	case <-ctx.Done():
		return errors.New("the client did not notice that the broker went away")
	}

	// A QoS 1 Publish returns once the broker acknowledged the message, so
	// each one waits on a goroutine of its own. Each starts once the one
	// before is in the outbox, so that they go out in this order.
	acked := make(chan error, offline)
	for i := 1; i <= offline; i++ {
		payload := fmt.Sprintf("sent while down #%d", i)
		go func() { acked <- client.Publish(ctx, topicName, []byte(payload), steadymqtt.WithQoS(1)) }()
		if err := waitOutbox(ctx, client, i); err != nil {
			return err
		}
	}
	h := client.Health()
	fmt.Fprintf(out, "broker down: state %s, outbox %d (the messages wait for the broker)\n", h.State, h.Outbox)

	fmt.Fprintln(out, "starting the broker again…")
	if err := b.Restart(); err != nil {
		return err
	}
	for range offline {
		select {
		case err := <-acked:
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return fmt.Errorf("publishes not acknowledged: %w", ctx.Err())
		}
	}
	// The restarted broker lost the session; the client restored the
	// subscription by itself before sending the outbox.
	fmt.Fprintf(out, "broker back: all %d acknowledged, outbox %d\n", offline, client.Health().Outbox)
	return receive(ctx, out, got, offline)
}

// waitOutbox waits until the outbox holds n messages.
func waitOutbox(ctx context.Context, client *steadymqtt.Client, n int) error {
	for client.Health().Outbox < n {
		select {
		case <-time.After(5 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("outbox never reached %d: %w", n, ctx.Err())
		}
	}
	return nil
}

// receive prints the next n messages the subscription gets.
func receive(ctx context.Context, out io.Writer, got <-chan steadymqtt.Message, n int) error {
	for range n {
		select {
		case m := <-got:
			fmt.Fprintf(out, "received %q on %s\n", m.Payload, m.Topic)
		case <-ctx.Done():
			return fmt.Errorf("no message received: %w", ctx.Err())
		}
	}
	return nil
}
