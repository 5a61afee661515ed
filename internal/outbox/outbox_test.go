package outbox

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/engine"
)

func cfg(dir string) Config {
	return Config{MaxCount: 3, MaxBytes: 1 << 20, KeyWindow: time.Hour, KeyCount: 2, Dir: dir}
}

func add(t *testing.T, o *Outbox, m Message) *Entry {
	t.Helper()
	r, err := o.Add(m)
	require.NoError(t, err)
	require.NotNil(t, r.Entry)
	return r.Entry
}

func TestDurableOutboxReopens(t *testing.T) {
	dir := t.TempDir()
	o, err := Open(cfg(dir))
	require.NoError(t, err)
	a := add(t, o, Message{Topic: "t", Payload: []byte("a"), QoS: 1, Key: "ka"})
	add(t, o, Message{Topic: "t", Payload: []byte("b"), QoS: 2, Retain: true, Key: "kb"})
	require.Same(t, a, o.Next(nil))
	require.NoError(t, o.Ack(a))
	<-a.Done()
	require.NoError(t, a.Err())
	unsent, err := o.Close(ErrClosed)
	require.NoError(t, err)
	require.Equal(t, [3]int{0, 0, 1}, unsent)

	o, err = Open(cfg(dir))
	require.NoError(t, err)
	defer o.Close(ErrClosed)
	r, err := o.Add(Message{Topic: "t", Payload: []byte("a"), QoS: 1, Key: "ka"})
	require.NoError(t, err)
	require.True(t, r.Settled, "the acknowledged key is remembered across the restart")
	require.NoError(t, r.Prior)
	require.Equal(t, 1, o.Len())
	e := o.Next(nil)
	require.Equal(t, Message{Topic: "t", Payload: []byte("b"), QoS: 2, Retain: true, Key: "kb"}, e.Message)
	n := add(t, o, Message{Topic: "t", Payload: []byte("c"), QoS: 1})
	require.Greater(t, n.Seq(), e.Seq(), "a new message goes after the one that was left")
}

func TestDurableKeysForgetTheOldestFirst(t *testing.T) {
	dir := t.TempDir()
	o, err := Open(Config{MaxCount: 10, MaxBytes: 1 << 20, KeyWindow: time.Hour, KeyCount: 10, Dir: dir})
	require.NoError(t, err)
	for _, k := range []string{"z", "y", "x"} { // delivered in this order
		e := add(t, o, Message{Topic: "t", Key: k})
		o.Next(nil)
		require.NoError(t, o.Ack(e))
	}
	_, err = o.Close(ErrClosed)
	require.NoError(t, err)
	// Reopened with room for two keys: "z", the oldest, goes, although it
	// sorts last.
	o, err = Open(Config{MaxCount: 10, MaxBytes: 1 << 20, KeyWindow: time.Hour, KeyCount: 2, Dir: dir})
	require.NoError(t, err)
	defer o.Close(ErrClosed)
	for k, want := range map[string]bool{"z": false, "y": true, "x": true} {
		r, err := o.Add(Message{Topic: "t", Key: k})
		require.NoError(t, err)
		require.Equal(t, want, r.Settled, k)
	}
}

func TestKeyConflictsAndRememberedFailures(t *testing.T) {
	o, err := Open(Config{MaxCount: 10, MaxBytes: 1 << 20, KeyWindow: time.Hour, KeyCount: 10})
	require.NoError(t, err)
	e := add(t, o, Message{Topic: "t", Payload: []byte("1"), Key: "k"})
	_, err = o.Add(Message{Topic: "t", Payload: []byte("2"), Key: "k"})
	require.ErrorIs(t, err, ErrConflict, "pending key, other content")
	r, err := o.Add(Message{Topic: "t", Payload: []byte("1"), Key: "k"})
	require.NoError(t, err)
	require.True(t, r.Joined)
	require.Same(t, e, r.Entry)

	poison := errors.New("poison")
	o.Next(nil)
	require.NoError(t, o.Fail(e, poison))
	r, err = o.Add(Message{Topic: "t", Payload: []byte("1"), Key: "k"})
	require.NoError(t, err)
	require.True(t, r.Settled)
	require.ErrorIs(t, r.Prior, poison, "a retry gets the same failure, without a send")
	_, err = o.Add(Message{Topic: "t", Payload: []byte("2"), Key: "k"})
	require.ErrorIs(t, err, ErrConflict, "settled key, other content")
}

