package paho5

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// benchWindow is how many messages are on their way at once, for both:
// the engine's Pending window, raw paho.golang's concurrent Publish calls.
const benchWindow = 64

var benchPayload = make([]byte, 64)

// BenchmarkPublish runs the engine and raw paho.golang (paho.Client on a
// plain TCP connection, its own pinger and in-memory session) side by side
// on one embedded broker: QoS 0, 1 and 2 throughput and allocations.
func BenchmarkPublish(b *testing.B) {
	br, err := broker.StartEmbedded("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer br.Stop()
	for qos := byte(0); qos <= 2; qos++ {
		b.Run(fmt.Sprintf("qos%d/engine", qos), func(b *testing.B) { benchEngine(b, br.Addr(), qos) })
		b.Run(fmt.Sprintf("qos%d/paho", qos), func(b *testing.B) { benchPaho(b, br.Addr(), qos) })
	}
}

func benchEngine(b *testing.B, addr string, qos byte) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	e := New()
	defer e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.Connect(ctx, wire.NewConn(c, nil), engine.Options{ClientID: fmt.Sprintf("bench-engine-%d", qos), CleanSession: true, KeepAlive: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Disconnect(0)
	window := make([]engine.Pending, 0, benchWindow)
	settle := func(p engine.Pending) {
		<-p.Done()
		if !p.Acked() {
			b.Fatal(p.Err())
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if len(window) == benchWindow {
			settle(window[0])
			window = append(window[:0], window[1:]...)
		}
		window = append(window, s.Publish(engine.Message{Topic: "bench/engine", Payload: benchPayload, QoS: qos}))
	}
	for _, p := range window {
		settle(p)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}

func benchPaho(b *testing.B, addr string, qos byte) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(paho.PublishReceived) (bool, error) { return true, nil },
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: fmt.Sprintf("bench-paho-%d", qos), CleanStart: true, KeepAlive: 60}); err != nil {
		b.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	b.ReportAllocs()
	b.ResetTimer()
	for range benchWindow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := c.Publish(context.Background(), &paho.Publish{Topic: "bench/paho", Payload: benchPayload, QoS: qos}); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}
