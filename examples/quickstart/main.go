// Command quickstart shows steadymqtt in a minute: it connects, prints
// every state change, subscribes and publishes, keeps publishing while the
// broker is down and delivers once it is back, and prints the health
// snapshot. Meanwhile it serves the status page (steadymqtt.StatusHandler)
// on a loopback port and prints its URL; with -wait it pauses at each step
// so the reconnect can be watched there.
//
//	go run ./examples/quickstart                          # embedded broker
//	go run ./examples/quickstart -wait 10s                # time to watch the status page
//	go run ./examples/quickstart -broker tcp://host:1883  # a real one
//	go run ./examples/quickstart -status :8080            # the page on a port of your choice; "" for none
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
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/steadymqtt/steadymqtt"
	"github.com/steadymqtt/steadymqtt/mqtttest"
)

const (
	topicName = "steadymqtt/quickstart"
	offline   = 3 // messages published while the broker is down
)

// options are the command's flags.
type options struct {
	broker string        // "" starts an embedded broker
	status string        // where to serve the status page; "" for nowhere
	wait   time.Duration // pause at each step, to watch the status page
}

func main() {
	var o options
	flag.StringVar(&o.broker, "broker", "", "broker URL (default: start an embedded broker on a loopback port)")
	flag.StringVar(&o.status, "status", "127.0.0.1:0", `address of the status page ("" for none)`)
	flag.DurationVar(&o.wait, "wait", 0, "pause this long at each step to watch the status page (Ctrl-C ends a pause)")
	flag.Parse()
	interrupted, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(interrupted, os.Stdout, o); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// run is the demo; an end of interrupted cuts the pauses short.
func run(interrupted context.Context, out io.Writer, o options) error {
	url := o.broker
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
	defer client.Close(context.Background()) // on the error paths; closing twice is harmless

	// The status page, made before Connect so that it sees every event.
	if o.status != "" {
		page, err := serveStatus(o.status, client)
		if err != nil {
			return err
		}
		defer page.Close()
		fmt.Fprintln(out, "status page:", page.url)
		if o.wait == 0 && embedded != nil {
			fmt.Fprintln(out, "  (to watch the reconnect there: go run ./examples/quickstart -wait 10s)")
		}
	}
	pause := func(what string) {
		if o.wait <= 0 {
			return
		}
		fmt.Fprintf(out, "pausing %v: %s\n", o.wait, what)
		select {
		case <-time.After(o.wait):
		case <-interrupted.Done():
		}
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

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second+3*o.wait)
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
	pause("connected: the page shows the link, its round trip and the first events")

	if embedded != nil {
		if err := publishThroughOutage(ctx, out, client, embedded, lost, got, pause); err != nil {
			return err
		}
		pause("connected again: the page shows the reconnect and why the link was lost")
	}

	h, _ := json.MarshalIndent(client.Health(), "", "  ")
	fmt.Fprintln(out, "health:", string(h))
	return client.Close(ctx)
}

// publishThroughOutage stops the broker, publishes while it is down (the
// messages wait in the outbox), starts it again, and shows the outbox
// drain and the messages arrive.
func publishThroughOutage(ctx context.Context, out io.Writer, client *steadymqtt.Client, b *mqtttest.Broker,
	lost <-chan struct{}, got <-chan steadymqtt.Message, pause func(string)) error {
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
	pause("the broker is down: the page shows the client reconnecting, the failed attempts and the outbox")

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

// statusServer serves the status page for the demo's client.
type statusServer struct {
	srv *http.Server
	url string
}

// serveStatus serves steadymqtt.StatusHandler on addr, under /mqtt/ to show
// how it mounts under a prefix of an application's own web UI.
func serveStatus(addr string, client *steadymqtt.Client) (*statusServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("status page: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/mqtt/", http.StripPrefix("/mqtt", steadymqtt.StatusHandler(client)))
	mux.Handle("/{$}", http.RedirectHandler("/mqtt/", http.StatusFound))
	s := &statusServer{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	go func() { _ = s.srv.Serve(ln) }()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost" // listening on every address: any of them will do
	}
	s.url = "http://" + net.JoinHostPort(host, port) + "/mqtt/"
	return s, nil
}

func (s *statusServer) Close() error { return s.srv.Close() }

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
