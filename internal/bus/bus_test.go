package bus

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestOrderedDeliveryAndCoalescing(t *testing.T) {
	defer goleak.VerifyNone(t)
	b := New[int](2, nil)
	release, blocked := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var got []int
	var dropped []int
	b.Subscribe(func(v, d int, _ <-chan struct{}) bool {
		if v == 0 {
			close(blocked)
			<-release // block on the first value while the rest pile up
		}
		mu.Lock()
		got, dropped = append(got, v), append(dropped, d)
		mu.Unlock()
		return true
	}, nil)
	fast := make(chan int, 100)
	b.Subscribe(func(v, _ int, _ <-chan struct{}) bool { fast <- v; return true }, nil)

	b.Publish(0)
	<-blocked
	for i := 1; i < 10; i++ {
		b.Publish(i) // never blocks although the first subscriber is stuck
	}
	// The other subscriber is not held up: it reaches the latest value.
	for v := -1; v != 9; {
		select {
		case v = <-fast:
		case <-time.After(2 * time.Second):
			close(release)
			t.Fatal("fast subscriber held up by a slow one")
		}
	}
	close(release)
	require.NoError(t, b.Close(context.Background()))
	// 0 was being delivered; 1..9 went through a mailbox of 2: 8 and 9 stay,
	// and 8 carries the count of the 7 coalesced away.
	require.Equal(t, []int{0, 8, 9}, got)
	require.Equal(t, []int{0, 7, 0}, dropped)
}

func TestPanicIsRecoveredAndSubscriberKeepsReceiving(t *testing.T) {
	defer goleak.VerifyNone(t)
	var panics int
	b := New[int](8, func(any) { panics++ })
	got := make(chan int, 3)
	b.Subscribe(func(v, _ int, _ <-chan struct{}) bool {
		if v == 1 {
			panic("boom")
		}
		got <- v
		return true
	}, nil)
	for i := 0; i < 3; i++ {
		b.Publish(i)
	}
	require.NoError(t, b.Close(context.Background()))
	require.Equal(t, 1, panics)
	require.Equal(t, []int{0, 2}, []int{<-got, <-got})
}

func TestCloseAbortsBlockedDeliveryWhenContextEnds(t *testing.T) {
	defer goleak.VerifyNone(t)
	b := New[int](4, nil)
	exited := make(chan struct{})
	b.Subscribe(func(_ int, _ int, abort <-chan struct{}) bool {
		<-abort // a channel send nobody reads
		return false
	}, func() { close(exited) })
	b.Publish(1)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, b.Close(ctx), context.DeadlineExceeded)
	<-exited
}

func TestCancelStopsDeliveries(t *testing.T) {
	defer goleak.VerifyNone(t)
	b := New[int](4, nil)
	var n int
	var cancel func()
	cancel = b.Subscribe(func(int, int, <-chan struct{}) bool { n++; cancel(); return true }, nil)
	b.Publish(1)
	b.Publish(2)
	require.NoError(t, b.Close(context.Background()))
	require.LessOrEqual(t, n, 1)
}

// Values a subscriber does not want never take a place in its mailbox:
// a flood of them cannot push out a wanted one or count as dropped.
func TestUnwantedValuesNeverCrowdOutWantedOnes(t *testing.T) {
	defer goleak.VerifyNone(t)
	b := New[int](2, nil)
	release, blocked := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var got, dropped []int
	b.SubscribeWhere(func(v int) bool { return v%100 == 0 }, func(v, d int, _ <-chan struct{}) bool {
		if v == 0 {
			close(blocked)
			<-release
		}
		mu.Lock()
		got, dropped = append(got, v), append(dropped, d)
		mu.Unlock()
		return true
	}, nil)
	b.Publish(0)
	<-blocked
	b.Publish(100) // wanted, then a flood of unwanted values
	for i := 1; i < 100; i++ {
		b.Publish(100 + i)
	}
	close(release)
	require.NoError(t, b.Close(context.Background()))
	require.Equal(t, []int{0, 100}, got)
	require.Equal(t, []int{0, 0}, dropped)
}
