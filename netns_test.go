package steadymqtt

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
	"github.com/steadymqtt/steadymqtt/internal/testsupport/netns"
)

// The multi-homed tests build a client and a broker namespace
// (internal/netns) and run the scenario in a child process inside the
// client namespace: the whole client then sees only the two NICs a and b.

func TestMultiHomed(t *testing.T) {
	err := netns.Available()
	if err == nil {
		_, err = broker.Look("mosquitto") // the broker namespace runs it
	}
	if err != nil {
		if os.Getenv("STEADYMQTT_REQUIRE_NETNS") == "1" {
			t.Fatalf("required (STEADYMQTT_REQUIRE_NETNS=1): %v", err)
		}
		t.Skipf("skipping: %v (set STEADYMQTT_REQUIRE_NETNS=1 to make this a failure)", err)
	}
	for _, scenario := range []string{"bind-b", "link-down", "carrier-loss", "failback", "address-removed", "errors"} {
		t.Run(scenario, func(t *testing.T) {
			lab, err := netns.New(t.TempDir())
			require.NoError(t, err)
			t.Cleanup(lab.Close)
			require.NoError(t, lab.StartMosquitto())
			spec, err := json.Marshal(lab)
			require.NoError(t, err)
			// Bounded, so that a hung child cannot outlive the test and leave
			// the namespaces behind (Cleanup runs only if the test returns).
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "ip", "netns", "exec", lab.Client, os.Args[0],
				"-test.run=^TestNetnsScenario$", "-test.v", "-test.count=1", "-test.timeout=100s")
			cmd.Env = append(os.Environ(), "STEADYMQTT_NETNS_SCENARIO="+scenario, "STEADYMQTT_LAB="+string(spec))
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "--- PASS: TestNetnsScenario") {
				t.Fatalf("scenario %s failed: %v\n%s\nmosquitto log:\n%s", scenario, err, out, lab.Log())
			}
			t.Logf("%s", grepLines(string(out), "netns_test.go"))
		})
	}
}

func grepLines(s, sub string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			keep = append(keep, strings.TrimSpace(l))
		}
	}
	return strings.Join(keep, "\n")
}

