package steadymqtt

import (
	"context"
	"encoding/binary"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/keyenvelope"
	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
	"github.com/steadymqtt/steadymqtt/internal/testsupport/netproxy"
)

// publishTap reassembles what a client sends through the proxy and counts
// PUBLISH packets per connection and idempotency key (from the envelope).
type publishTap struct {
	mu     sync.Mutex
	bufs   map[int][]byte
	counts map[int]map[string]int
}

func newPublishTap() *publishTap {
	return &publishTap{bufs: map[int][]byte{}, counts: map[int]map[string]int{}}
}

func (p *publishTap) feed(conn int, b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	buf := append(p.bufs[conn], b...)
	for {
		if len(buf) < 2 {
			break
		}
		remaining, k := binary.Uvarint(buf[1:]) // MQTT's length is little-endian base 128, like uvarint
		if k <= 0 || uint64(len(buf)-1-k) < remaining {
			break
		}
		hdr, body := buf[0], buf[1+k:1+k+int(remaining)]
		if hdr>>4 == 3 && len(body) >= 2 {
			tl := int(body[0])<<8 | int(body[1])
			off := 2 + tl
			if (hdr>>1)&3 > 0 {
				off += 2 // packet identifier
			}
			if key, _, ok := keyenvelope.Open(body[off:]); ok {
				if p.counts[conn] == nil {
					p.counts[conn] = map[string]int{}
				}
				p.counts[conn][key]++
			}
		}
		buf = buf[1+k+int(remaining):]
	}
	p.bufs[conn] = append([]byte(nil), buf...)
}

func TestTenThousandKeysThroughBrokerRestarts(t *testing.T) {
	leakCheck(t)
	const total, restarts = 10000, 5
	m := startMosquitto(t, broker.MosquittoConfig{Persistent: true})
	tap := newPublishTap()
	proxy, err := netproxy.Start(m.Addr())
	require.NoError(t, err)
	proxy.Tap(tap.feed)
	t.Cleanup(func() { _ = proxy.Close() })
	fast := WithBackoff(backoff.NewConstantBackOff(100 * time.Millisecond))

	// A persistent session, so the broker keeps what arrives while the
	// subscriber is reconnecting.
	var mu sync.Mutex
	raw, once := map[string]int{}, map[string]int{}
	seen := keyenvelope.NewDedupe(total)
	dedupe := func(m Message) {
		body, ok := m.Payload, false
		if m.Key != "" { // MQTT 5: the key came as a user property
			ok = seen.PassKey(m.Key)
		} else {
			body, ok = seen.Pass(m.Payload)
		}
		if ok {
			mu.Lock()
			once[string(body)]++
			mu.Unlock()
		}
	}
	sub := newClient(t, WithBroker(m.URL()), WithClientID("chaos-sub"), WithCleanSession(false), fast, WithHandlerBacklog(2*total))
	require.NoError(t, sub.Subscribe(t.Context(), "chaos/t", 1, func(msg Message) {
		key := msg.Key // MQTT 5 carries it as a user property
		if k, _, ok := keyenvelope.Open(msg.Payload); ok {
			key = k
		}
		if key != "" {
			mu.Lock()
			raw[key]++
			mu.Unlock()
		}
		dedupe(msg)
	}))
	connect(t, sub)

	// The tap reads each key from the payload's envelope: the publisher
	// speaks 3.1.1 (the subscriber may speak 5, and then meets both).
	pub := newClient(t, WithBroker(proxy.URL()), WithClientID("chaos-pub"), WithKeyEnvelope(), fast, WithProtocol(ProtocolV311))
	connect(t, pub)

	var published atomic.Int64
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				key := "k" + strconv.Itoa(i)
				for {
					// An application that gives up waiting and tries again.
					ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
					err := pub.Publish(ctx, "chaos/t", []byte(key), WithQoS(1), WithIdempotencyKey(key))
					cancel()
					if err == nil {
						break
					}
					if !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("publish %s: %v", key, err)
						return
					}
				}
				published.Add(1)
			}
		}()
	}
	chaosDone := make(chan struct{})
	go func() {
		defer close(chaosDone)
		for r := 1; r <= restarts; r++ {
			for published.Load() < int64(r*total/(restarts+1)) {
				time.Sleep(5 * time.Millisecond)
			}
			if err := m.Stop(); err != nil {
				t.Error(err)
			}
			time.Sleep(600 * time.Millisecond) // longer than the publishers wait: they retry
			if err := m.Start(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := 0; i < total; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	<-chaosDone

	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(once) == total }, 60*time.Second, 50*time.Millisecond,
		"the subscriber did not get every key")
	// Late redeliveries, if any, must not pass the dedupe: a marker sent
	// last reaches the subscriber after them.
	require.NoError(t, pub.Publish(t.Context(), "chaos/t", []byte("fence"), WithQoS(1), WithIdempotencyKey("fence")))
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return once["fence"] == 1 }, 10*time.Second, 10*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	redelivered := 0
	for i := 0; i < total; i++ {
		key := "k" + strconv.Itoa(i)
		require.GreaterOrEqual(t, raw[key], 1, key)
		require.Equal(t, 1, once[key], "%s through the dedupe handler", key)
		redelivered += raw[key] - 1
	}
	tap.mu.Lock()
	defer tap.mu.Unlock()
	require.GreaterOrEqual(t, len(tap.counts), restarts+1, "the publisher reconnected after each restart")
	require.Positive(t, pub.Stats().Deduplicated, "retries after a context timeout were exercised")
	sends := 0
	for conn, keys := range tap.counts {
		for key, n := range keys {
			require.Equal(t, 1, n, "%s sent %d times on connection %d", key, n, conn)
			sends++
		}
	}
	t.Logf("%d keys, %d PUBLISH packets over %d connections, %d redeliveries at the subscriber, %d deduplicated Publish calls",
		total, sends, len(tap.counts), redelivered, pub.Stats().Deduplicated)
}
