package diagnose

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/steadymqtt/steadymqtt/internal/dial"
	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/netpick"
)

// checkDNS resolves the broker's host as the dial would, and shows every
// answer and the time it took.
func (w *walk) checkDNS(s *Step) {
	host := w.u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap()
		if want := w.network(); (want == "ip4" && !a.Is4()) || (want == "ip6" && !a.Is6()) {
			fail(s, errs.NoUsableAddress, fmt.Sprintf("the broker's address %s is %s, not %s, the family the connection leaves with", a, familyOf(a), familyWord(want)),
				"drop WithAddressFamily (-family), or give the broker's address of that family")
			return
		}
		w.addrs = []netip.Addr{a}
		s.Details = []string{host + " is an address: nothing to resolve"}
		return
	}
	ctx, cancel := w.timeout()
	defer cancel()
	start := time.Now()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, w.network(), host)
	took := time.Since(start)
	var dnsErr *net.DNSError
	switch {
	case err == nil:
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		if other := w.otherFamily(host); len(other) > 0 {
			fail(s, err, fmt.Sprintf("%s has no %s address; it has %s", host, familyWord(w.network()), joinAddrs(other)),
				"drop WithAddressFamily (-family), or give the broker an address of that family (an A or AAAA record)")
			return
		}
		fail(s, err, fmt.Sprintf("no such host: %q does not exist in DNS, or has no address records", host),
			"check the host name in the broker URL (a typo, a missing domain), /etc/hosts and the resolver's search domains")
		return
	case isNoSuitableAddress(err):
		fail(s, err, fmt.Sprintf("%s has no %s address, only addresses of another family", host, familyWord(w.network())),
			"drop WithAddressFamily (-family), or give the broker an address of that family (an A or AAAA record)")
		return
	case errors.As(err, &dnsErr) && dnsErr.IsTimeout, ctx.Err() != nil:
		server := ""
		switch {
		case dnsErr != nil && dnsErr.Server != "":
			server = " (" + dnsErr.Server + ")"
		case len(nameservers()) > 0: // the walk's own timeout came first: name what was asked
			server = " (" + strings.Join(nameservers(), ", ") + ")"
		}
		within := fmt.Sprintf("within %v", took.Round(100*time.Millisecond))
		if ctx.Err() != nil {
			within = fmt.Sprintf("within the connect timeout (%v)", w.cfg.Client.ConnectTimeout)
		}
		fail(s, err, fmt.Sprintf("the DNS server%s did not answer %s", server, within),
			"check the nameserver in /etc/resolv.conf and that it is reachable from this host (the route to it, a firewall)")
		return
	default:
		fail(s, err, "the resolver failed: "+strings.TrimPrefix(err.Error(), "lookup "+host+": "),
			"check /etc/resolv.conf and the DNS server")
		return
	}
	for _, a := range addrs {
		w.addrs = append(w.addrs, a.Unmap())
		s.Details = append(s.Details, a.Unmap().String())
	}
	s.Details = append(s.Details, fmt.Sprintf("%d answers in %v", len(addrs), took.Round(time.Microsecond)))
	if took > time.Second {
		s.Status, s.Cause = Warning, fmt.Sprintf("resolving %s took %v", host, took.Round(time.Millisecond))
		s.Hint = "every attempt resolves the name again: a slow resolver slows every reconnect"
	}
}

// otherFamily looks host up in every family, after a lookup of one family
// found nothing: an answer means the name exists, in the other family.
func (w *walk) otherFamily(host string) []netip.Addr {
	if w.network() == "ip" {
		return nil
	}
	ctx, cancel := w.timeout()
	defer cancel()
	all, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil
	}
	for i := range all {
		all[i] = all[i].Unmap()
	}
	return all
}

// nameservers are the servers /etc/resolv.conf names.
func nameservers() []string {
	b, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "nameserver" {
			out = append(out, f[1])
		}
	}
	return out
}

// isNoSuitableAddress: the name resolved, but to no address of the family
// asked for (Go's resolver says "no suitable address found").
func isNoSuitableAddress(err error) bool {
	var ae *net.AddrError
	return errors.As(err, &ae) && strings.Contains(ae.Err, "no suitable address")
}

