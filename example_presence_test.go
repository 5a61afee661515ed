package steadymqtt_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/steadymqtt/steadymqtt"
	"github.com/steadymqtt/steadymqtt/mqtttest"
)

// A fleet watches gateways/+/status. With WithPresence the gateway
// publishes a retained "online" document on every connection, before
// anything else; the broker publishes the retained "offline" will if the
// gateway vanishes; and Close publishes "offline" itself. Any MQTT client
// can read the JSON; steadymqtt.Presence decodes it.
func ExampleWithPresence() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	gateway, err := steadymqtt.New(steadymqtt.WithBroker(brokerURL), steadymqtt.WithClientID("gateway-42"),
		steadymqtt.WithPresence("gateways/gateway-42/status"))
	if err != nil {
		panic(err)
	}
	if err := gateway.Connect(ctx); err != nil {
		panic(err)
	}

	// The fleet's side: a plain client, subscribed after the gateway came
	// online, gets the retained message.
	watcher, err := steadymqtt.New(steadymqtt.WithBroker(brokerURL), steadymqtt.WithClientID("fleet-monitor"))
	if err != nil {
		panic(err)
	}
	defer watcher.Close(ctx)
	statuses := make(chan steadymqtt.Presence, 16)
	var last string
	_ = watcher.Subscribe(ctx, "gateways/+/status", 1, func(m steadymqtt.Message) {
		// A status is state, not an event: the same document may arrive
		// twice (as the retained copy and the live one when the
		// subscription is made while it is published, or redelivered at
		// QoS 1), so only a change counts.
		var p steadymqtt.Presence
		if string(m.Payload) != last && json.Unmarshal(m.Payload, &p) == nil {
			last = string(m.Payload)
			statuses <- p
		}
	})
	if err := watcher.Connect(ctx); err != nil {
		panic(err)
	}
	p := <-statuses
	fmt.Println(p.ClientID, p.Status)

	_ = gateway.Close(ctx)
	p = <-statuses
	fmt.Println(p.ClientID, p.Status, p.Reason)
	// Output:
	// gateway-42 online
	// gateway-42 offline closed
}

// OnConnect runs after every new connection, once the subscriptions are
// restored and the presence is announced: the place for an application's
// own birth message. It runs on a goroutine of its own, so it may wait for
// the acknowledgement.
func ExampleClient_OnConnect() {
	b, err := mqtttest.Start()
	if err != nil {
		panic(err)
	}
	defer b.Close()

	client, err := steadymqtt.New(steadymqtt.WithBroker(b.URL()), steadymqtt.WithClientID("gateway-42"),
		steadymqtt.WithBackoff(steadymqtt.NewFullJitterBackOff(10*time.Millisecond, 100*time.Millisecond)))
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	defer client.Close(ctx)

	births := 0
	client.OnConnect(func(steadymqtt.Event) {
		births++ // calls of one callback never overlap
		payload := fmt.Appendf(nil, `{"birth":%d,"firmware":"1.4.2"}`, births)
		_ = client.Publish(ctx, "gateways/42/birth", payload, steadymqtt.WithQoS(1))
	})
	received := make(chan string, 16)
	_ = client.Subscribe(ctx, "gateways/42/birth", 1, func(m steadymqtt.Message) { received <- string(m.Payload) })
	if err := client.Connect(ctx); err != nil {
		panic(err)
	}
	fmt.Println(<-received)

	b.Drop("gateway-42") // the broker throws the client out; it reconnects
	fmt.Println(<-received)
	// Output:
	// {"birth":1,"firmware":"1.4.2"}
	// {"birth":2,"firmware":"1.4.2"}
}
