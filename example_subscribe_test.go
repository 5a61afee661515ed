package steadymqtt_test

import (
	"context"
	"fmt"
	"time"

	"github.com/steadymqtt/steadymqtt"
)

// A gateway takes its commands from a subscription. The subscription is
// registered before Connect and made as part of the connection, so no
// command sent after Connect returns is missed; it is made again by itself
// whenever a reconnect finds the broker without the session.
func ExampleClient_Subscribe() {
	client, err := steadymqtt.New(steadymqtt.WithBroker(brokerURL), steadymqtt.WithClientID("gateway-sub"))
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	defer client.Close(ctx)

	commands := make(chan steadymqtt.Message, 16)
	// The handler runs on a goroutine of this subscription, one message at
	// a time: a slow handler delays neither the keepalive nor other
	// subscriptions.
	err = client.Subscribe(ctx, "gateways/42/commands/#", 1, func(m steadymqtt.Message) {
		commands <- m
	})
	if err != nil {
		panic(err) // e.g. errors.Is(err, steadymqtt.ErrInvalidTopic)
	}
	if err := client.Connect(ctx); err != nil {
		panic(err)
	}

	// A command, sent here by the gateway itself for the example.
	_ = client.Publish(ctx, "gateways/42/commands/reboot", []byte("in 5 min"), steadymqtt.WithQoS(1))

	m := <-commands
	fmt.Printf("%s: %s (QoS %d)\n", m.Topic, m.Payload, m.QoS)
	// Output:
	// gateways/42/commands/reboot: in 5 min (QoS 1)
}
