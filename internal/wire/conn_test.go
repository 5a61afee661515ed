package wire

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// instantPeer is a broker that answers a PINGREQ before the client's Write
// returns, as an in-process or same-host broker does: the PINGRESP has been
// read and processed by the wire.Conn before Write hands back control.
type instantPeer struct {
	net.Conn // nil: only the methods below are used
	toReader chan []byte
	readDone chan struct{}
	pings    int
}

func (p *instantPeer) Write(b []byte) (int, error) {
	if len(b) == 2 && b[0] == PINGREQ<<4 {
		p.pings++
		p.toReader <- []byte{PINGRESP << 4, 0}
		<-p.readDone // the answer is processed before the write returns
	}
	return len(b), nil
}

func (p *instantPeer) Read(b []byte) (int, error) {
	msg, ok := <-p.toReader
	if !ok {
		return 0, net.ErrClosed
	}
	return copy(b, msg), nil
}

func (p *instantPeer) SetWriteDeadline(time.Time) error { return nil }
func (p *instantPeer) Close() error                     { return nil }

func TestPingAnsweredBeforeWriteReturns(t *testing.T) {
	peer := &instantPeer{toReader: make(chan []byte), readDone: make(chan struct{})}
	c := NewConn(peer, nil)
	go func() {
		buf := make([]byte, 16)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
			peer.readDone <- struct{}{}
		}
	}()
	defer close(peer.toReader)

	for i := 1; i <= 3; i++ {
		require.NoError(t, c.SendPing(time.Second))
		require.Equal(t, i, peer.pings, "ping %d must reach the wire: an answered ping is not outstanding", i)
		s := c.Stats()
		require.Zero(t, s.PingOutstanding, "ping %d was answered", i)
		require.Positive(t, s.RTT, "ping %d: the round trip is measured", i)
	}

	// paho's pinger writes through Write, not SendPing: the same holds.
	_, err := c.Write([]byte{PINGREQ << 4, 0})
	require.NoError(t, err)
	require.Zero(t, c.Stats().PingOutstanding)
	require.NoError(t, c.SendPing(time.Second))
	require.Equal(t, 5, peer.pings)
}

// failingConn takes nothing.
type failingConn struct{ net.Conn }

func (failingConn) Write([]byte) (int, error)        { return 0, net.ErrClosed }
func (failingConn) SetWriteDeadline(time.Time) error { return nil }

func TestFailedPingWriteIsNotOutstanding(t *testing.T) {
	c := NewConn(failingConn{}, nil)
	require.Error(t, c.SendPing(time.Second))
	require.Zero(t, c.Stats().PingOutstanding, "a PINGREQ that never left expects no answer")
}
