package dial

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// routesVia lists the destinations the main routing table sends out of
// iface (the default route included), or ok false when the table cannot be
// read. A socket bound to an interface finds a "route" to every address:
// with no entry the kernel looks for the address on the link itself, so
// only the table tells whether the interface really leads there. Policy
// routing tables (ip rule) are not read: with rules of its own the host is
// not judged by the main table (ok false).
func routesVia(iface string) (routes []netip.Prefix, ok bool) {
	if policyRouting() {
		return nil, false
	}
	const reject = 0x0200 // RTF_REJECT: unreachable, prohibit, blackhole
	if f, err := os.Open("/proc/net/route"); err == nil {
		ok = true
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			// Iface Destination Gateway Flags RefCnt Use Metric Mask ...
			fl := strings.Fields(sc.Text())
			if len(fl) < 8 || fl[0] != iface {
				continue
			}
			flags, _ := strconv.ParseUint(fl[3], 16, 32)
			dst, err1 := hexIPv4(fl[1])
			mask, err2 := hexIPv4(fl[7])
			if flags&reject != 0 || err1 != nil || err2 != nil {
				continue
			}
			ones := 0
			for _, b := range mask.As4() {
				for ; b&0x80 != 0; b <<= 1 {
					ones++
				}
			}
			routes = append(routes, netip.PrefixFrom(dst, ones))
		}
		f.Close()
	}
	if f, err := os.Open("/proc/net/ipv6_route"); err == nil {
		ok = true
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// dst dstlen src srclen nexthop metric refcnt use flags iface
			fl := strings.Fields(sc.Text())
			if len(fl) < 10 || fl[9] != iface {
				continue
			}
			flags, _ := strconv.ParseUint(fl[8], 16, 32)
			raw, err := hex.DecodeString(fl[0])
			bits, err2 := strconv.ParseUint(fl[1], 16, 8)
			if flags&reject != 0 || err != nil || err2 != nil || len(raw) != 16 {
				continue
			}
			routes = append(routes, netip.PrefixFrom(netip.AddrFrom16([16]byte(raw)), int(bits)))
		}
		f.Close()
	}
	return routes, ok
}

// hexIPv4 reads an address of /proc/net/route: hex, in host byte order.
func hexIPv4(s string) (netip.Addr, error) {
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		return netip.Addr{}, err
	}
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], uint32(v))
	return netip.AddrFrom4(b), nil
}

// policyRouting reports whether the host has routing rules beyond the
// three every Linux host has (local, main, default): then a route may
// live in a table /proc does not show, and the table's silence proves
// nothing.
func policyRouting() bool {
	for _, family := range []int{unix.AF_INET, unix.AF_INET6} {
		rib, err := syscall.NetlinkRIB(unix.RTM_GETRULE, family)
		if err != nil {
			return true // cannot tell: do not claim there is no route
		}
		msgs, err := syscall.ParseNetlinkMessage(rib)
		if err != nil {
			return true
		}
		for _, m := range msgs {
			if m.Header.Type != unix.RTM_NEWRULE || len(m.Data) < unix.SizeofRtMsg {
				continue
			}
			table := m.Data[4] // struct fib_rule_hdr: family, dst_len, src_len, tos, table
			if table != unix.RT_TABLE_LOCAL && table != unix.RT_TABLE_MAIN && table != unix.RT_TABLE_DEFAULT {
				return true
			}
		}
	}
	return false
}
