// Command quickstart shows steadymqtt in a minute: it connects, prints
// every state change, subscribes and publishes, survives a broker restart,
// and prints the health snapshot.
//
//	go run ./examples/quickstart                          # embedded broker
//	go run ./examples/quickstart -broker tcp://host:1883  # a real one
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
	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
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
	var embedded *broker.Embedded
	if url == "" {
		var err error
		if embedded, err = broker.StartEmbedded("127.0.0.1:0"); err != nil {
			return err
		}
		defer func() { _ = embedded.Stop() }()
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
	reconnected := make(chan struct{}, 1)
	client.OnStateChange(func(ev steadymqtt.Event) {
		line := fmt.Sprintf("event #%d: %s → %s", ev.Seq, ev.From, ev.To)
		if ev.Err != nil {
			line += fmt.Sprintf(" (%v; next attempt in %v)", ev.Err, ev.Delay.Round(time.Millisecond))
		}
		fmt.Fprintln(out, line)
		if ev.From == steadymqtt.StateReconnecting && ev.To == steadymqtt.StateConnected {
			reconnected <- struct{}{}
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client.Connect(ctx); err != nil {
		return err
	}

	got := make(chan steadymqtt.Message, 4)
	if err := client.Subscribe(ctx, "steadymqtt/quickstart", 1, func(m steadymqtt.Message) { got <- m }); err != nil {
		return err
	}
	if err := publishAndReceive(ctx, out, client, got, "hello"); err != nil {
		return err
	}

	if embedded != nil {
		fmt.Fprintln(out, "stopping the broker for a moment…")
		if err := embedded.Stop(); err != nil {
			return err
		}
		time.Sleep(time.Second)
		if err := embedded.Start(); err != nil {
			return err
		}
		fmt.Fprintln(out, "broker is back")
		select {
		case <-reconnected:
		case <-ctx.Done():
			return errors.New("did not reconnect within 30s")
		}
		// The restarted broker lost the session; the client restored the
		// subscription by itself.
		if err := publishAndReceive(ctx, out, client, got, "hello again"); err != nil {
			return err
		}
	}

	h, _ := json.MarshalIndent(client.Health(), "", "  ")
	fmt.Fprintln(out, "health:", string(h))
	return client.Close(ctx)
}

func publishAndReceive(ctx context.Context, out io.Writer, c *steadymqtt.Client, got <-chan steadymqtt.Message, text string) error {
	if err := c.Publish(ctx, "steadymqtt/quickstart", []byte(text), steadymqtt.WithQoS(1)); err != nil {
		return err
	}
	select {
	case m := <-got:
		fmt.Fprintf(out, "received %q on %s\n", m.Payload, m.Topic)
		return nil
	case <-ctx.Done():
		return fmt.Errorf("no message received: %w", ctx.Err())
	}
}
