package netif

import (
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Supported reports whether sockets can be bound to an interface here.
const Supported = true

// Control binds the socket to the interface with IP_BOUND_IF /
// IPV6_BOUND_IF. macOS has no TCP_USER_TIMEOUT; the keepalive monitor
// covers a dead path alone.
func Control(device string, index int, _ time.Duration) func(network, address string, c syscall.RawConn) error {
	return func(network, _ string, c syscall.RawConn) error {
		if device == "" {
			return nil
		}
		var serr error
		err := c.Control(func(fd uintptr) {
			if network == "tcp6" {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_BOUND_IF, index)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BOUND_IF, index)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}
