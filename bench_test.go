package steadymqtt_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/steadymqtt/steadymqtt"
	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
)

// The benchmarks put steadymqtt and raw paho side by side in one run,
// against the same broker: Mosquitto when installed (the reference figures
// of raw paho were taken against it), else the embedded broker.
//
//	go test -run '^$' -bench . -benchmem -count 5 | tee bench.txt && benchstat bench.txt

func benchBroker(b *testing.B) string {
	b.Helper()
	dir, err := os.MkdirTemp("", "steadymqtt-bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = os.RemoveAll(dir) })
	p, err := broker.StartMosquitto(dir, broker.MosquittoConfig{})
	if err != nil {
		b.Logf("using the embedded broker: %v", err)
		return brokerURL
	}
	b.Cleanup(func() { _ = p.Kill() })
	return p.URL()
}

type publisher interface {
	publish(qos byte, payload []byte) error
	close()
}

type ours struct{ c *steadymqtt.Client }

func (o ours) publish(qos byte, p []byte) error {
	return o.c.Publish(context.Background(), "bench/t", p, steadymqtt.WithQoS(qos))
}
func (o ours) close() { _ = o.c.Close(context.Background()) }

type raw struct{ c mqtt.Client }

func (r raw) publish(qos byte, p []byte) error {
	t := r.c.Publish("bench/t", qos, false, p)
	t.Wait()
	return t.Error()
}
func (r raw) close() { r.c.Disconnect(100) }

func dialOurs(b *testing.B, url, id string) publisher {
	c, err := steadymqtt.New(steadymqtt.WithBroker(url), steadymqtt.WithClientID(id), steadymqtt.WithInFlight(100))
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Connect(context.Background()); err != nil {
		b.Fatal(err)
	}
	return ours{c}
}

func dialPaho(b *testing.B, url, id string) publisher {
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetKeepAlive(30 * time.Second)
	c := mqtt.NewClient(o)
	if t := c.Connect(); t.Wait() && t.Error() != nil {
		b.Fatal(t.Error())
	}
	return raw{c}
}

var impls = []struct {
	name string
	dial func(*testing.B, string, string) publisher
}{{"steadymqtt", dialOurs}, {"paho", dialPaho}}

// BenchmarkPublish publishes 64-byte messages one at a time (window 1):
// QoS 0 until written, QoS 1 until PUBACK.
func BenchmarkPublish(b *testing.B) {
	url := benchBroker(b)
	payload := make([]byte, 64)
	for _, qos := range []byte{0, 1} {
		for _, impl := range impls {
			b.Run(fmt.Sprintf("qos%d/%s", qos, impl.name), func(b *testing.B) {
				p := impl.dial(b, url, "bench-"+impl.name)
				defer p.close()
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := p.publish(qos, payload); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			})
		}
	}
}

// BenchmarkPublishWindow keeps 100 publishes in flight (100 goroutines
// publishing, each waiting for its own outcome), 64-byte payloads.
func BenchmarkPublishWindow(b *testing.B) {
	url := benchBroker(b)
	payload := make([]byte, 64)
	for _, qos := range []byte{1, 2} {
		for _, impl := range impls {
			b.Run(fmt.Sprintf("qos%d/%s", qos, impl.name), func(b *testing.B) {
				p := impl.dial(b, url, "benchw-"+impl.name)
				defer p.close()
				b.ReportAllocs()
				b.SetParallelism(50) // 2 cores × 50 = 100 publishers
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := p.publish(qos, payload); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			})
		}
	}
}

// BenchmarkIdleClient measures what a connected, idle client costs: heap
// and goroutines per client, over 20 clients.
func BenchmarkIdleClient(b *testing.B) {
	url := benchBroker(b)
	const n = 20
	for _, impl := range impls {
		b.Run(impl.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				heap0, g0 := heapAndGoroutines()
				clients := make([]publisher, n)
				for k := range clients {
					clients[k] = impl.dial(b, url, fmt.Sprintf("idle-%s-%d", impl.name, k))
				}
				heap1, g1 := heapAndGoroutines()
				for _, c := range clients {
					c.close()
				}
				b.ReportMetric(float64(heap1-heap0)/n, "heapB/client")
				b.ReportMetric(float64(g1-g0)/n, "goroutines/client")
			}
		})
	}
}

func heapAndGoroutines() (int64, int) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc), runtime.NumGoroutine()
}

// BenchmarkHealth is what a probe pays per call.
func BenchmarkHealth(b *testing.B) {
	c, err := steadymqtt.New(steadymqtt.WithBroker(brokerURL))
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Connect(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer c.Close(context.Background())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = c.Health()
		}
	})
}

// BenchmarkDurablePublish is QoS 1 with the durable outbox (bbolt, fsync
// per commit, commits batched across concurrent publishers), 100 in
// flight, beside the in-memory outbox.
func BenchmarkDurablePublish(b *testing.B) {
	url := benchBroker(b)
	payload := make([]byte, 64)
	for _, durable := range []bool{false, true} {
		b.Run(fmt.Sprintf("durable=%v", durable), func(b *testing.B) {
			opts := []steadymqtt.Option{steadymqtt.WithBroker(url), steadymqtt.WithClientID("bench-durable"), steadymqtt.WithInFlight(100)}
			if durable {
				opts = append(opts, steadymqtt.WithDurableOutbox(b.TempDir()))
			}
			c, err := steadymqtt.New(opts...)
			if err != nil {
				b.Fatal(err)
			}
			if err := c.Connect(context.Background()); err != nil {
				b.Fatal(err)
			}
			defer c.Close(context.Background())
			b.SetParallelism(50)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := c.Publish(context.Background(), "bench/d", payload, steadymqtt.WithQoS(1)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
