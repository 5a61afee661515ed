package tcpstat

import (
	"net"
	"syscall"
	"unsafe"

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
		var info unix.TCPInfo
		n := uint32(unsafe.Sizeof(info))
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.IPPROTO_TCP, unix.TCP_INFO,
			uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&n)), 0)
		// Kernels before 4.1 fill a shorter struct without the acknowledged
		// bytes: then the kernel cannot tell, rather than say 0 for ever.
		if errno != 0 || uintptr(n) < unsafe.Offsetof(info.Bytes_acked)+unsafe.Sizeof(info.Bytes_acked) {
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
