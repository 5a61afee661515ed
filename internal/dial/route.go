package dial

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/netif"
)

// Route asks the kernel how t's source reaches addr, without sending a
// packet: connecting a UDP socket, bound as the TCP dial binds (interface,
// source address), makes it look the route up. It returns the source
// address the kernel would use, or why there is no route.
func Route(t Target, addr netip.Addr) (netip.Addr, error) {
	d := &net.Dialer{Control: netif.Control(t.Interface, t.IfIndex, 0)}
	from := ""
	switch {
	case t.Interface != "":
		from = "interface " + t.Interface
		if t.Source.IsValid() {
			d.LocalAddr = &net.UDPAddr{IP: t.Source.AsSlice(), Zone: t.Source.Zone()}
			from += " (" + t.Source.String() + ")"
		}
	case t.SourceIP != nil:
		d.LocalAddr = &net.UDPAddr{IP: t.SourceIP}
		from = "source address " + t.SourceIP.String()
	}
	// The port does not matter: nothing is sent.
	conn, err := d.Dial("udp", netip.AddrPortFrom(addr, 9).String())
	if err != nil {
		if from != "" {
			err = classifySource(err, from)
		}
		return netip.Addr{}, errs.AtStep(errs.StepRoute, fmt.Errorf("steadymqtt: no route to %s: %w", addr, err))
	}
	defer conn.Close()
	local, _ := netip.AddrFromSlice(conn.LocalAddr().(*net.UDPAddr).IP)
	if t.Interface != "" && !leadsTo(t.Interface, addr) {
		return netip.Addr{}, errs.AtStep(errs.StepRoute, fmt.Errorf("steadymqtt: no route to %s via %s in the routing table (the kernel would look for it on the link itself): %w",
			addr, t.Interface, &errs.SourceError{Kind: errs.NoRoute, From: from, Err: syscall.ENETUNREACH}))
	}
	return local.Unmap(), nil
}

// leadsTo reports whether the main routing table sends addr out of iface,
// or cannot be read (then the kernel's answer stands).
func leadsTo(iface string, addr netip.Addr) bool {
	routes, ok := routesVia(iface)
	if !ok {
		return true
	}
	for _, p := range routes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
