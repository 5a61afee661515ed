//go:build linux

package steadymqtt_test

import (
	"context"
	"fmt"
	"time"

	"github.com/steadymqtt/steadymqtt"
)

// On a multi-homed gateway, WithInterfaces binds the connection to a
// network interface, in order of preference. Each attempt uses the first
// usable interface (present, up, with carrier and an address), a failed
// attempt moves on to the next one, and the client returns to a more
// preferred interface once it stayed usable (WithFailback). Health and
// every Event name the interface in use.
//
// A gateway would say WithInterfaces("eth0", "wwan0"); here the first
// choice does not exist, so the client skips it, and the second is the
// loopback interface, where the broker of the examples listens. Binding needs
// Linux 5.7 or later, or CAP_NET_RAW; on macOS the loopback interface is
// "lo0".
func ExampleWithInterfaces() {
	client, err := steadymqtt.New(
		steadymqtt.WithBroker(brokerURL), // tcp://127.0.0.1:port
		steadymqtt.WithInterfaces("wwan9", "lo"),
	)
	if err != nil {
		panic(err) // errors.Is(err, errors.ErrUnsupported) on systems without binding
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	defer client.Close(ctx)

	if err := client.Connect(ctx); err != nil {
		// Which step failed (interface, address, route, tcp, ...); a
		// client.Diagnose(ctx) report says why, with every candidate.
		fmt.Println("not connected, failed at step", client.Health().LastErrorStep)
		return
	}
	fmt.Printf("connected on interface %q\n", client.Health().Interface)
	// Output:
	// connected on interface "lo"
}
