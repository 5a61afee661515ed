package dnsstub

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestStub(t *testing.T) {
	s, err := Start("127.0.0.1:0", map[string]netip.Addr{"broker.lab.test": netip.MustParseAddr("10.77.9.1")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", s.Addr())
	}}
	lookup := func(name string, timeout time.Duration) ([]netip.Addr, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return r.LookupNetIP(ctx, "ip", name)
	}

	addrs, err := lookup("Broker.Lab.Test.", 2*time.Second)
	require.NoError(t, err)
	require.Equal(t, []netip.Addr{netip.MustParseAddr("10.77.9.1")}, addrs)

	_, err = lookup("nosuch.lab.test.", 2*time.Second)
	var dnsErr *net.DNSError
	require.True(t, errors.As(err, &dnsErr), "%v", err)
	require.True(t, dnsErr.IsNotFound, "%v", err)

	s.SetSilent(true)
	before := s.Queries()
	_, err = lookup("broker.lab.test.", 300*time.Millisecond)
	require.True(t, errors.As(err, &dnsErr), "%v", err)
	require.True(t, dnsErr.IsTimeout, "%v", err)
	require.Greater(t, s.Queries(), before)
}
