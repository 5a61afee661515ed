//go:build !linux

package dial

import "net/netip"

// routesVia: the routing table is read on Linux only.
func routesVia(string) ([]netip.Prefix, bool) { return nil, false }
