package netproxy

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// packet encodes a packet of type t with body as its variable header and
// payload.
func packet(t, flags byte, body []byte) []byte {
	out := []byte{t<<4 | flags}
	n := len(body)
	for {
		b := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

func puback(id uint16) []byte { return packet(wire.PUBACK, 0, []byte{byte(id >> 8), byte(id)}) }

// brokerStream is what a broker might send: packets of every size class,
// two PUBACKs among them.
func brokerStream() (all []byte, parts [][]byte) {
	parts = [][]byte{
		packet(wire.CONNACK, 0, []byte{0, 0}),
		puback(1),
		packet(wire.PINGRESP, 0, nil),
		packet(wire.PUBLISH, 2, append([]byte{0, 3, 'a', '/', 'b', 0, 9}, bytes.Repeat([]byte("x"), 300)...)), // 2-byte length
		puback(2),
		packet(wire.SUBACK, 0, []byte{0, 7, 1}),
		packet(wire.PUBLISH, 0, append([]byte{0, 1, 't'}, bytes.Repeat([]byte("y"), 20000)...)), // 3-byte length
	}
	for _, p := range parts {
		all = append(all, p...)
	}
	return all, parts
}

func without(parts [][]byte, t byte) []byte {
	var out []byte
	for _, p := range parts {
		if p[0]>>4 != t {
			out = append(out, p...)
		}
	}
	return out
}

// run feeds the stream to a framer in chunks of the given sizes (the last
// one repeated) and returns what it forwarded.
func run(f *framer, stream []byte, sizes ...int) []byte {
	var got []byte
	for i, k := 0, 0; len(stream) > 0; i++ {
		if i < len(sizes) {
			k = sizes[i]
		}
		n := min(k, len(stream))
		got = append(got, f.next(stream[:n], false)...)
		stream = stream[n:]
	}
	return got
}

func TestFramerDropsWholePacketsAtEverySplit(t *testing.T) {
	stream, parts := brokerStream()
	type runCase struct {
		parts [][]byte
		sizes []int
	}
	var cases []runCase
	// Every split into two chunks of the stream up to the 20 kB PUBLISH…
	short := parts[:len(parts)-1]
	n := len(stream) - len(parts[len(parts)-1])
	for i := 1; i < n; i++ {
		cases = append(cases, runCase{short, []int{i, n}})
	}
	// …and the whole stream in chunks of a few sizes.
	for _, k := range []int{1, 2, 3, 7, 1000, len(stream)} {
		cases = append(cases, runCase{parts, []int{k}})
	}
	for _, c := range cases {
		var in []byte
		for _, part := range c.parts {
			in = append(in, part...)
		}
		p := &Proxy{}
		p.DropFromBroker(func(pt byte) bool { return pt == wire.PUBACK })
		var ids []uint16
		p.ObserveFromBroker(func(conn int, h wire.Header, dropped bool) {
			require.Equal(t, 7, conn)
			if h.Type == wire.PUBACK {
				require.True(t, dropped)
				ids = append(ids, uint16(h.Head[0])<<8|uint16(h.Head[1]))
			} else {
				require.False(t, dropped)
			}
		})
		got := run(&framer{p: p, conn: 7}, in, c.sizes...)
		require.Equal(t, without(c.parts, wire.PUBACK), got, "chunks %v", c.sizes)
		require.Equal(t, []uint16{1, 2}, ids, "chunks %v", c.sizes)
		fw, dr := p.FromBroker(wire.PUBACK)
		require.Equal(t, 0, fw)
		require.Equal(t, 2, dr)
		fw, dr = p.FromBroker(wire.PUBLISH)
		require.Equal(t, len(c.parts)-5, fw)
		require.Equal(t, 0, dr)
	}
}

func TestFramerForwardsEverythingWithoutFilter(t *testing.T) {
	stream, _ := brokerStream()
	for _, sizes := range [][]int{{1}, {5}, {333}, {len(stream)}} {
		p := &Proxy{}
		got := run(&framer{p: p}, stream, sizes...)
		require.Equal(t, stream, got)
		fw, dr := p.FromBroker(wire.PUBACK)
		require.Equal(t, 2, fw)
		require.Equal(t, 0, dr)
	}
}

func TestFramerFilterChangesAtPacketBoundaries(t *testing.T) {
	stream, parts := brokerStream()
	at := make([]int, len(parts)+1) // where each packet begins
	for i, part := range parts {
		at[i+1] = at[i] + len(part)
	}
	p := &Proxy{}
	f := &framer{p: p}
	// No filter yet: the first PUBACK goes on, and so do the first bytes
	// of the big PUBLISH.
	got := f.next(stream[:at[3]+10], false)
	// A filter set in the middle of the PUBLISH does not cut it; the
	// PUBACK after it is held and dropped; the SUBACK is held…
	p.DropFromBroker(func(pt byte) bool { return pt == wire.PUBACK || pt == wire.PUBLISH })
	got = append(got, f.next(stream[at[3]+10:at[5]+2], false)...)
	require.Equal(t, stream[:at[4]], got, "the PUBLISH that had begun is forwarded whole, the SUBACK is held")
	// …and forwarded whole once the filter is gone, with what follows.
	p.DropFromBroker(nil)
	got = append(got, f.next(stream[at[5]+2:], false)...)
	var want []byte
	for i, part := range parts {
		if i != 4 {
			want = append(want, part...)
		}
	}
	require.Equal(t, want, got)
	fw, dr := p.FromBroker(wire.PUBACK)
	require.Equal(t, 1, fw)
	require.Equal(t, 1, dr)
	fw, dr = p.FromBroker(wire.PUBLISH)
	require.Equal(t, 2, fw)
	require.Equal(t, 0, dr)
}

func TestFramerReplacesPackets(t *testing.T) {
	stream, parts := brokerStream()
	p := &Proxy{}
	// Each PUBACK becomes a SUBACK with the same packet identifier.
	p.ReplaceFromBroker(func(h wire.Header, pkt []byte) []byte {
		if h.Type != wire.PUBACK {
			return pkt
		}
		return packet(wire.SUBACK, 0, []byte{pkt[2], pkt[3], 0})
	})
	var replaced []uint16
	p.ObserveFromBroker(func(_ int, h wire.Header, dropped bool) {
		if dropped {
			replaced = append(replaced, uint16(h.Head[0])<<8|uint16(h.Head[1]))
		}
	})
	got := run(&framer{p: p}, stream, 3)
	var want []byte
	for _, part := range parts {
		if part[0]>>4 == wire.PUBACK {
			part = packet(wire.SUBACK, 0, []byte{part[2], part[3], 0})
		}
		want = append(want, part...)
	}
	require.Equal(t, want, got)
	require.Equal(t, []uint16{1, 2}, replaced)
	fw, dr := p.FromBroker(wire.PUBACK)
	require.Equal(t, 0, fw)
	require.Equal(t, 2, dr)
	fw, dr = p.FromBroker(wire.SUBACK)
	require.Equal(t, 3, fw, "two made from PUBACKs, one of the broker's")
	require.Equal(t, 0, dr)

	// DropFromBroker takes its place.
	p.DropFromBroker(func(pt byte) bool { return pt == wire.PUBACK })
	require.Equal(t, packet(wire.PINGRESP, 0, nil), (&framer{p: p}).next(append(puback(5), packet(wire.PINGRESP, 0, nil)...), false))
}

func TestFramerKeepsFramingThroughTheBlackhole(t *testing.T) {
	stream, parts := brokerStream()
	p := &Proxy{}
	p.DropFromBroker(func(pt byte) bool { return pt == wire.PUBACK })
	f := &framer{p: p}
	// The first two packets fall into the blackhole; framing goes on.
	n := len(parts[0]) + len(parts[1])
	require.Empty(t, f.next(stream[:n], true))
	got := f.next(stream[n:], false)
	require.Equal(t, without(parts[2:], wire.PUBACK), got)
	fw, dr := p.FromBroker(wire.PUBACK)
	require.Equal(t, 0, fw)
	require.Equal(t, 1, dr, "the blackholed PUBACK is not counted")
}

func TestFramerPassesWhatIsNotMQTT(t *testing.T) {
	p := &Proxy{}
	p.DropFromBroker(func(byte) bool { return true })
	f := &framer{p: p}
	junk := []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01, 'h', 'i'} // five length bytes
	require.Equal(t, junk, f.next(junk, false), "a stream that is not MQTT goes on as it is")
	require.Equal(t, []byte("more"), f.next([]byte("more"), false))
}

// fakeBroker accepts one connection at a time and hands it to the test.
func fakeBroker(t *testing.T) (addr string, conns <-chan net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ch := make(chan net.Conn, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			ch <- c
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
		close(ch)
		for c := range ch {
			_ = c.Close()
		}
	})
	return l.Addr().String(), ch
}

