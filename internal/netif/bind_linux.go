package netif

import (
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Supported reports whether sockets can be bound to an interface here.
const Supported = true

// Control returns a net.Dialer Control function that binds the socket to
// device (SO_BINDTODEVICE: the kernel then routes by that NIC whatever the
// main table says) and sets TCP_USER_TIMEOUT, so that the kernel, too,
// gives up on a path that stopped acknowledging. Either may be empty/zero.
func Control(device string, index int, userTimeout time.Duration) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if device != "" {
				if serr = unix.BindToDevice(int(fd), device); serr != nil {
					return
				}
			}
			if userTimeout > 0 {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(userTimeout.Milliseconds()))
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}
