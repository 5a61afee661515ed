package steadymqtt_test

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/steadymqtt/steadymqtt"
)

// A service that logs with log/slog hands its logger to the client; the
// client's lines (client_id on each, the connection changes with from, to,
// broker and error) come out through that logger's handler, filtered by
// its level.
func ExampleWithSlogLogger() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	client, err := steadymqtt.New(
		steadymqtt.WithBroker(brokerURL),
		steadymqtt.WithClientID("gateway-42"),
		steadymqtt.WithSlogLogger(logger),
	)
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.Connect(ctx); err != nil {
		logger.Warn("not connected yet", "error", err)
	}
	// level=INFO msg="mqtt connection" client_id=gateway-42 from=connecting to=connected broker=tcp://… attempt=…
	_ = client.Close(ctx)
}