func accepted(t *testing.T, conns <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-conns:
		t.Cleanup(func() { _ = c.Close() })
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("the proxy did not connect to the broker")
		return nil
	}
}

func TestProxyDropsFromBrokerAndCuts(t *testing.T) {
	addr, conns := fakeBroker(t)
	p, err := Start(addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	p.DropFromBroker(func(pt byte) bool { return pt == wire.PUBACK })

	client, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })
	brk := accepted(t, conns)

	stream, parts := brokerStream()
	go func() {
		for len(stream) > 0 { // in odd pieces, so that packets span reads
			n := min(len(stream), 97)
			if _, err := brk.Write(stream[:n]); err != nil {
				return
			}
			stream = stream[n:]
		}
	}()
	want := without(parts, wire.PUBACK)
	got := make([]byte, len(want))
	require.NoError(t, client.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = io.ReadFull(client, got)
	require.NoError(t, err)
	require.Equal(t, want, got)

	// The client → broker direction is untouched.
	_, err = client.Write(puback(9))
	require.NoError(t, err)
	back := make([]byte, 4)
	require.NoError(t, brk.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = io.ReadFull(brk, back)
	require.NoError(t, err)
	require.Equal(t, puback(9), back)

	p.CutAll()
	_, err = client.Read(make([]byte, 1))
	require.Error(t, err, "the client's connection is cut")
	_, err = brk.Read(make([]byte, 1))
	require.Error(t, err, "the broker's connection is cut")

	// The proxy still listens; without the filter every packet goes on.
	p.DropFromBroker(nil)
	client2, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = client2.Close() })
	brk2 := accepted(t, conns)
	_, err = brk2.Write(puback(3))
	require.NoError(t, err)
	got = make([]byte, 4)
	require.NoError(t, client2.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = io.ReadFull(client2, got)
	require.NoError(t, err)
	require.Equal(t, puback(3), got)
	fw, dr := p.FromBroker(wire.PUBACK)
	require.Equal(t, 1, fw)
	require.Equal(t, 2, dr)
}
