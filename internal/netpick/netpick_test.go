package netpick

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/netif"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// host is a fake multi-homed gateway: wired, LTE, Wi-Fi.
func host() *netif.Fake {
	return &netif.Fake{List: []netif.Interface{
		{Name: "lo", Index: 1, Up: true, Running: true, Addrs: []netip.Prefix{pfx("127.0.0.1/8")}},
		{Name: "eth0", Index: 2, Up: true, Running: true, Addrs: []netip.Prefix{pfx("192.0.2.10/24"), pfx("fe80::1/64")}},
		{Name: "wwan0", Index: 3, Up: true, Running: true, Addrs: []netip.Prefix{pfx("2001:db8::5/64")}},
		{Name: "wlan0", Index: 4, Up: true, Running: true, Addrs: []netip.Prefix{pfx("198.51.100.7/24")}},
	}}
}

func TestChooseInterface(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*netif.Fake)
		names  []string
		start  int
		fam    Family
		want   string // interface chosen, "" for an error
		addr   string // source address chosen
		is     []error
	}{
		{name: "first preferred", names: []string{"eth0", "wlan0"}, fam: FamilyIPv4, want: "eth0", addr: "192.0.2.10"},
		{name: "start position after a failure", names: []string{"eth0", "wlan0"}, start: 1, fam: FamilyIPv4, want: "wlan0", addr: "198.51.100.7"},
		{name: "wraps around", names: []string{"eth0", "wlan0"}, start: 1, fam: FamilyIPv4, want: "eth0", addr: "192.0.2.10",
			mutate: func(f *netif.Fake) { f.List[3].Up = false }},
		{name: "family picks the address", names: []string{"wwan0"}, fam: FamilyIPv6, want: "wwan0", addr: "2001:db8::5"},
		{name: "any family leaves the address to the kernel", names: []string{"wwan0"}, fam: FamilyAny, want: "wwan0"},
		{name: "link-local only with a zone", names: []string{"eth0"}, fam: FamilyIPv6, want: "eth0", addr: "fe80::1%eth0"},
		{name: "down is skipped", names: []string{"eth0", "wlan0"}, fam: FamilyIPv4, want: "wlan0", addr: "198.51.100.7",
			mutate: func(f *netif.Fake) { f.List[1].Up = false }},
		{name: "no carrier is skipped", names: []string{"eth0", "wlan0"}, fam: FamilyIPv4, want: "wlan0", addr: "198.51.100.7",
			mutate: func(f *netif.Fake) { f.List[1].Running = false }},
		{name: "not found", names: []string{"eth9"}, is: []error{errs.InterfaceNotFound}},
		{name: "down", names: []string{"eth0"}, is: []error{errs.InterfaceDown}, mutate: func(f *netif.Fake) { f.List[1].Up = false }},
		{name: "no carrier", names: []string{"eth0"}, is: []error{errs.NoCarrier}, mutate: func(f *netif.Fake) { f.List[1].Running = false }},
		{name: "no address of the family", names: []string{"wwan0"}, fam: FamilyIPv4, is: []error{errs.NoUsableAddress}},
		{name: "no address at all", names: []string{"eth0"}, is: []error{errs.NoUsableAddress},
			mutate: func(f *netif.Fake) { f.List[1].Addrs = nil }},
		{name: "every reason listed", names: []string{"eth9", "eth0", "wwan0"}, fam: FamilyIPv4,
			is:     []error{errs.InterfaceNotFound, errs.NoCarrier, errs.NoUsableAddress},
			mutate: func(f *netif.Fake) { f.List[1].Running = false }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := host()
			if tt.mutate != nil {
				tt.mutate(src)
			}
			ch, err := choose(src, tt.names, tt.start, tt.fam)
			if tt.want != "" {
				require.NoError(t, err)
				require.Equal(t, tt.want, ch.Interface)
				if tt.addr != "" {
					require.Equal(t, tt.addr, ch.Addr.String())
				} else {
					require.False(t, ch.Addr.IsValid())
				}
				return
			}
			var sel *errs.SelectionError
			require.ErrorAs(t, err, &sel)
			require.Len(t, sel.Candidates, len(tt.names), "every candidate is listed")
			for _, target := range tt.is {
				require.ErrorIs(t, err, target)
			}
			for _, n := range tt.names {
				require.Contains(t, err.Error(), n)
			}
		})
	}
}

func TestChooseInterfaceReadError(t *testing.T) {
	_, err := choose(&netif.Fake{Err: errors.New("netlink: permission denied")}, []string{"eth0"}, 0, FamilyAny)
	require.ErrorContains(t, err, "permission denied")
}

func TestSelectionErrorText(t *testing.T) {
	src := host()
	src.List[1].Up = false
	_, err := choose(src, []string{"eth0", "wwan0"}, 0, FamilyIPv4)
	msg := err.Error()
	require.True(t, strings.HasPrefix(msg, "steadymqtt: no usable interface or address: "), msg)
	require.Contains(t, msg, "eth0: interface administratively down")
	require.Contains(t, msg, "wwan0: interface has no usable address of the wanted family (IPv4)")
}

func TestFailbackWaitGrowsAfterFailedFailbacks(t *testing.T) {
	p := New(Config{Interfaces: []string{"eth0", "wlan0"}, Failback: time.Second, Brokers: 1, Host: host()})
	require.Equal(t, time.Second, p.FailbackWait(0))
	for want := 2 * time.Second; want <= 8*time.Second; want *= 2 {
		p.failBackTo(0)               // the watcher moved back to position 0…
		p.Failed(Choice{Pos: 0}, nil) // …and the attempt there failed
		require.Equal(t, want, p.FailbackWait(0))
	}
	p.Failed(Choice{Pos: 1}, nil) // not a fail-back: no penalty
	require.Equal(t, time.Second, p.FailbackWait(1))
	p.failBackTo(0)
	p.Connected(Choice{Pos: 0}) // connected there: forgiven
	require.Equal(t, time.Second, p.FailbackWait(0))
}

func TestLinkLocalOnlyIsNotUsableForAnyFamily(t *testing.T) {
	src := host()
	src.List[1].Addrs = []netip.Prefix{pfx("fe80::1/64")} // eth0 lost its IPv4 lease
	_, err := choose(src, []string{"eth0"}, 0, FamilyAny)
	require.ErrorIs(t, err, errs.NoUsableAddress)
	ch, err := choose(src, []string{"eth0"}, 0, FamilyIPv6)
	require.NoError(t, err, "asked for IPv6: the link-local address, with its zone")
	require.Equal(t, "fe80::1%eth0", ch.Addr.String())
}
