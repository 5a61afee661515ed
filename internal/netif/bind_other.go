//go:build !linux && !darwin

package netif

import (
	"syscall"
	"time"
)

// Supported reports whether sockets can be bound to an interface here.
const Supported = false

// Control only refuses: binding to an interface is not available on this
// system.
func Control(device string, _ int, _ time.Duration) func(network, address string, c syscall.RawConn) error {
	return func(string, string, syscall.RawConn) error {
		if device != "" {
			return syscall.ENOTSUP
		}
		return nil
	}
}
