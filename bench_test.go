package steadymqtt_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/steadymqtt/steadymqtt"
	"github.com/steadymqtt/steadymqtt/internal/bus"
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
	// Mosquitto's default of 20 QoS 2 messages in flight per client
	// disconnects either library at 100 in flight; its log would cost
	// the broker CPU.
	p, err := broker.StartMosquitto(dir, broker.MosquittoConfig{Extra: []string{"max_inflight_messages 1000", "log_dest none"}})
	if err != nil {
		b.Logf("using the embedded broker: %v", err)
		return brokerURL
	}
	b.Cleanup(func() { _ = p.Kill() })
	return p.URL()
}

type publisher interface {
	// publish waits for the outcome; key is "" for none (raw paho has
	// no keys and never gets one).
	publish(qos byte, payload []byte, key string) error
	close()
}

type ours struct{ c *steadymqtt.Client }

func (o ours) publish(qos byte, p []byte, key string) error {
	if key != "" {
		return o.c.Publish(context.Background(), "bench/t", p, steadymqtt.WithQoS(qos), steadymqtt.WithIdempotencyKey(key))
	}
	return o.c.Publish(context.Background(), "bench/t", p, steadymqtt.WithQoS(qos))
}
func (o ours) close() { _ = o.c.Close(context.Background()) }

type raw struct{ c mqtt.Client }

func (r raw) publish(qos byte, p []byte, _ string) error {
	t := r.c.Publish("bench/t", qos, false, p)
	t.Wait()
	return t.Error()
}
func (r raw) close() { r.c.Disconnect(100) }

func dialOurs(b testing.TB, url, id string) publisher {
	c, err := steadymqtt.New(steadymqtt.WithBroker(url), steadymqtt.WithClientID(id), steadymqtt.WithInFlight(100))
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Connect(context.Background()); err != nil {
		b.Fatal(err)
	}
	return ours{c}
}

func dialPaho(b testing.TB, url, id string) publisher {
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetKeepAlive(30 * time.Second)
	c := mqtt.NewClient(o)
	if t := c.Connect(); t.Wait() && t.Error() != nil {
		b.Fatal(t.Error())
	}
	return raw{c}
}

// impls are the variants each publish benchmark runs, side by side:
// steadymqtt with and without idempotency keys (a fresh key per message),
// and raw paho.
var impls = []struct {
	name  string
	dial  func(testing.TB, string, string) publisher
	keyed bool
}{{"steadymqtt", dialOurs, false}, {"steadymqtt+key", dialOurs, true}, {"paho", dialPaho, false}}

// keys makes n distinct idempotency keys before the timer starts, so that
// making them is not counted.
func keys(keyed bool, n int) []string {
	k := make([]string, n)
	if keyed {
		base := time.Now().UnixNano()
		for i := range k {
			k[i] = fmt.Sprintf("k-%d-%d", base, i)
		}
	}
	return k
}

