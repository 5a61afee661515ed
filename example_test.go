package steadymqtt_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/steadymqtt/steadymqtt"
	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
)

// brokerURL is the broker of the examples: an embedded one started for the
// test run. In a service it is the address of your broker.
var brokerURL = "tcp://localhost:1883"

func TestMain(m *testing.M) {
	if phase := os.Getenv("STEADYMQTT_CHILD"); phase != "" {
		os.Exit(steadymqtt.ChildPublisher(phase)) // a child of the crash test
	}
	b, err := broker.StartEmbedded("127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "examples: embedded broker:", err)
		os.Exit(1)
	}
	brokerURL = b.URL()
	code := m.Run()
	_ = b.Stop()
	os.Exit(code)
}

func Example() {
	client, err := steadymqtt.New(
		steadymqtt.WithBroker(brokerURL),
		steadymqtt.WithClientID("gateway-42"),
		steadymqtt.WithKeepAlive(10*time.Second),
	)
	if err != nil {
		panic(err) // an invalid option: errors.Is(err, steadymqtt.ErrInvalidOption)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Connect returns once connected; if ctx ends first, the client keeps
	// trying in the background and the error says why it could not connect.
	if err := client.Connect(ctx); err != nil {
		fmt.Println("not connected yet:", err)
	}
	fmt.Println("state:", client.State())

	err = client.Publish(ctx, "gateways/42/status", []byte("online"), steadymqtt.WithQoS(1))
	fmt.Println("published:", err == nil)

	_ = client.Close(ctx)
	fmt.Println("state:", client.State())
	// Output:
	// state: connected
	// published: true
	// state: closed
}

func ExampleClient_Watch() {
	client, _ := steadymqtt.New(steadymqtt.WithBroker(brokerURL))
	ctx := context.Background()
	events := client.Watch(ctx) // subscribe before Connect to see every event
	_ = client.Connect(ctx)
	go func() { _ = client.Close(ctx) }()

	for ev := range events { // closed after the final event
		fmt.Printf("%s → %s\n", ev.From, ev.To)
	}
	// Output:
	// idle → connecting
	// connecting → connected
	// connected → closed
}

func ExampleClient_OnStateChange() {
	client, _ := steadymqtt.New(steadymqtt.WithBroker(brokerURL))
	cancel := client.OnStateChange(func(ev steadymqtt.Event) {
		switch {
		case ev.Err != nil:
			// A failed attempt or a loss; ev.Delay is the wait before the next try.
			fmt.Printf("%s: %v (retry in %v)\n", ev.To, ev.Err, ev.Delay)
		case ev.To == steadymqtt.StateConnected:
			fmt.Printf("connected to the broker after %d failed attempts\n", ev.Attempt)
		}
	})
	defer cancel()
	_ = client.Connect(context.Background())
	_ = client.Close(context.Background()) // delivers pending events before it returns
	// Output:
	// connected to the broker after 0 failed attempts
}

func ExampleReadinessHandler() {
	client, _ := steadymqtt.New(steadymqtt.WithBroker(brokerURL), steadymqtt.WithClientID("gateway-7"))
	mux := http.NewServeMux()
	mux.Handle("/readyz", steadymqtt.ReadinessHandler(client)) // 200 only while connected
	mux.Handle("/livez", steadymqtt.LivenessHandler(client))   // 200 unless closed

	probe := func() int {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code
	}
	fmt.Println("before Connect:", probe())
	_ = client.Connect(context.Background())
	fmt.Println("connected:", probe())
	_ = client.Close(context.Background())
	// Output:
	// before Connect: 503
	// connected: 200
}
