package diagnose

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/netif"
	"github.com/steadymqtt/steadymqtt/internal/netpick"
)

// checkInterface: each interface named, in preference order, as the
// client's picker sees it, and which one an attempt would take.
func (w *walk) checkInterface(s *Step) {
	pick := w.cfg.Pick
	if len(pick.Interfaces) == 0 {
		s.Status = Skipped
		s.Details = []string{"no interface named (WithInterfaces): the kernel's routing table chooses"}
		return
	}
	ifs, err := pick.Host.Interfaces()
	if err != nil {
		fail(s, err, "the host's interfaces could not be listed", "")
		return
	}
	byName := make(map[string]netif.Interface, len(ifs))
	var names []string
	for _, it := range ifs {
		byName[it.Name] = it
		names = append(names, it.Name)
	}
	for _, name := range pick.Interfaces {
		it, ok := byName[name]
		if !ok {
			s.Details = append(s.Details, name+": not found")
			continue
		}
		s.Details = append(s.Details, describe(it))
	}
	ch, err := netpick.New(pick).Choose()
	var sel *errs.SelectionError
	switch {
	case err == nil:
		w.choice = ch
		if ch.Pos > 0 {
			s.Status = Warning
			s.Cause = fmt.Sprintf("%s is not usable; %s is used instead", pick.Interfaces[0], ch.Interface)
			s.Hint = "the client returns to the preferred interface once it has been usable for the fail-back period"
		}
		return
	case errors.As(err, &sel) && onlyAddresses(sel):
		// The interfaces are there and up: the address step says the rest.
		s.Details = append(s.Details, "usable, but without an address of the wanted family: see the address step")
		return
	case errors.As(err, &sel):
		first := sel.Candidates[0]
		cause, hint := interfaceTrouble(first)
		if len(sel.Candidates) > 1 {
			cause += fmt.Sprintf(" (and none of the other %d interfaces is usable)", len(sel.Candidates)-1)
		}
		if errors.Is(first.Err, errs.InterfaceNotFound) {
			slices.Sort(names)
			hint += "; this host has: " + strings.Join(names, ", ")
		}
		fail(s, err, cause, hint)
	default:
		fail(s, err, "the interfaces could not be read", "")
	}
}

func onlyAddresses(sel *errs.SelectionError) bool {
	for _, c := range sel.Candidates {
		if !errors.Is(c.Err, errs.NoUsableAddress) {
			return false
		}
	}
	return len(sel.Candidates) > 0
}

func interfaceTrouble(c errs.Candidate) (cause, hint string) {
	switch {
	case errors.Is(c.Err, errs.InterfaceNotFound):
		return "interface " + c.Interface + " does not exist on this host",
			"check the name (ip link): a USB modem or a renamed NIC may have another name"
	case errors.Is(c.Err, errs.InterfaceDown):
		return "interface " + c.Interface + " is administratively down",
			"bring it up (ip link set dev " + c.Interface + " up) or check what takes it down (NetworkManager, ifupdown)"
	case errors.Is(c.Err, errs.NoCarrier):
		return "interface " + c.Interface + " is up but has no carrier (no link)",
			"check the cable, the switch port, the modem's registration or the Wi-Fi association"
	}
	return "interface " + c.Interface + ": " + strings.TrimPrefix(c.Err.Error(), "steadymqtt: "), ""
}

// describe says what the picker looks at: flags and addresses.
func describe(it netif.Interface) string {
	state := []string{}
	state = append(state, map[bool]string{true: "up", false: "down"}[it.Up])
	state = append(state, map[bool]string{true: "carrier", false: "no carrier"}[it.Running])
	var addrs []string
	flags := ipv6Flags()
	for _, p := range it.Addrs {
		a := p.String()
		switch ad := p.Addr(); {
		case ad.IsLoopback():
			a += " (loopback)"
		case ad.IsLinkLocalUnicast():
			a += " (link-local)"
		}
		if f := flags[p.Addr()]; f != "" {
			a += " (" + f + ")"
		}
		addrs = append(addrs, a)
	}
	if len(addrs) == 0 {
		addrs = []string{"no address"}
	}
	return fmt.Sprintf("%s: %s; %s", it.Name, strings.Join(state, ", "), strings.Join(addrs, ", "))
}