// TestNetnsScenario is the child side; it only runs when TestMultiHomed
// started it inside the client namespace.
func TestNetnsScenario(t *testing.T) {
	scenario := os.Getenv("STEADYMQTT_NETNS_SCENARIO")
	if scenario == "" {
		t.Skip("runs only as the child of TestMultiHomed, inside its client namespace")
	}
	var lab netns.Lab
	require.NoError(t, json.Unmarshal([]byte(os.Getenv("STEADYMQTT_LAB")), &lab))
	leakCheck(t)
	ip := func(args ...string) { t.Helper(); require.NoError(t, netns.IP(args...)) }
	fast := WithBackoff(backoff.NewConstantBackOff(100 * time.Millisecond))
	localIP := func(c *Client) string {
		if a, ok := c.Health().LocalAddr.(*net.TCPAddr); ok {
			return a.IP.String()
		}
		return ""
	}
	onIface := func(name string) func(Event) bool {
		return func(ev Event) bool { return ev.To == StateConnected && ev.Interface == name }
	}

	switch scenario {
	case "bind-b":
		// b does not carry the default route; binding to it must still
		// take the connection there.
		c := newClient(t, WithBroker(lab.BrokerURL), WithClientID("bound-to-b"), WithInterfaces(lab.B))
		connect(t, c)
		require.Equal(t, lab.B, c.Health().Interface)
		require.Equal(t, lab.BIP, localIP(c))
		require.Eventually(t, func() bool {
			return strings.Contains(lab.Log(), "New connection from "+lab.BIP)
		}, 2*time.Second, 20*time.Millisecond, "the broker did not see b's address")

		// And without binding, the same client leaves by a (the default route).
		d := newClient(t, WithBroker(lab.BrokerURL), WithClientID("unbound"))
		connect(t, d)
		require.Equal(t, lab.AIP, localIP(d))

	case "link-down", "carrier-loss":
		// Keepalive 30 s: only the interface watcher can be this quick.
		c := newClient(t, WithBroker(lab.BrokerURL), WithInterfaces(lab.A, lab.B), WithKeepAlive(30*time.Second), fast)
		rec := record(c)
		connect(t, c)
		require.Equal(t, lab.A, c.Health().Interface)
		start := time.Now()
		want := ErrInterfaceDown
		if scenario == "link-down" {
			ip("link", "set", "dev", lab.A, "down")
		} else {
			ip("-n", lab.Broker, "link", "set", "dev", lab.PA, "down") // a stays up, loses its carrier
			want = ErrNoCarrier
		}
		lost := rec.next(t, 3*time.Second, "lost", to(StateReconnecting))
		require.ErrorIs(t, lost.Err, ErrNetworkChanged)
		require.ErrorIs(t, lost.Err, want)
		require.Equal(t, lab.A, lost.Interface)
		back := rec.next(t, 3*time.Second, "connected over b", onIface(lab.B))
		elapsed := back.Time.Sub(start)
		t.Logf("%s: on %s again after %v", scenario, lab.B, elapsed.Round(time.Millisecond))
		require.Less(t, elapsed, 3*time.Second)
		require.Equal(t, lab.BIP, localIP(c))

	case "failback":
		c := newClient(t, WithBroker(lab.BrokerURL), WithInterfaces(lab.A, lab.B), WithFailback(time.Second), fast)
		rec := record(c)
		connect(t, c)
		ip("link", "set", "dev", lab.A, "down")
		rec.next(t, 3*time.Second, "on b", onIface(lab.B))
		// a flaps: up for less than the fail-back period, down again.
		ip("link", "set", "dev", lab.A, "up")
		time.Sleep(400 * time.Millisecond)
		ip("link", "set", "dev", lab.A, "down")
		time.Sleep(400 * time.Millisecond)
		// Then a comes back for good (DHCP puts its route back).
		upAt := time.Now()
		ip("link", "set", "dev", lab.A, "up")
		ip("route", "replace", "default", "via", lab.AGW, "dev", lab.A, "metric", "100")
		back := rec.next(t, 5*time.Second, "back on a", onIface(lab.A))
		waited := back.Time.Sub(upAt)
		t.Logf("failback: back on %s %v after it came up", lab.A, waited.Round(time.Millisecond))
		require.GreaterOrEqual(t, waited, time.Second, "moved back before the fail-back period")
		require.Equal(t, lab.AIP, localIP(c))
		time.Sleep(2 * time.Second)
		moves := 0
		for _, ev := range rec.all() {
			if ev.To == StateConnected {
				moves++
			}
		}
		require.Equal(t, 3, moves, "connected on a, then b, then a once; no churn: %v", rec.all())

	case "address-removed":
		c := newClient(t, WithBroker(lab.BrokerURL), WithInterfaces(lab.A, lab.B), WithAddressFamily(FamilyIPv4),
			WithKeepAlive(30*time.Second), fast)
		rec := record(c)
		connect(t, c)
		require.Equal(t, lab.AIP, localIP(c))
		start := time.Now()
		ip("addr", "del", lab.AIP+"/24", "dev", lab.A) // a DHCP lease changed
		lost := rec.next(t, 3*time.Second, "lost", to(StateReconnecting))
		require.ErrorIs(t, lost.Err, ErrNoUsableAddress)
		back := rec.next(t, 3*time.Second, "connected over b", onIface(lab.B))
		t.Logf("address-removed: on %s after %v", lab.B, back.Time.Sub(start).Round(time.Millisecond))
		require.Less(t, back.Time.Sub(start), 3*time.Second)

	case "errors":
		firstErr := func(opts ...Option) error {
			t.Helper()
			c := newClient(t, append([]Option{WithBroker(lab.BrokerURL), fast, WithConnectTimeout(2 * time.Second)}, opts...)...)
			rec := record(c)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = c.Connect(ctx) }()
			ev := rec.next(t, 5*time.Second, "first outcome", func(ev Event) bool { return ev.Err != nil || ev.To == StateConnected })
			cancel()
			<-done
			return ev.Err
		}
		check := func(err error, target error, mentions ...string) {
			t.Helper()
			require.ErrorIs(t, err, target)
			for _, m := range mentions {
				require.Contains(t, err.Error(), m)
			}
			t.Logf("%v", err)
		}
		check(firstErr(WithInterfaces("nope0", lab.B+"x")), ErrInterfaceNotFound, "nope0", lab.B+"x")
		ip("link", "set", "dev", lab.B, "down")
		check(firstErr(WithInterfaces(lab.B, "nope0")), ErrInterfaceDown, lab.B+": interface administratively down", "nope0")
		ip("link", "set", "dev", lab.B, "up")
		ip("-n", lab.Broker, "link", "set", "dev", lab.PB, "down")
		check(firstErr(WithInterfaces(lab.B)), ErrNoCarrier, lab.B)
		ip("-n", lab.Broker, "link", "set", "dev", lab.PB, "up")
		require.NoError(t, exec.Command("sysctl", "-qw", "net.ipv6.conf."+lab.B+".disable_ipv6=1").Run())
		ip("addr", "flush", "dev", lab.B)
		check(firstErr(WithInterfaces(lab.B)), ErrNoUsableAddress, lab.B)
		check(firstErr(WithSourceIP(net.ParseIP("10.77.3.3"))), ErrAddressNotAssignable, "10.77.3.3")
		ip("route", "add", "unreachable", lab.BrokerIP+"/32")
		check(firstErr(WithSourceIP(net.ParseIP(lab.AIP))), ErrNoRoute, lab.AIP)

	default:
		t.Fatalf("unknown scenario %q", scenario)
	}
	_ = fmt.Sprint()
}
