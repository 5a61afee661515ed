package mqtttest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/steadymqtt/steadymqtt"
	"github.com/steadymqtt/steadymqtt/mqtttest"
)

// A gateway's test: a broker of its own, a client that publishes through
// a broker restart.
func ExampleNewBroker() {
	testGatewayPublishes := func(t *testing.T) {
		b := mqtttest.NewBroker(t) // closed when the test ends

		client, err := steadymqtt.New(steadymqtt.WithBroker(b.URL()), steadymqtt.WithClientID("gw-1"))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		defer client.Close(ctx)
		if err := client.Connect(ctx); err != nil {
			t.Fatal(err)
		}

		b.Stop()  // the broker goes away…
		b.Start() // …and comes back on the same URL
		if err := client.Publish(ctx, "gw/1/status", []byte("online"), steadymqtt.WithQoS(1)); err != nil {
			t.Fatal(err) // a QoS 1 publish waits for the reconnect and the PUBACK
		}

		b.Drop("gw-1") // the broker throws the client out
		if err := b.WaitConnected(ctx, "gw-1"); err != nil {
			t.Fatal("the gateway did not come back:", err)
		}
	}
	_ = testGatewayPublishes // in a _test.go file: func TestGatewayPublishes(t *testing.T)
}

// A program without a testing.TB (a demo, a local tool) starts the broker
// with Start and closes it itself.
func ExampleStart() {
	b, err := mqtttest.Start()
	if err != nil {
		panic(err)
	}
	defer b.Close()

	client, err := steadymqtt.New(steadymqtt.WithBroker(b.URL()), steadymqtt.WithClientID("gw-1"))
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.Connect(ctx); err != nil {
		panic(err)
	}
	fmt.Println("connected:", b.Connected("gw-1"))

	err = client.Publish(ctx, "gw/1/status", []byte("online"), steadymqtt.WithQoS(1))
	fmt.Println("published:", err == nil)

	fmt.Println("closed:", client.Close(ctx) == nil)
	// Output:
	// connected: true
	// published: true
	// closed: true
}

// Refuse makes every new CONNECT fail with a return code, which the client
// reports as a sentinel error.
func ExampleBroker_Refuse() {
	b, err := mqtttest.Start()
	if err != nil {
		panic(err)
	}
	defer b.Close()
	b.Refuse(5) // not authorized

	client, err := steadymqtt.New(steadymqtt.WithBroker(b.URL()))
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	defer client.Close(ctx)
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancelShort()
	err = client.Connect(short)
	fmt.Println("not authorized:", errors.Is(err, steadymqtt.ErrNotAuthorized))
	// Output:
	// not authorized: true
}