func TestDropOldestSkipsMessagesInFlight(t *testing.T) {
	o, err := Open(Config{MaxCount: 2, MaxBytes: 1 << 20, Policy: DropOldest, KeyWindow: time.Hour, KeyCount: 10})
	require.NoError(t, err)
	a := add(t, o, Message{Topic: "a"})
	b := add(t, o, Message{Topic: "b"})
	require.Same(t, a, o.Next(nil)) // a is in flight
	r, err := o.Add(Message{Topic: "c"})
	require.NoError(t, err)
	require.Equal(t, []*Entry{b}, r.Dropped)
	require.ErrorIs(t, b.Err(), ErrDropped)
	require.Equal(t, "c", o.Next(nil).Topic)
	// Only in-flight messages left: the next one is refused, nothing dropped.
	_, err = o.Add(Message{Topic: "d"})
	require.ErrorIs(t, err, ErrFull)
	require.Equal(t, 2, o.Len())
}

func TestDropOldestDropsNothingWhenTheMessageCannotFit(t *testing.T) {
	o, err := Open(Config{MaxCount: 10, MaxBytes: 10, Policy: DropOldest, KeyWindow: time.Hour, KeyCount: 10})
	require.NoError(t, err)
	a := add(t, o, Message{Topic: "t", Payload: []byte("1234")})
	require.Same(t, a, o.Next(nil))
	add(t, o, Message{Topic: "t", Payload: []byte("1234")})
	// Needs 8 bytes freed; only 5 are droppable (the other is in flight).
	_, err = o.Add(Message{Topic: "t", Payload: []byte("1234567")})
	require.ErrorIs(t, err, ErrFull)
	require.Equal(t, 2, o.Len(), "nothing dropped for nothing")
}

func TestKeysAreBoundedByCountAndTime(t *testing.T) {
	o, err := Open(Config{MaxCount: 10, MaxBytes: 1 << 20, KeyWindow: 50 * time.Millisecond, KeyCount: 2})
	require.NoError(t, err)
	for _, k := range []string{"1", "2", "3"} {
		e := add(t, o, Message{Topic: "t", Key: k})
		o.Next(nil)
		require.NoError(t, o.Ack(e))
	}
	settled := func(k string) bool {
		r, err := o.Add(Message{Topic: "t", Key: k})
		require.NoError(t, err)
		if r.Entry != nil && !r.Joined {
			o.Next(nil)
			require.NoError(t, o.Fail(r.Entry, errors.New("test")))
		}
		return r.Settled
	}
	require.False(t, settled("1"), "beyond the count")
	require.True(t, settled("3"))
	time.Sleep(60 * time.Millisecond)
	require.False(t, settled("2"), "beyond the window")
}

func TestCorruptRecordIsRefused(t *testing.T) {
	_, err := decode([]byte{1, 0, 200})
	require.ErrorIs(t, err, errCorrupt)
	m := Message{Topic: "x/y", Payload: []byte{0, 1, 2}, QoS: 2, Retain: true, Key: "k"}
	back, err := decode(encode(&m))
	require.NoError(t, err)
	require.Equal(t, m, back)
}

