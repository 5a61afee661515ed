package tcpstat

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

func read(c net.Conn) (Stat, bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return Stat{}, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return Stat{}, false
	}
	var (
		st   Stat
		good bool
	)
	cerr := rc.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return
		}
		queued, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
		if err != nil {
			return
		}
		st, good = Stat{Acked: info.Bytes_acked, Queued: queued}, true
	})
	return st, good && cerr == nil
}
