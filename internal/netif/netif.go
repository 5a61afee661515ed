// Package netif reads the host's network interfaces and binds sockets to
// one of them. Reading goes through Source so that the selection rules can
// be tested without root against a fake host.
package netif

import (
	"net"
	"net/netip"
)

// Interface is what the selection rules need to know of a NIC.
type Interface struct {
	Name    string
	Index   int
	Up      bool // administratively up
	Running bool // operationally up: carrier present
	Addrs   []netip.Prefix
}

// Source lists the host's interfaces.
type Source interface {
	Interfaces() ([]Interface, error)
}

// System reads the real host.
type System struct{}

// Interfaces lists the host's interfaces with their addresses.
func (System) Interfaces() ([]Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	out := make([]Interface, 0, len(ifs))
	for _, ifc := range ifs {
		it := Interface{
			Name: ifc.Name, Index: ifc.Index,
			Up: ifc.Flags&net.FlagUp != 0, Running: ifc.Flags&net.FlagRunning != 0,
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
					ones, _ := ipn.Mask.Size()
					it.Addrs = append(it.Addrs, netip.PrefixFrom(ip.Unmap(), ones))
				}
			}
		}
		out = append(out, it)
	}
	return out, nil
}

// Fake is a Source for tests.
type Fake struct {
	List []Interface
	Err  error
}

// Interfaces returns the fake list.
func (f *Fake) Interfaces() ([]Interface, error) { return f.List, f.Err }
