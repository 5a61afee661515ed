package wire

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParserSplitsPacketsAcrossAnyChunking(t *testing.T) {
	// PUBLISH QoS1 (topic "a/b", id 0x1234, payload "hi"), PINGREQ, PUBACK id 7,
	// and a PUBLISH whose remaining length needs two bytes (200).
	stream := []byte{0x32, 9, 0, 3, 'a', '/', 'b', 0x12, 0x34, 'h', 'i', 0xC0, 0, 0x40, 2, 0, 7}
	big := append([]byte{0x30, 0xC8, 0x01, 0, 1, 'x'}, make([]byte, 197)...)
	stream = append(stream, big...)
	want := []Header{
		{Type: PUBLISH, Flags: 2, Len: 9, Head: [4]byte{0, 3, 'a', '/'}},
		{Type: PINGREQ},
		{Type: PUBACK, Len: 2, Head: [4]byte{0, 7}},
		{Type: PUBLISH, Len: 200, Head: [4]byte{0, 1, 'x', 0}},
	}
	for _, chunk := range []int{1, 2, 3, 5, 7, len(stream)} {
		var got []Header
		var ps Parser
		for i := 0; i < len(stream); i += chunk {
			ps.Feed(stream[i:min(i+chunk, len(stream))], func(h Header) { got = append(got, h) })
		}
		require.Equal(t, want, got, "chunk size %d", chunk)
		require.True(t, ps.AtBoundary())
	}
}

func TestParserGivesUpOnOverlongLength(t *testing.T) {
	var ps Parser
	n := 0
	ps.Feed([]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01, 0xC0, 0}, func(Header) { n++ })
	require.True(t, ps.Lost())
	require.Zero(t, n)
}

func TestConnMeasuresPingRoundTrip(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := NewConn(a, nil)
	defer c.Close()

	go func() { // a broker that answers one PINGREQ after 20ms
		buf := make([]byte, 2)
		if _, err := b.Read(buf); err != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
		_, _ = b.Write([]byte{PINGRESP << 4, 0})
	}()
	require.NoError(t, c.SendPing(time.Second))
	require.NotZero(t, c.Stats().PingOutstanding)
	buf := make([]byte, 2)
	_, err := c.Read(buf)
	require.NoError(t, err)
	s := c.Stats()
	require.GreaterOrEqual(t, s.RTT, 20*time.Millisecond)
	require.Zero(t, s.PingOutstanding)
	require.EqualValues(t, 1, s.PacketsIn)
	require.EqualValues(t, 1, s.PacketsOut)
	require.False(t, s.LastReceived.IsZero())
}

func TestConnDoesNotSplitAPacket(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := NewConn(a, nil)
	defer c.Close()
	go func() { _, _ = b.Read(make([]byte, 16)) }()
	// Half a PUBLISH written: a ping now would corrupt the stream.
	_, err := c.Write([]byte{0x30, 5, 0, 1})
	require.NoError(t, err)
	require.ErrorIs(t, c.SendPing(time.Second), ErrBusy)
}

func TestCloseWithErrorKeepsTheFirstCause(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := NewConn(a, nil)
	first := net.UnknownNetworkError("first")
	require.NoError(t, c.CloseWithError(first))
	_ = c.CloseWithError(net.UnknownNetworkError("second"))
	require.Equal(t, first, c.Cause())
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed")
	}
}

func TestReadAfterCloseWithErrorReturnsTheCause(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := NewConn(a, nil)
	cause := net.UnknownNetworkError("link dead")
	errc := make(chan error, 1)
	go func() { _, err := c.Read(make([]byte, 1)); errc <- err }()
	require.NoError(t, c.CloseWithError(cause))
	require.Equal(t, cause, <-errc)
}

func BenchmarkParserFeed(b *testing.B) {
	pkt := append([]byte{0x30, 71, 0, 5, 'a', '/', 'b', '/', 'c'}, make([]byte, 64)...)
	buf := make([]byte, 0, 64*len(pkt))
	for i := 0; i < 64; i++ {
		buf = append(buf, pkt...)
	}
	var ps Parser
	n := 0
	emit := func(Header) { n++ }
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		ps.Feed(buf, emit)
	}
	if n != 64*b.N {
		b.Fatalf("parsed %d packets, want %d", n, 64*b.N)
	}
}

func TestBytesOfAnUnfinishedPacketCountAsAlive(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := NewConn(a, nil)
	defer c.Close()
	go func() { // a large PUBLISH trickling in
		_, _ = b.Write([]byte{0x30, 0xff, 0x7f})
		for i := 0; i < 3; i++ {
			time.Sleep(30 * time.Millisecond)
			_, _ = b.Write(make([]byte, 100))
		}
	}()
	buf := make([]byte, 512)
	for read := 0; read < 303; {
		n, err := c.Read(buf)
		require.NoError(t, err)
		read += n
	}
	s := c.Stats()
	require.Zero(t, s.PacketsIn, "the packet is not complete")
	require.GreaterOrEqual(t, s.SinceReceived, 90*time.Millisecond)
	require.Less(t, s.SinceAlive, s.SinceReceived)
}

// Whatever the broker sends, in whatever chunks, the observer never
// panics, and the packets it finds do not depend on the chunking.
func FuzzParser(f *testing.F) {
	f.Add([]byte{0x20, 0x02, 0x00, 0x00, 0xd0, 0x00}, uint8(1))
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, uint8(3))
	f.Add([]byte{0x40, 0x02, 0x00, 0x07, 0x90, 0x03, 0x00, 0x01, 0x80}, uint8(2))
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		var whole, split Parser
		var a, b []Header
		whole.Feed(stream, func(h Header) { a = append(a, h) })
		step := int(chunk%16) + 1
		for i := 0; i < len(stream); i += step {
			split.Feed(stream[i:min(i+step, len(stream))], func(h Header) { b = append(b, h) })
		}
		if len(a) != len(b) || whole.Lost() != split.Lost() || whole.AtBoundary() != split.AtBoundary() {
			t.Fatalf("chunking changed the result: %v / %v", a, b)
		}
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("packet %d: %+v / %+v", i, a[i], b[i])
			}
		}
	})
}
