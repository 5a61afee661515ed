package main

import (
	"bytes"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
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

func TestQuickstartShowsTheReconnect(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out syncBuffer
	require.NoError(t, run(&out, ""))
	text := out.String()
	for _, want := range []string{
		"idle → connecting", "connecting → connected", `received "hello"`,
		"connected → reconnecting", "reconnecting → connected", `received "hello again"`,
		`"state": "connected"`, "connected → closed",
	} {
		require.Contains(t, text, want)
	}
}