func familyOf(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

func familyWord(network string) string {
	return map[string]string{"ip4": "IPv4", "ip6": "IPv6"}[network]
}

// network is the family the dial will use: the chosen source's, or the
// one asked for.
func (w *walk) network() string {
	switch {
	case w.choice.Addr.IsValid() && w.choice.Addr.Is4():
		return "ip4"
	case w.choice.Addr.IsValid():
		return "ip6"
	case w.cfg.Pick.Family == netpick.FamilyIPv4:
		return "ip4"
	case w.cfg.Pick.Family == netpick.FamilyIPv6:
		return "ip6"
	}
	return "ip"
}

// checkRoute asks the kernel for a route from the source to each address.
func (w *walk) checkRoute(s *Step) {
	var routed []netip.Addr
	var last error
	for _, a := range w.addrs {
		src, err := dial.Route(w.target, a)
		if err != nil {
			last = err
			s.Details = append(s.Details, fmt.Sprintf("%s: %s", a, routeTrouble(err)))
			continue
		}
		routed = append(routed, a)
		s.Details = append(s.Details, fmt.Sprintf("%s: from %s", a, src))
	}
	from := w.from()
	switch {
	case len(routed) == 0:
		fail(s, last, fmt.Sprintf("no route from %s to %s: %s", from, joinAddrs(w.addrs), routeTrouble(last)),
			fmt.Sprintf("check the routes (ip route get %s%s): the interface may have no default route or gateway", w.addrs[0], routeFrom(w.target)))
	case len(routed) < len(w.addrs):
		s.Status, s.Cause = Warning, fmt.Sprintf("%d of %d addresses have no route from %s", len(w.addrs)-len(routed), len(w.addrs), from)
	}
	w.addrs = routed
}

// routeTrouble says what kind of route is missing, by what the kernel
// answered.
func routeTrouble(err error) string {
	switch {
	case errors.Is(err, syscall.EINVAL):
		return "a blackhole route drops everything sent there"
	case errors.Is(err, syscall.EACCES):
		return "a prohibit route forbids it"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "an unreachable route, or no host answering (no route to host)"
	case errors.Is(err, syscall.ENETUNREACH) && strings.Contains(err.Error(), "in the routing table"):
		return "the routing table sends nothing there out of this interface"
	case errors.Is(err, syscall.ENETUNREACH):
		return "the network is unreachable (no route)"
	}
	return rootCause(err).Error()
}

func (w *walk) from() string {
	switch {
	case w.target.Interface != "":
		return "interface " + w.target.Interface
	case w.target.SourceIP != nil:
		return w.target.SourceIP.String()
	}
	return "this host"
}

func routeFrom(t dial.Target) string {
	switch {
	case t.Interface != "" && t.Source.IsValid():
		return " from " + t.Source.String() + " oif " + t.Interface
	case t.Interface != "":
		return " oif " + t.Interface
	case t.SourceIP != nil:
		return " from " + t.SourceIP.String()
	}
	return ""
}

// checkTCP connects to each address in turn, as the dial does, and keeps
// the first connection for the TLS step.
func (w *walk) checkTCP(s *Step) {
	port := w.port()
	var last error
	var cause, hint string
	for _, a := range w.addrs {
		addr := net.JoinHostPort(a.String(), port)
		ctx, cancel := w.timeout()
		start := time.Now()
		conn, err := dial.TCP(ctx, w.target, addr)
		cancel()
		took := time.Since(start)
		if err == nil {
			w.conn = conn
			s.Details = append(s.Details, fmt.Sprintf("%s: connected in %v", addr, took.Round(time.Microsecond)))
			if last != nil {
				s.Status, s.Cause = Warning, "some of the broker's addresses did not answer; the client moves on to the next one at each attempt"
			}
			return
		}
		last = err
		cause, hint = tcpTrouble(err, addr, took)
		s.Details = append(s.Details, fmt.Sprintf("%s: %v after %v", addr, rootCause(err), took.Round(time.Millisecond)))
	}
	fail(s, last, cause, hint)
}

func tcpTrouble(err error, addr string, took time.Duration) (cause, hint string) {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused: nothing listens on " + addr,
			"is the broker running, and is this its port (MQTT 1883, MQTT over TLS 8883)?"
	case dial.IsTimeout(err):
		return fmt.Sprintf("no answer within %v", took.Round(100*time.Millisecond)),
			"the packets are dropped on the way (a firewall, a blackhole route, a host that is down); WithConnectTimeout bounds each attempt"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable: " + rootCause(err).Error(),
			"nobody answered for that address: on the local link no host replied to ARP or neighbour discovery, or a router reported it unreachable; check the broker's address and that it is up"
	case errors.Is(err, syscall.ECONNRESET):
		return "the connection was reset", "something on the path (a firewall, a load balancer) refuses the connection"
	case errors.Is(err, errs.AddressNotAssignable):
		return "the source address cannot be used", "check the host's addresses (ip addr)"
	}
	return rootCause(err).Error(), ""
}

func (w *walk) port() string {
	if p := w.u.Port(); p != "" {
		return p
	}
	switch w.u.Scheme {
	case "ssl", "tls", "mqtts":
		return "8883"
	case "ws":
		return "80"
	case "wss":
		return "443"
	}
	return "1883"
}

// rootCause is the innermost error: the system's own words.
func rootCause(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

func joinAddrs(as []netip.Addr) string {
	parts := make([]string, len(as))
	for i, a := range as {
		parts[i] = a.String()
	}
	return strings.Join(parts, ", ")
}
