package steadymqtt

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// slogBuffer is what a slog.JSONHandler writes, decoded line by line.
type slogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *slogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *slogBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(b.buf.String(), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		out = append(out, m)
	}
	return out
}

func slogJSON(level slog.Level) (*slog.Logger, *slogBuffer) {
	b := &slogBuffer{}
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: level, AddSource: true})), b
}

func closeClient(t *testing.T, c *Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, c.Close(ctx))
}

// deadBrokerURL is a loopback port nothing listens on.
func deadBrokerURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return "tcp://" + addr
}

func TestSlogLoggerConnectionLines(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	logger, out := slogJSON(slog.LevelDebug)
	c := newClient(t, WithBroker(b.URL()), WithClientID("slog-gw"), WithSlogLogger(logger))
	connect(t, c)
	closeClient(t, c)

	var transitions []string
	for _, r := range out.records(t) {
		require.Equal(t, "slog-gw", r["client_id"], "client_id is on every line: %v", r)
		require.NotContains(t, r, "source", "records carry no source location")
		if r["msg"] != "mqtt connection" {
			continue
		}
		require.Equal(t, "INFO", r["level"], "%v", r)
		require.Contains(t, r, "broker")
		require.Contains(t, r, "attempt")
		if r["to"] == "connected" {
			require.Equal(t, b.URL(), r["broker"], "%v", r)
		}
		transitions = append(transitions, r["from"].(string)+"→"+r["to"].(string))
	}
	require.Equal(t, []string{"idle→connecting", "connecting→connected", "connected→closed"}, transitions)
}

func TestSlogLoggerLevelFilter(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	dead := deadBrokerURL(t)
	logger, out := slogJSON(slog.LevelWarn)
	// The dead broker comes first: its refusal is a Warn line, the
	// connection to the live one Info lines, which the handler drops.
	c := newClient(t, WithBroker(dead, b.URL()), WithFixedBrokerOrder(), WithClientID("slog-warn"), WithSlogLogger(logger))
	connect(t, c)
	closeClient(t, c)

	recs := out.records(t)
	require.NotEmpty(t, recs)
	var refused bool
	for _, r := range recs {
		require.NotEqual(t, "INFO", r["level"], "an Info line passed a Warn handler: %v", r)
		require.NotEqual(t, "DEBUG", r["level"], "%v", r)
		if r["msg"] == "mqtt connection" && r["broker"] == dead {
			require.Equal(t, "WARN", r["level"])
			require.Equal(t, "slog-warn", r["client_id"])
			require.NotEmpty(t, r["error"], "the error is an attribute: %v", r)
			refused = true
		}
	}
	require.True(t, refused, "no Warn line for the refused broker: %v", recs)
}

func TestSlogLoggerOption(t *testing.T) {
	_, err := New(WithBroker("tcp://127.0.0.1:1883"), WithSlogLogger(nil))
	require.ErrorIs(t, err, ErrInvalidOption)
	require.Contains(t, err.Error(), "WithSlogLogger")

	// the last of WithLogger and WithSlogLogger wins
	logger, out := slogJSON(slog.LevelDebug)
	cfg := defaultConfig()
	require.NoError(t, WithSlogLogger(logger)(cfg))
	cfg.logger.Info("through slog")
	require.Len(t, out.records(t), 1)
	require.NoError(t, WithLogger(zap.NewNop())(cfg))
	cfg.logger.Info("through zap")
	require.Len(t, out.records(t), 1)
}
