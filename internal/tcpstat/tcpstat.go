// Package tcpstat reads what the kernel knows of a TCP connection that the
// application cannot see: how many bytes the peer has acknowledged, and how
// many still wait in the send queue. A large write on a slow uplink returns
// long before its bytes arrive; these counters show whether they are
// arriving.
package tcpstat

import "net"

// Stat is one reading.
type Stat struct {
	Acked  uint64 // bytes the peer acknowledged since the connection began
	Queued int    // bytes written but not yet acknowledged
}

// Read reads c, which must be the TCP socket itself (not a TLS or
// WebSocket layer on it); false where the system cannot tell.
func Read(c net.Conn) (Stat, bool) { return read(c) }
