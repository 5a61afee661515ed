//go:build !linux

package tcpstat

import "net"

// Elsewhere the keepalive judges uploads by the progress of the writes.
func read(net.Conn) (Stat, bool) { return Stat{}, false }