func TestNextPrefersStop(t *testing.T) {
	o, err := Open(Config{MaxCount: 10, MaxBytes: 1 << 20, KeyWindow: time.Hour, KeyCount: 10})
	require.NoError(t, err)
	add(t, o, Message{Topic: "t"})
	stop := make(chan struct{})
	close(stop)
	require.Nil(t, o.Next(stop), "a closed stop wins over a waiting entry")
}

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// The time limit alone forgets a settled key: with room for many keys, a
// retry within the window is answered from the key, and the same message
// after the window is a new message.
func TestKeyWindowForgetsAfterTimeAlone(t *testing.T) {
	const window = time.Minute
	for _, durable := range []bool{false, true} {
		name := "memory"
		if durable {
			name = "durable"
		}
		t.Run(name, func(t *testing.T) {
			clock := newFakeClock()
			conf := Config{MaxCount: 10, MaxBytes: 1 << 20, KeyWindow: window, KeyCount: 1000, Now: clock.Now}
			if durable {
				conf.Dir = t.TempDir()
			}
			o, err := Open(conf)
			require.NoError(t, err)
			t.Cleanup(func() { _, _ = o.Close(ErrClosed) })
			m := Message{Topic: "t", Payload: []byte("reading"), QoS: 1, Key: "k"}

			first := add(t, o, m)
			require.Same(t, first, o.Next(nil))
			require.NoError(t, o.Ack(first))
			<-first.Done()
			require.NoError(t, first.Err())
			require.Equal(t, 0, o.Len())

			clock.Advance(window - time.Millisecond)
			r, err := o.Add(m)
			require.NoError(t, err)
			require.True(t, r.Settled, "within the window the key is still known")
			require.NoError(t, r.Prior, "the earlier outcome: delivered")
			require.Nil(t, r.Entry, "nothing queued for a settled key")
			require.False(t, r.Joined)
			require.Equal(t, 0, o.Len(), "nothing queued for a settled key")

			if durable {
				// The key is on disk with the injected time: a reopened
				// outbox, still within the window, knows it too.
				_, err := o.Close(ErrClosed)
				require.NoError(t, err)
				o, err = Open(conf)
				require.NoError(t, err)
				t.Cleanup(func() { _, _ = o.Close(ErrClosed) })
				r, err := o.Add(m)
				require.NoError(t, err)
				require.True(t, r.Settled, "within the window after a reopen the key is still known")
				require.Equal(t, 0, o.Len())
			}

			clock.Advance(2 * time.Millisecond) // the window has passed; no other key was settled
			r, err = o.Add(m)
			require.NoError(t, err)
			require.False(t, r.Settled, "after the window the key is forgotten")
			require.False(t, r.Joined)
			require.NotNil(t, r.Entry, "the message is queued again")
			require.Equal(t, 1, o.Len())
			again := o.Next(nil)
			require.Same(t, r.Entry, again)
			require.Equal(t, m, again.Message)
			require.NotSame(t, first, again, "a new message, not the settled one")
			require.Equal(t, 1, again.Sends)

			// Settled again, it is remembered for a new window.
			require.NoError(t, o.Ack(again))
			r, err = o.Add(m)
			require.NoError(t, err)
			require.True(t, r.Settled)
		})
	}
}

// A durable outbox reopened after the window does not bring the key back.
func TestDurableKeyWindowAcrossReopen(t *testing.T) {
	const window = time.Minute
	clock := newFakeClock()
	conf := Config{MaxCount: 10, MaxBytes: 1 << 20, KeyWindow: window, KeyCount: 1000, Dir: t.TempDir(), Now: clock.Now}
	o, err := Open(conf)
	require.NoError(t, err)
	m := Message{Topic: "t", Payload: []byte("x"), QoS: 1, Key: "k"}
	e := add(t, o, m)
	o.Next(nil)
	require.NoError(t, o.Ack(e))
	_, err = o.Close(ErrClosed)
	require.NoError(t, err)

	clock.Advance(window + time.Millisecond)
	o, err = Open(conf)
	require.NoError(t, err)
	defer o.Close(ErrClosed)
	r, err := o.Add(m)
	require.NoError(t, err)
	require.False(t, r.Settled, "a key older than the window is not loaded")
	require.NotNil(t, r.Entry)
	require.Equal(t, 1, o.Len())
}

func TestPropertiesSurviveTheDisk(t *testing.T) {
	props := &engine.Properties{ContentType: "application/json", ResponseTopic: "r/1", CorrelationData: []byte{1, 2},
		MessageExpiry: 90 * time.Second, User: []engine.UserProperty{{Key: "a", Value: "1"}, {Key: "a", Value: "2"}}}
	m := Message{Topic: "t", Payload: []byte("p"), QoS: 1, Key: "k", Props: props}
	got, err := decode(encode(&m))
	require.NoError(t, err)
	require.Equal(t, m, got)
	plain := Message{Topic: "t", Payload: []byte("p"), QoS: 2, Retain: true}
	got, err = decode(encode(&plain))
	require.NoError(t, err)
	require.Equal(t, plain, got)
	require.Nil(t, got.Props)
}
