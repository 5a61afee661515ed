//go:build !linux

package diagnose

import "net/netip"

// ipv6Flags: only Linux tells, through /proc.
func ipv6Flags() map[netip.Addr]string { return nil }
