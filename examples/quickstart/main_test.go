package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/steadymqtt/steadymqtt/mqtttest"
)

// syncBuffer is written by the client's event goroutine and read here.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestQuickstartShowsTheOutboxDrain(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out syncBuffer
	require.NoError(t, run(&out, ""))
	text := out.String()
	for _, want := range []string{
		"idle → connecting", "connecting → connected", `received "hello"`,
		"connected → reconnecting", "broker down: state reconnecting, outbox 3",
		"reconnecting → connected", "broker back: all 3 acknowledged, outbox 0",
		`received "sent while down #1"`, `received "sent while down #2"`, `received "sent while down #3"`,
		`"outbox": 0`, `"state": "connected"`, "connected → closed",
	} {
		require.Contains(t, text, want)
	}
	first := strings.Index(text, `received "sent while down #1"`)
	last := strings.Index(text, `received "sent while down #3"`)
	require.Less(t, first, last, "the outbox keeps the order")
}

func TestQuickstartAgainstAGivenBroker(t *testing.T) {
	defer goleak.VerifyNone(t)
	b, err := mqtttest.Start()
	require.NoError(t, err)
	defer b.Close()
	var out syncBuffer
	require.NoError(t, run(&out, b.URL()))
	text := out.String()
	require.Contains(t, text, `received "hello"`)
	require.NotContains(t, text, "embedded broker", "-broker uses the broker given")
	require.NotContains(t, text, "stopping the broker", "a broker it did not start is not stopped")
}
