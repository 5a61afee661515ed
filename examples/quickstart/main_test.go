package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

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
	require.NoError(t, run(context.Background(), &out, options{status: "127.0.0.1:0"}))
	text := out.String()
	for _, want := range []string{
		"status page: http://127.0.0.1:", "idle → connecting", "connecting → connected", `received "hello"`,
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
	require.NoError(t, run(context.Background(), &out, options{broker: b.URL()}))
	text := out.String()
	require.Contains(t, text, `received "hello"`)
	require.NotContains(t, text, "embedded broker", "-broker uses the broker given")
	require.NotContains(t, text, "stopping the broker", "a broker it did not start is not stopped")
	require.NotContains(t, text, "status page", "-status \"\" serves none")
}

// TestQuickstartStatusPageShowsTheReconnect watches the printed status page
// while the demo runs, as a new user would with -wait.
func TestQuickstartStatusPageShowsTheReconnect(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(context.Background(), &out, options{status: "127.0.0.1:0", wait: 300 * time.Millisecond})
	}()

	var pageURL string
	require.Eventually(t, func() bool {
		for _, line := range strings.Split(out.String(), "\n") {
			if u, ok := strings.CutPrefix(line, "status page: "); ok {
				pageURL = u
				return true
			}
		}
		return false
	}, 10*time.Second, 5*time.Millisecond, "the URL is printed")

	type doc struct {
		Clients []struct {
			Health struct {
				State string `json:"state"`
			} `json:"health"`
			Events []struct{ From, To string } `json:"events"`
		} `json:"clients"`
	}
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	var sawDown, sawBack bool
	for !sawBack {
		resp, err := client.Get(pageURL + "status.json")
		if err != nil {
			break // the demo ended and took the page with it
		}
		var d doc
		err = json.NewDecoder(resp.Body).Decode(&d)
		_ = resp.Body.Close()
		require.NoError(t, err)
		require.Len(t, d.Clients, 1)
		if !sawDown && d.Clients[0].Health.State == "reconnecting" {
			sawDown = true
			page, err := client.Get(pageURL)
			require.NoError(t, err)
			var html bytes.Buffer
			_, _ = html.ReadFrom(page.Body)
			_ = page.Body.Close()
			require.Contains(t, html.String(), `data-state="reconnecting"`, "the page itself, at the printed URL")
		}
		for _, ev := range d.Clients[0].Events {
			sawBack = sawBack || (ev.From == "reconnecting" && ev.To == "connected")
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, <-done)
	require.True(t, sawDown, "the page showed the client reconnecting")
	require.True(t, sawBack, "the page showed the reconnect")
	require.Contains(t, out.String(), "pausing 300ms: the broker is down")
}