// checkAddress: the source address an attempt would use.
func (w *walk) checkAddress(s *Step) {
	pick := w.cfg.Pick
	switch {
	case pick.SourceIP != nil:
		w.checkSourceIP(s, pick)
	case len(pick.Interfaces) > 0:
		w.checkInterfaceAddress(s, pick)
	default:
		s.Status = Skipped
		s.Details = []string{"no source address or interface set: the kernel picks one per destination"}
	}
}

func (w *walk) checkSourceIP(s *Step, pick netpick.Config) {
	want, _ := netip.AddrFromSlice(pick.SourceIP)
	want = want.Unmap()
	ifs, err := pick.Host.Interfaces()
	if err != nil {
		fail(s, err, "the host's addresses could not be listed", "")
		return
	}
	for _, it := range ifs {
		for _, p := range it.Addrs {
			if p.Addr() == want {
				s.Details = []string{fmt.Sprintf("%s is configured on %s", want, it.Name)}
				if f := ipv6Flags()[want]; f != "" {
					w.addressFlag(s, want, f)
				}
				return
			}
		}
	}
	fail(s, errs.AddressNotAssignable, want.String()+" is not configured on this host",
		"check the host's addresses (ip addr): a DHCP lease may have changed it; WithInterfaces follows the interface's address instead")
}

func (w *walk) checkInterfaceAddress(s *Step, pick netpick.Config) {
	if w.choice.Interface != "" {
		if !w.choice.Addr.IsValid() {
			s.Details = []string{"on " + w.choice.Interface + ", the kernel picks the source per destination (any family)"}
			return
		}
		s.Details = []string{fmt.Sprintf("%s on %s", w.choice.Addr, w.choice.Interface)}
		if f := ipv6Flags()[w.choice.Addr.WithZone("")]; f != "" {
			w.addressFlag(s, w.choice.Addr, f)
		}
		return
	}
	// The interface step found the interfaces usable but without an
	// address of the family (or it failed, and this step is skipped).
	ifs, _ := pick.Host.Interfaces()
	for _, it := range ifs {
		if slices.Contains(pick.Interfaces, it.Name) {
			s.Details = append(s.Details, describe(it))
		}
	}
	cause := fmt.Sprintf("no %s address on %s", familyName(pick.Family), strings.Join(pick.Interfaces, ", "))
	hint := "DHCP may not have finished (or its lease was lost): check ip addr and the DHCP client's log"
	if onlyLinkLocal(ifs, pick.Interfaces) {
		cause += ": only a link-local address, which reaches nothing beyond the link"
	}
	fail(s, errs.NoUsableAddress, cause, hint)
}

func (w *walk) addressFlag(s *Step, a netip.Addr, flag string) {
	s.Status = Warning
	s.Cause = fmt.Sprintf("%s is %s", a, flag)
	s.Hint = "a tentative address is still being checked for duplicates (DAD) and cannot be used yet; a duplicate one is in use elsewhere on the link"
	if flag == "duplicate" {
		s.Status = Failed
		s.Err = errs.AddressNotAssignable
	}
}

func onlyLinkLocal(ifs []netif.Interface, names []string) bool {
	seen := false
	for _, it := range ifs {
		if !slices.Contains(names, it.Name) {
			continue
		}
		for _, p := range it.Addrs {
			if !p.Addr().IsLinkLocalUnicast() {
				return false
			}
			seen = true
		}
	}
	return seen
}

func familyName(f netpick.Family) string {
	if f == netpick.FamilyAny {
		return "usable"
	}
	return f.String()
}
