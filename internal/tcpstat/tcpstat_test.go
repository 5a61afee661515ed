package tcpstat

import (
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAckedAndQueuedFollowTheWrites(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("skipping: TCP_INFO and SIOCOUTQ are read on Linux only")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	peer := <-accepted
	defer peer.Close()

	before, ok := Read(c)
	require.True(t, ok)
	_, err = c.Write(make([]byte, 10000))
	require.NoError(t, err)
	_, err = io.ReadFull(peer, make([]byte, 10000))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st, ok := Read(c)
		return ok && st.Acked >= before.Acked+10000 && st.Queued == 0
	}, 2*time.Second, time.Millisecond)

	// A peer that stops reading: the bytes wait in the queue.
	_, err = c.Write(make([]byte, 64<<10))
	require.NoError(t, err)
	st, ok := Read(c)
	require.True(t, ok)
	require.Positive(t, st.Queued+int(st.Acked-before.Acked-10000), "the write is queued or acknowledged")

	_, ok = Read(&net.UnixConn{})
	require.False(t, ok)
}
