package diagnose

import (
	"bufio"
	"encoding/hex"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// ipv6Flags reads what the kernel says of IPv6 addresses that Go's net
// package does not: still tentative (duplicate address detection running)
// or a duplicate found on the link.
func ipv6Flags() map[netip.Addr]string {
	f, err := os.Open("/proc/net/if_inet6")
	if err != nil {
		return nil
	}
	defer f.Close()
	out := map[netip.Addr]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address ifindex prefixlen scope flags name
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		raw, err := hex.DecodeString(fields[0])
		if err != nil || len(raw) != 16 {
			continue
		}
		flags, err := strconv.ParseUint(fields[4], 16, 32)
		if err != nil {
			continue
		}
		a := netip.AddrFrom16([16]byte(raw))
		const dadFailed, tentative = 0x08, 0x40 // IFA_F_DADFAILED, IFA_F_TENTATIVE
		switch {
		case flags&dadFailed != 0:
			out[a] = "duplicate"
		case flags&tentative != 0:
			out[a] = "tentative"
		}
	}
	return out
}