// BenchmarkPublish publishes 64-byte messages one at a time (window 1):
// QoS 0 until written, QoS 1 until PUBACK, QoS 2 until PUBCOMP.
func BenchmarkPublish(b *testing.B) {
	url := benchBroker(b)
	payload := make([]byte, 64)
	for _, qos := range []byte{0, 1, 2} {
		for _, impl := range impls {
			if impl.keyed && qos == 0 {
				continue // keys are for QoS 1 and 2
			}
			b.Run(fmt.Sprintf("qos%d/%s", qos, impl.name), func(b *testing.B) {
				p := impl.dial(b, url, "bench-"+impl.name)
				defer p.close()
				ks := keys(impl.keyed, b.N)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := p.publish(qos, payload, ks[i]); err != nil {
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
	for _, qos := range []byte{0, 1, 2} {
		for _, impl := range impls {
			if impl.keyed && qos == 0 {
				continue
			}
			b.Run(fmt.Sprintf("qos%d/%s", qos, impl.name), func(b *testing.B) {
				p := impl.dial(b, url, "benchw-"+impl.name)
				defer p.close()
				ks := keys(impl.keyed, b.N)
				var next atomic.Int64
				b.ReportAllocs()
				b.SetParallelism(50) // 2 cores × 50 = 100 publishers
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := p.publish(qos, payload, ks[next.Add(1)-1]); err != nil {
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

// BenchmarkIdleFootprint measures what a connected, idle client costs:
// heap, goroutine stacks and goroutines per client, over 20 clients after a
// warm-up one. Each library is measured in a fresh process (this test
// binary started again): a Go process keeps the descriptors of goroutines
// that ended, so in one process the library measured second would look
// lighter.
func BenchmarkIdleFootprint(b *testing.B) {
	url := benchBroker(b)
	for _, lib := range []string{"steadymqtt", "paho"} {
		b.Run(lib, func(b *testing.B) {
			// A child takes seconds; more than three say nothing new, so
			// b.N only sets how many up to that.
			runs := min(b.N, 3)
			var heap, stacks, goroutines float64
			for range runs {
				cmd := exec.Command(os.Args[0], "-test.run=^TestIdleFootprintChild$", "-test.count=1")
				cmd.Env = append(os.Environ(), footprintChildEnv+"="+lib, footprintURLEnv+"="+url)
				out, err := cmd.CombinedOutput()
				if err != nil {
					b.Fatalf("child: %v\n%s", err, out)
				}
				m := footprintLine.FindSubmatch(out)
				if m == nil {
					b.Fatalf("child printed no footprint:\n%s", out)
				}
				h, _ := strconv.ParseFloat(string(m[1]), 64)
				s, _ := strconv.ParseFloat(string(m[2]), 64)
				g, _ := strconv.ParseFloat(string(m[3]), 64)
				heap, stacks, goroutines = heap+h, stacks+s, goroutines+g
			}
			n := float64(runs)
			b.ReportMetric(heap/n, "heapB/client")
			b.ReportMetric(stacks/n, "stackB/client")
			b.ReportMetric(goroutines/n, "goroutines/client")
		})
	}
}

const (
	footprintChildEnv = "STEADYMQTT_FOOTPRINT_CHILD" // the library a child measures
	footprintURLEnv   = "STEADYMQTT_FOOTPRINT_URL"
)

var footprintLine = regexp.MustCompile(`footprint heap=(\S+) stacks=(\S+) goroutines=(\S+)`)

// TestIdleFootprintChild is BenchmarkIdleFootprint's child; it does
// nothing unless started by it.
func TestIdleFootprintChild(t *testing.T) {
	lib, url := os.Getenv(footprintChildEnv), os.Getenv(footprintURLEnv)
	if lib == "" {
		t.Skip("run by BenchmarkIdleFootprint in a fresh process")
	}
	dial := dialPaho
	if lib == "steadymqtt" {
		dial = dialOurs
	}
	const n = 20
	warm := dial(t, url, "footprint-warm-"+lib)
	defer warm.close()
	time.Sleep(200 * time.Millisecond)
	heap0, stack0, g0 := memoryNow()
	clients := make([]publisher, n)
	for k := range clients {
		clients[k] = dial(t, url, fmt.Sprintf("footprint-%s-%d", lib, k))
	}
	time.Sleep(time.Second) // what a connect leaves behind is gone
	heap1, stack1, g1 := memoryNow()
	for _, c := range clients {
		c.close()
	}
	fmt.Printf("footprint heap=%.0f stacks=%.0f goroutines=%.2f\n",
		float64(heap1-heap0)/n, float64(stack1-stack0)/n, float64(g1-g0)/n)
}

func memoryNow() (heap, stacks int64, goroutines int) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc), int64(m.StackInuse), runtime.NumGoroutine()
}

// BenchmarkHealth is what a probe pays per call, beside what raw paho
// offers a probe (IsConnectionOpen, a bare flag).
func BenchmarkHealth(b *testing.B) {
	b.Run("steadymqtt", func(b *testing.B) {
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
	})
	b.Run("paho", func(b *testing.B) {
		p := dialPaho(b, brokerURL, "bench-health").(raw)
		defer p.close()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = p.c.IsConnectionOpen()
			}
		})
	})
}

// BenchmarkEventDispatch is what one state-change event costs from the
// state machine to a subscriber's callback: steadymqtt's ordered,
// coalescing mailbox with one goroutine per subscriber, beside what raw
// paho does for each of its callbacks (OnConnect, OnConnectionLost): start
// a goroutine. Each iteration is one event delivered to one subscriber.
func BenchmarkEventDispatch(b *testing.B) {
	b.Run("steadymqtt", func(b *testing.B) {
		bs := bus.New[steadymqtt.Event](16, nil)
		defer bs.Close(context.Background())
		var got atomic.Int64
		bs.Subscribe(func(steadymqtt.Event, int, <-chan struct{}) bool { got.Add(1); return true }, nil)
		ev := steadymqtt.Event{From: steadymqtt.StateConnected, To: steadymqtt.StateReconnecting}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			ev.Seq = uint64(i)
			bs.Publish(ev)
			for got.Load() <= int64(i) { // delivered (coalescing never happens: one in the mailbox at a time)
				runtime.Gosched()
			}
		}
	})
	b.Run("paho", func(b *testing.B) {
		var got atomic.Int64
		handler := func(steadymqtt.Event) { got.Add(1) }
		ev := steadymqtt.Event{From: steadymqtt.StateConnected, To: steadymqtt.StateReconnecting}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			go handler(ev)
			for got.Load() <= int64(i) {
				runtime.Gosched()
			}
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
