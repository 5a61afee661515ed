package steadymqtt_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/steadymqtt/steadymqtt"
	"github.com/steadymqtt/steadymqtt/mqtttest"
)

// With a durable outbox, messages that were not acknowledged survive the
// process: a Close during an outage (or a crash) leaves them on disk, and
// the next client on the same directory sends them, and nothing that was
// acknowledged before.
func ExampleWithDurableOutbox() {
	dir, err := os.MkdirTemp("", "gateway-outbox") // in a service: a directory of its own, e.g. /var/lib/gateway/outbox
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	b, err := mqtttest.Start()
	if err != nil {
		panic(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// First run: the broker is down the whole time.
	b.Stop()
	first, err := steadymqtt.New(steadymqtt.WithBroker(b.URL()), steadymqtt.WithClientID("gateway-42"),
		steadymqtt.WithDurableOutbox(dir))
	if err != nil {
		panic(err) // errors.Is(err, steadymqtt.ErrOutboxLocked): another process uses dir
	}
	for seq := 1; seq <= 3; seq++ {
		// Queued and on disk (fsync) when PublishAsync returns.
		first.PublishAsync(ctx, "gateways/42/telemetry", fmt.Appendf(nil, "reading %d", seq), steadymqtt.WithQoS(1))
	}
	var ce *steadymqtt.CloseError
	if err := first.Close(ctx); errors.As(err, &ce) {
		fmt.Printf("first run: %d not delivered, on disk: %t\n", ce.NotDelivered, ce.Durable)
	}

	// Next run, same directory, the broker is back.
	b.Start()
	second, err := steadymqtt.New(steadymqtt.WithBroker(b.URL()), steadymqtt.WithClientID("gateway-42"),
		steadymqtt.WithDurableOutbox(dir))
	if err != nil {
		panic(err)
	}
	fmt.Println("second run starts with outbox", second.Health().Outbox)
	received := make(chan string, 16)
	_ = second.Subscribe(ctx, "gateways/42/telemetry", 1, func(m steadymqtt.Message) { received <- string(m.Payload) })
	if err := second.Connect(ctx); err != nil {
		panic(err)
	}
	for range 3 {
		fmt.Println("received:", <-received)
	}
	fmt.Println("second run closed:", second.Close(ctx))
	// Output:
	// first run: 3 not delivered, on disk: true
	// second run starts with outbox 3
	// received: reading 1
	// received: reading 2
	// received: reading 3
	// second run closed: <nil>
}

// Close sends what the outbox holds while ctx allows, then DISCONNECT, and
// stops every goroutine the client started. What could not be sent is
// reported: the error is a *CloseError with the count (and whether it is
// on disk, with WithDurableOutbox), and it matches ErrNotDelivered, as do
// the messages' own outcomes. A shutdown path can log it as a warning
// rather than a failure.
func ExampleClient_Close() {
	b, err := mqtttest.Start()
	if err != nil {
		panic(err)
	}
	defer b.Close()

	client, err := steadymqtt.New(steadymqtt.WithBroker(b.URL()))
	if err != nil {
		panic(err)
	}
	lost := make(chan struct{}, 1)
	client.OnStateChange(func(ev steadymqtt.Event) {
		if ev.To == steadymqtt.StateReconnecting {
			select {
			case lost <- struct{}{}:
			default:
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Connect(ctx); err != nil {
		panic(err)
	}

	b.Stop() // an outage, and the service is told to stop during it
	<-lost
	d := client.PublishAsync(ctx, "gateways/42/telemetry", []byte("last reading"), steadymqtt.WithQoS(1))

	// In a service: ctx from signal.NotifyContext, bounded to the time
	// the shutdown may take.
	err = client.Close(ctx)
	var ce *steadymqtt.CloseError
	if errors.As(err, &ce) {
		fmt.Printf("not delivered: %d, on disk: %t\n", ce.NotDelivered, ce.Durable)
	}
	fmt.Println("matches ErrNotDelivered:", errors.Is(err, steadymqtt.ErrNotDelivered))
	fmt.Println("the message's outcome:", errors.Is(d.Err(), steadymqtt.ErrNotDelivered))
	fmt.Println("publish after Close:", errors.Is(client.Publish(ctx, "gateways/42/telemetry", nil), steadymqtt.ErrClosed))
	fmt.Println("state:", client.State())
	// Output:
	// not delivered: 1, on disk: false
	// matches ErrNotDelivered: true
	// the message's outcome: true
	// publish after Close: true
	// state: closed
}
