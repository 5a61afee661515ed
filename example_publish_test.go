package steadymqtt_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/steadymqtt/steadymqtt"
	"github.com/steadymqtt/steadymqtt/mqtttest"
)

// A sampler that publishes every 100 ms cannot wait for each
// acknowledgement. PublishAsync queues the message and returns at once;
// its Delivery tells the outcome when the broker acknowledged it (or the
// message failed for good). Messages go out in the order they were
// queued, and the outcome does not depend on ctx once PublishAsync
// returned.
func ExampleClient_PublishAsync() {
	client, err := steadymqtt.New(steadymqtt.WithBroker(brokerURL), steadymqtt.WithClientID("gateway-async"))
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	defer client.Close(ctx)
	if err := client.Connect(ctx); err != nil {
		panic(err)
	}

	var deliveries []*steadymqtt.Delivery
	for seq := 1; seq <= 3; seq++ {
		d := client.PublishAsync(ctx, "gateways/42/telemetry", fmt.Appendf(nil, `{"seq":%d}`, seq),
			steadymqtt.WithQoS(1), steadymqtt.WithIdempotencyKey(fmt.Sprintf("reading-%d", seq)))
		deliveries = append(deliveries, d)
	}
	for _, d := range deliveries {
		<-d.Done() // or select on several Done channels, or d.Wait(ctx)
		fmt.Printf("%s: acknowledged %t\n", d.Key(), d.Err() == nil)
	}
	// Output:
	// reading-1: acknowledged true
	// reading-2: acknowledged true
	// reading-3: acknowledged true
}

// While the broker is away, QoS 1 and 2 messages wait in the outbox
// (bounded: WithOutboxLimit), in order. When the connection is back the
// outbox drains by itself and each Delivery resolves on its
// acknowledgement. (QoS 0 messages are refused while offline with
// ErrNotConnected, unless WithQueueQoS0.)
func ExampleClient_PublishAsync_offline() {
	b, err := mqtttest.Start() // a broker that can be stopped, for the example
	if err != nil {
		panic(err)
	}
	defer b.Close()

	client, err := steadymqtt.New(
		steadymqtt.WithBroker(b.URL()),
		// Quick retries for the example; the default starts at 1 s.
		steadymqtt.WithBackoff(steadymqtt.NewFullJitterBackOff(10*time.Millisecond, 100*time.Millisecond)),
	)
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
	defer client.Close(ctx)
	if err := client.Connect(ctx); err != nil {
		panic(err)
	}

	b.Stop() // the broker goes away
	<-lost
	var deliveries []*steadymqtt.Delivery
	for seq := 1; seq <= 3; seq++ {
		payload := fmt.Appendf(nil, `{"seq":%d}`, seq)
		deliveries = append(deliveries, client.PublishAsync(ctx, "gateways/42/telemetry", payload, steadymqtt.WithQoS(1)))
	}
	fmt.Printf("broker down: %s, outbox %d\n", client.State(), client.Health().Outbox)

	b.Start() // the broker comes back; the client reconnects by itself
	for i, d := range deliveries {
		fmt.Printf("message %d: %v\n", i+1, d.Wait(ctx))
	}
	fmt.Printf("broker back: %s, outbox %d\n", client.State(), client.Health().Outbox)
	// Output:
	// broker down: reconnecting, outbox 3
	// message 1: <nil>
	// message 2: <nil>
	// message 3: <nil>
	// broker back: connected, outbox 0
}

// An application that retries a Publish whose context ended does not know
// whether the first try reached the broker. With an idempotency key the
// retry joins the send under way, or, once the message was acknowledged,
// returns nil without sending: the message goes out once.
func ExampleWithIdempotencyKey() {
	b, err := mqtttest.Start()
	if err != nil {
		panic(err)
	}
	defer b.Close()

	client, err := steadymqtt.New(steadymqtt.WithBroker(b.URL()))
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	defer client.Close(ctx)
	if err := client.Connect(ctx); err != nil {
		panic(err)
	}
	received := make(chan string, 16)
	_ = client.Subscribe(ctx, "gateways/42/telemetry", 1, func(m steadymqtt.Message) { received <- string(m.Payload) })

	publish := func(ctx context.Context, payload, key string) error {
		return client.Publish(ctx, "gateways/42/telemetry", []byte(payload),
			steadymqtt.WithQoS(1), steadymqtt.WithIdempotencyKey(key))
	}

	b.Freeze() // the link stalls: the acknowledgement will be late
	short, stop := context.WithTimeout(ctx, 100*time.Millisecond)
	err = publish(short, "reading 17", "reading-17")
	stop()
	fmt.Println("first try timed out:", errors.Is(err, context.DeadlineExceeded))

	b.Thaw()
	fmt.Println("retry:", publish(ctx, "reading 17", "reading-17"))       // waits for the first send
	fmt.Println("retry again:", publish(ctx, "reading 17", "reading-17")) // acknowledged: nothing sent
	fmt.Println("next:", publish(ctx, "reading 18", "reading-18"))

	fmt.Println("received:", <-received)
	fmt.Println("received:", <-received)
	fmt.Println("deduplicated:", client.Stats().Deduplicated)
	// Output:
	// first try timed out: true
	// retry: <nil>
	// retry again: <nil>
	// next: <nil>
	// received: reading 17
	// received: reading 18
	// deduplicated: 2
}
