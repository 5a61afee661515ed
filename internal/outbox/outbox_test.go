package outbox

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func cfg(dir string) Config {
	return Config{MaxCount: 3, MaxBytes: 1 << 20, KeyWindow: time.Hour, KeyCount: 2, Dir: dir}
}

func TestDurableOutboxReopens(t *testing.T) {
	dir := t.TempDir()
	o, err := Open(cfg(dir))
	require.NoError(t, err)
	a, _, _, err := o.Add(Message{Topic: "t", Payload: []byte("a"), QoS: 1, Key: "ka"})
	require.NoError(t, err)
	_, _, _, err = o.Add(Message{Topic: "t", Payload: []byte("b"), QoS: 2, Retain: true, Key: "kb"})
	require.NoError(t, err)
	require.Same(t, a, o.Next(nil))
	require.NoError(t, o.Ack(a))
	<-a.Done()
	require.NoError(t, a.Err())
	unsent, err := o.Close(ErrClosed)
	require.NoError(t, err)
	require.Equal(t, 1, unsent)

	o, err = Open(cfg(dir))
	require.NoError(t, err)
	defer o.Close(ErrClosed)
	require.True(t, o.Delivered("ka"), "the acknowledged key is remembered")
	require.False(t, o.Delivered("kb"))
	require.Equal(t, 1, o.Len())
	e := o.Next(nil)
	require.Equal(t, Message{Topic: "t", Payload: []byte("b"), QoS: 2, Retain: true, Key: "kb"}, e.Message)
	// A new message goes after the one that was left.
	n, _, _, err := o.Add(Message{Topic: "t", Payload: []byte("c"), QoS: 1})
	require.NoError(t, err)
	require.Greater(t, n.seq, e.seq)
}

func TestDropOldestSkipsMessagesInFlight(t *testing.T) {
	o, err := Open(Config{MaxCount: 2, MaxBytes: 1 << 20, Policy: DropOldest, KeyWindow: time.Hour, KeyCount: 10})
	require.NoError(t, err)
	a, _, _, _ := o.Add(Message{Topic: "a"})
	b, _, _, _ := o.Add(Message{Topic: "b"})
	require.Same(t, a, o.Next(nil)) // a is in flight
	_, _, dropped, err := o.Add(Message{Topic: "c"})
	require.NoError(t, err)
	require.Same(t, b, dropped)
	require.ErrorIs(t, b.Err(), ErrDropped)
	// Only in-flight messages left to drop: the next one is refused.
	require.Equal(t, "c", o.Next(nil).Topic)
	_, _, _, err = o.Add(Message{Topic: "d"})
	require.ErrorIs(t, err, ErrFull)
}

func TestKeysAreBoundedByCountAndTime(t *testing.T) {
	o, err := Open(Config{MaxCount: 10, MaxBytes: 1 << 20, KeyWindow: 50 * time.Millisecond, KeyCount: 2})
	require.NoError(t, err)
	for _, k := range []string{"1", "2", "3"} {
		o.Remember(k)
	}
	require.False(t, o.Delivered("1"), "beyond the count")
	require.True(t, o.Delivered("3"))
	time.Sleep(60 * time.Millisecond)
	require.False(t, o.Delivered("3"), "beyond the window")
}

func TestJoinAndBytesLimit(t *testing.T) {
	o, err := Open(Config{MaxCount: 10, MaxBytes: 10, KeyWindow: time.Hour, KeyCount: 10})
	require.NoError(t, err)
	a, joined, _, err := o.Add(Message{Topic: "t", Payload: []byte("1234"), Key: "k"})
	require.NoError(t, err)
	require.False(t, joined)
	b, joined, _, err := o.Add(Message{Topic: "t", Payload: []byte("1234"), Key: "k"})
	require.NoError(t, err)
	require.True(t, joined)
	require.Same(t, a, b)
	_, _, _, err = o.Add(Message{Topic: "t", Payload: []byte("123456")})
	require.ErrorIs(t, err, ErrFull, "over the byte limit")
}

func TestCorruptRecordIsRefused(t *testing.T) {
	_, err := decode([]byte{1, 0, 200})
	require.ErrorIs(t, err, errCorrupt)
	m := Message{Topic: "x/y", Payload: []byte{0, 1, 2}, QoS: 2, Retain: true, Key: "k"}
	back, err := decode(encode(&m))
	require.NoError(t, err)
	require.Equal(t, m, back)
}
