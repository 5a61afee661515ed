package steadymqtt

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
	"github.com/steadymqtt/steadymqtt/internal/testsupport/dnsstub"
	"github.com/steadymqtt/steadymqtt/internal/testsupport/netns"
)

// The diagnosis against failures injected for real in the namespace lab
// (internal/testsupport/netns): each scenario builds one lab, and a child
// process inside its client namespace injects one failure after another,
// walks the diagnosis, and connects a client with the same options; both
// must name the same step. Each case undoes what it changed.

// The lab's name server, inside the client namespace: the child runs it
// (internal/testsupport/dnsstub) and the parent points the namespace's
// /etc/resolv.conf at it.
const (
	labNameServer = "127.0.0.53"
	labBrokerName = "broker.lab.test" // resolves to the lab's broker
	labNoSuchName = "nosuch.lab.test" // NXDOMAIN
)

func TestDiagnoseInNamespaces(t *testing.T) {
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
	for _, scenario := range []string{"interface", "route", "dns"} {
		t.Run(scenario, func(t *testing.T) {
			lab, err := netns.New(t.TempDir())
			require.NoError(t, err)
			t.Cleanup(lab.Close)
			require.NoError(t, lab.StartMosquitto())
			if scenario == "dns" {
				// ip netns exec bind-mounts it over the child's /etc/resolv.conf.
				require.NoError(t, lab.WriteResolvConf("nameserver "+labNameServer, "options timeout:1 attempts:1"))
			}
			spec, err := json.Marshal(lab)
			require.NoError(t, err)
			// Bounded, so that a hung child cannot outlive the test and leave
			// the namespaces behind.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "ip", "netns", "exec", lab.Client, os.Args[0],
				"-test.run=^TestDiagnoseNetnsScenario$", "-test.v", "-test.count=1", "-test.timeout=100s")
			cmd.Env = append(os.Environ(), "STEADYMQTT_DIAGNOSE_SCENARIO="+scenario, "STEADYMQTT_LAB="+string(spec))
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "--- PASS: TestDiagnoseNetnsScenario") {
				t.Fatalf("scenario %s failed: %v\n%s\nmosquitto log:\n%s", scenario, err, out, lab.Log())
			}
			t.Logf("%s", grepLines(string(out), "netns_diagnose_test.go"))
		})
	}
}

// labFailure is what a case expects of the diagnosis and of the client.
type labFailure struct {
	step    string                  // the step that fails
	cause   []string                // words in the failed step's Cause
	words   []string                // words in its Cause, Hint or Details
	is      error                   // the client's Connect error matches it (errors.Is); nil: not checked
	wait    time.Duration           // how long Connect is given; the connect timeout is 1 s
	timeout time.Duration           // the connect timeout, when not 1 s
	client  func(*testing.T, error) // more checks of the client's error
}

// TestDiagnoseNetnsScenario is the child side; it only runs when
// TestDiagnoseInNamespaces started it inside the client namespace.
func TestDiagnoseNetnsScenario(t *testing.T) {
	scenario := os.Getenv("STEADYMQTT_DIAGNOSE_SCENARIO")
	if scenario == "" {
		t.Skip("runs only as the child of TestDiagnoseInNamespaces, inside its client namespace")
	}
	var lab netns.Lab
	require.NoError(t, json.Unmarshal([]byte(os.Getenv("STEADYMQTT_LAB")), &lab))
	ip := func(t *testing.T, args ...string) { t.Helper(); require.NoError(t, netns.IP(args...)) }
	// undo runs args when the case ends, whatever its outcome.
	undo := func(t *testing.T, args ...string) {
		t.Cleanup(func() {
			if err := netns.IP(args...); err != nil {
				t.Errorf("undoing: %v", err)
			}
		})
	}
	// sysctl sets key to value, in namespace ns ("": the child's own),
	// and puts the old value back when the case ends.
	sysctl := func(t *testing.T, ns, key, value string) {
		t.Helper()
		run := func(args ...string) string {
			t.Helper()
			cmd := exec.Command("sysctl", args...)
			if ns != "" {
				cmd = exec.Command("ip", append([]string{"netns", "exec", ns, "sysctl"}, args...)...)
			}
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "sysctl %v: %s", args, out)
			return strings.TrimSpace(string(out))
		}
		old := run("-n", key)
		run("-qw", key+"="+value)
		t.Cleanup(func() { run("-qw", key+"="+old) })
	}
	base := func(url string) []Option {
		return []Option{WithBroker(url), WithConnectTimeout(time.Second), WithBackoff(backoff.NewConstantBackOff(100 * time.Millisecond))}
	}
	// fails walks the diagnosis and connects a client, both with opts.
	fails := func(t *testing.T, url string, want labFailure, opts ...Option) {
		t.Helper()
		opts = append(base(url), opts...)
		if want.timeout != 0 {
			opts = append(opts, WithConnectTimeout(want.timeout))
		}
		d := Diagnose(t.Context(), opts...)
		logDiagnosis(t, d)
		// Every connection error names its step: the client, with the
		// same options, fails at the same one.
		c := newClient(t, opts...)
		rec := record(c)
		if want.wait == 0 {
			want.wait = 700 * time.Millisecond
		}
		ctx, cancel := context.WithTimeout(context.Background(), want.wait)
		defer cancel()
		err := c.Connect(ctx)
		t.Logf("client: %v", err)

		f := requireFailedAt(t, d, want.step, want.words...)
		for _, w := range want.cause {
			require.Contains(t, f.Cause, w)
		}
		requireStep(t, err, want.step, want.is)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, want.step, c.Health().LastErrorStep)
		var failed []Event
		for _, ev := range rec.all() {
			if ev.Err != nil {
				failed = append(failed, ev)
			}
		}
		require.NotEmpty(t, failed, "no failed attempt reported")
		require.Equal(t, want.step, failed[len(failed)-1].Step, "%v", failed[len(failed)-1].Err)
		if want.client != nil {
			want.client(t, err)
		}
	}
	healthy := func(t *testing.T, url string, opts ...Option) Diagnosis {
		t.Helper()
		opts = append(base(url), opts...)
		d := Diagnose(t.Context(), opts...)
		logDiagnosis(t, d)
		requireHealthy(t, d)
		c := newClient(t, opts...)
		connect(t, c)
		return d
	}
	// usable waits until the picker would take the interface again (after
	// an undo: carrier, an IPv6 link-local address out of DAD).
	usable := func(t *testing.T, name string) {
		t.Helper()
		require.Eventually(t, func() bool {
			it, err := net.InterfaceByName(name)
			return err == nil && it.Flags&net.FlagUp != 0 && it.Flags&net.FlagRunning != 0
		}, 3*time.Second, 20*time.Millisecond, "%s did not come back", name)
	}

	// fastARP makes the kernel give up on a neighbour that does not
	// answer after one ARP request and 200 ms instead of three and 3 s:
	// EHOSTUNREACH then comes within the connect timeout, as it does
	// within the default 10 s one.
	fastARP := func(t *testing.T, dev string) {
		sysctl(t, "", "net.ipv4.neigh."+dev+".mcast_solicit", "1")
		sysctl(t, "", "net.ipv4.neigh."+dev+".retrans_time_ms", "200")
	}

	switch scenario {
	case "interface":
		t.Run("interface missing", func(t *testing.T) {
			leakCheck(t)
			fails(t, lab.BrokerURL, labFailure{step: StepInterface, cause: []string{"eth9", "does not exist"},
				words: []string{"ip link", lab.A, lab.B}, is: ErrInterfaceNotFound}, WithInterfaces("eth9"))
		})
		t.Run("interface down", func(t *testing.T) {
			leakCheck(t)
			ip(t, "link", "set", "dev", lab.A, "down") // also takes its routes away
			undo(t, "route", "replace", "default", "via", lab.AGW, "dev", lab.A, "metric", "100")
			undo(t, "link", "set", "dev", lab.A, "up")
			fails(t, lab.BrokerURL, labFailure{step: StepInterface, cause: []string{lab.A, "administratively down"},
				words: []string{"ip link set dev " + lab.A + " up", lab.A + ": down"}, is: ErrInterfaceDown}, WithInterfaces(lab.A))
		})
		t.Run("no carrier", func(t *testing.T) {
			leakCheck(t)
			usable(t, lab.A)
			ip(t, "-n", lab.Broker, "link", "set", "dev", lab.PA, "down") // A stays up and loses its carrier
			undo(t, "-n", lab.Broker, "link", "set", "dev", lab.PA, "up")
			// The kernel reports a carrier loss with a delay (linkwatch,
			// up to a second).
			require.Eventually(t, func() bool {
				it, err := net.InterfaceByName(lab.A)
				return err == nil && it.Flags&net.FlagRunning == 0
			}, 3*time.Second, 20*time.Millisecond, "%s kept its carrier", lab.A)
			fails(t, lab.BrokerURL, labFailure{step: StepInterface, cause: []string{lab.A, "no carrier"},
				words: []string{"cable", lab.A + ": up, no carrier"}, is: ErrNoCarrier}, WithInterfaces(lab.A))
		})
		t.Run("no IPv4 address", func(t *testing.T) {
			// A DHCP lease lost: the interface is up, with only its IPv6
			// link-local address left.
			leakCheck(t)
			usable(t, lab.A)
			ip(t, "addr", "del", lab.AIP+"/24", "dev", lab.A) // its routes go with it
			undo(t, "route", "replace", "default", "via", lab.AGW, "dev", lab.A, "metric", "100")
			undo(t, "addr", "add", lab.AIP+"/24", "dev", lab.A)
			fails(t, lab.BrokerURL, labFailure{step: StepAddress, cause: []string{"no IPv4 address on " + lab.A, "only a link-local address"},
				words: []string{"DHCP"}, is: ErrNoUsableAddress}, WithInterfaces(lab.A), WithAddressFamily(FamilyIPv4))
		})
		t.Run("no address at all", func(t *testing.T) {
			leakCheck(t)
			ip(t, "addr", "flush", "dev", lab.B) // the IPv6 link-local one too
			undo(t, "route", "replace", "default", "via", lab.BGW, "dev", lab.B, "metric", "200")
			undo(t, "addr", "add", lab.BIP+"/24", "dev", lab.B)
			fails(t, lab.BrokerURL, labFailure{step: StepAddress, cause: []string{"no usable address on " + lab.B},
				words: []string{lab.B + ": up, carrier; no address", "DHCP"}, is: ErrNoUsableAddress}, WithInterfaces(lab.B))
		})
		t.Run("no IPv6 address", func(t *testing.T) {
			// B has only its IPv4 address: no IPv6 at all, not even
			// link-local.
			leakCheck(t)
			sysctl(t, "", "net.ipv6.conf."+lab.B+".disable_ipv6", "1")
			fails(t, lab.BrokerURL, labFailure{step: StepAddress, cause: []string{"no IPv6 address on " + lab.B},
				words: []string{lab.BIP}, is: ErrNoUsableAddress}, WithInterfaces(lab.B), WithAddressFamily(FamilyIPv6))
		})
		t.Run("IPv6 link-local only, IPv4 broker", func(t *testing.T) {
			// B's only IPv6 address is its link-local one, which the
			// picker takes when IPv6 is asked for; the broker's address is
			// IPv4, which no IPv6 source reaches.
			leakCheck(t)
			usable(t, lab.B)
			require.Eventually(t, func() bool { return hasLinkLocal(lab.B) }, 3*time.Second, 20*time.Millisecond)
			fails(t, lab.BrokerURL, labFailure{step: StepDNS, cause: []string{lab.BrokerIP}, words: []string{"IPv6", "IPv4"}},
				WithInterfaces(lab.B), WithAddressFamily(FamilyIPv6))
		})
		t.Run("healthy again", func(t *testing.T) {
			// Every case put back what it changed.
			leakCheck(t)
			usable(t, lab.A)
			d := healthy(t, lab.BrokerURL, WithInterfaces(lab.A, lab.B))
			require.Equal(t, StepOK, d.Reports[0].Step(StepInterface).Status)
		})

	case "route":
		t.Run("healthy over A and over B", func(t *testing.T) {
			leakCheck(t)
			for _, nic := range []struct{ name, addr string }{{lab.A, lab.AIP}, {lab.B, lab.BIP}} {
				d := healthy(t, lab.BrokerURL, WithInterfaces(nic.name), WithAddressFamily(FamilyIPv4))
				r := d.Reports[0]
				require.Equal(t, StepOK, r.Step(StepInterface).Status)
				require.Equal(t, StepOK, r.Step(StepAddress).Status)
				require.Contains(t, r.Step(StepAddress).Details, nic.addr+" on "+nic.name)
				require.Contains(t, r.Step(StepRoute).Details, lab.BrokerIP+": from "+nic.addr)
			}
			// Unbound: the kernel picks A, which carries the default route.
			d := healthy(t, lab.BrokerURL)
			require.Contains(t, d.Reports[0].Step(StepRoute).Details, lab.BrokerIP+": from "+lab.AIP)
		})
		t.Run("no route from the chosen interface", func(t *testing.T) {
			// B is up with its address, but its default route is gone: the
			// broker's address is off B's subnet and nothing routes it
			// there. A socket bound to B still gets a route from the
			// kernel (with SO_BINDTODEVICE it takes any destination for
			// on-link when no route matches) and asks for it by ARP; the
			// broker's namespace, as a router would, does not answer for
			// an address that is not on that link.
			leakCheck(t)
			sysctl(t, lab.Broker, "net.ipv4.conf."+lab.PB+".arp_ignore", "1")
			fastARP(t, lab.B)
			ip(t, "route", "del", "default", "via", lab.BGW, "dev", lab.B)
			undo(t, "route", "replace", "default", "via", lab.BGW, "dev", lab.B, "metric", "200")
			fails(t, lab.BrokerURL, labFailure{step: StepRoute, cause: []string{"no route from interface " + lab.B, lab.BrokerIP},
				words: []string{"ip route get " + lab.BrokerIP, "default route"}, is: ErrNoRoute}, WithInterfaces(lab.B))
		})
		t.Run("unreachable route", func(t *testing.T) {
			// The routing table says the broker cannot be reached: connect
			// fails at once with EHOSTUNREACH.
			leakCheck(t)
			ip(t, "route", "add", "unreachable", lab.BrokerIP+"/32")
			undo(t, "route", "del", "unreachable", lab.BrokerIP+"/32")
			fails(t, lab.BrokerURL, labFailure{step: StepRoute, cause: []string{"no route from this host to " + lab.BrokerIP},
				words: []string{"ip route get " + lab.BrokerIP, "no route to host"}})
		})
		t.Run("blackhole route in the client namespace", func(t *testing.T) {
			// A blackhole route does not make connect time out: the kernel
			// refuses to send at all, at once (EINVAL from connect). The
			// packets never leave, so it is the route step that fails.
			leakCheck(t)
			ip(t, "route", "add", "blackhole", lab.BrokerIP+"/32")
			undo(t, "route", "del", "blackhole", lab.BrokerIP+"/32")
			fails(t, lab.BrokerURL, labFailure{step: StepRoute, cause: []string{lab.BrokerIP},
				words: []string{"blackhole", "ip route get " + lab.BrokerIP}})
		})
		t.Run("TCP timeout", func(t *testing.T) {
			// The broker's side drops everything it would send to A's
			// address: the SYN arrives, no SYN-ACK comes back.
			leakCheck(t)
			ip(t, "-n", lab.Broker, "route", "add", "blackhole", lab.AIP+"/32")
			undo(t, "-n", lab.Broker, "route", "del", "blackhole", lab.AIP+"/32")
			fails(t, lab.BrokerURL, labFailure{step: StepTCP, cause: []string{"no answer within 1"},
				words: []string{lab.BrokerIP + ":1883", "WithConnectTimeout"}, is: ErrConnectTimeout, wait: 1500 * time.Millisecond})
		})
		t.Run("host on the link does not answer", func(t *testing.T) {
			// An address on A's subnet that nobody holds: the route is
			// there (A's own subnet), ARP gets no answer and the kernel
			// gives up with EHOSTUNREACH. The broker's host is not there:
			// it is the TCP step that fails, unreachable.
			leakCheck(t)
			fastARP(t, lab.A)
			fails(t, "tcp://10.77.1.77:1883", labFailure{step: StepTCP, cause: []string{"unreachable"}, words: []string{"10.77.1.77:1883", "ARP"}})
		})

	case "dns":
		stub, err := dnsstub.Start(labNameServer+":53", map[string]netip.Addr{labBrokerName: netip.MustParseAddr(lab.BrokerIP)})
		require.NoError(t, err)
		t.Cleanup(func() { _ = stub.Close() })
		byName := "tcp://" + labBrokerName + ":1883"
		t.Run("name resolves", func(t *testing.T) {
			leakCheck(t)
			d := healthy(t, byName)
			dns := d.Reports[0].Step(StepDNS)
			require.Contains(t, dns.Details, lab.BrokerIP)
			require.Contains(t, strings.Join(dns.Details, " "), "1 answers")
		})
		t.Run("unknown host", func(t *testing.T) {
			leakCheck(t)
			fails(t, "tcp://"+labNoSuchName+":1883", labFailure{step: StepDNS, cause: []string{"no such host", labNoSuchName},
				words: []string{"check the host name"}, client: dnsErr(func(e *net.DNSError) bool { return e.IsNotFound })})
		})
		t.Run("name without an IPv6 address, IPv6 asked for", func(t *testing.T) {
			// The name exists (an A record), but has no AAAA record, and
			// the source is A's IPv6 link-local address.
			leakCheck(t)
			require.Eventually(t, func() bool { return hasLinkLocal(lab.A) }, 3*time.Second, 20*time.Millisecond)
			fails(t, byName, labFailure{step: StepDNS, cause: []string{labBrokerName, "IPv6"},
				client: dnsErr(func(e *net.DNSError) bool { return e.IsNotFound })},
				WithInterfaces(lab.A), WithAddressFamily(FamilyIPv6))
			f := Diagnose(t.Context(), append(base(byName), WithInterfaces(lab.A), WithAddressFamily(FamilyIPv6))...).Reports[0].Failed()
			require.NotContains(t, f.Cause, "NXDOMAIN", "the name exists")
		})
		silent := func(t *testing.T, connectTimeout, wait time.Duration) {
			// Go's resolver leaves its lookup goroutines reading until the
			// resolver's own timeout, after the caller gave up.
			current := goleak.IgnoreCurrent()
			t.Cleanup(func() {
				goleak.VerifyNone(t, current, goleak.IgnoreAnyFunction("net.(*Resolver).exchange"),
					goleak.IgnoreAnyFunction("net.(*Resolver).lookupIPAddr.func2"),
					goleak.IgnoreAnyFunction("net.(*Resolver).goLookupIPCNAMEOrder"))
			})
			stub.SetSilent(true)
			t.Cleanup(func() { stub.SetSilent(false) })
			before := stub.Queries()
			fails(t, byName, labFailure{step: StepDNS, cause: []string{"DNS server", labNameServer, "did not answer"},
				words: []string{"resolv.conf"}, timeout: connectTimeout, wait: wait,
				client: dnsErr(func(e *net.DNSError) bool { return e.IsTimeout })})
			require.Greater(t, stub.Queries(), before, "the queries reached the lab's name server")
		}
		t.Run("DNS server not answering", func(t *testing.T) {
			// The resolver's own timeout (resolv.conf: 1 s, one attempt)
			// ends the lookup, well within the connect timeout.
			silent(t, 2*time.Second, 1500*time.Millisecond)
		})
		t.Run("DNS server not answering within the connect timeout", func(t *testing.T) {
			// The connect timeout ends the lookup before the resolver's
			// own does: the server must still be named.
			silent(t, 500*time.Millisecond, time.Second)
		})
	default:
		t.Fatalf("unknown scenario %q", scenario)
	}
}

// hasLinkLocal reports whether the interface has an IPv6 link-local
// address.
func hasLinkLocal(name string) bool {
	it, err := net.InterfaceByName(name)
	if err != nil {
		return false
	}
	addrs, _ := it.Addrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() == nil && n.IP.IsLinkLocalUnicast() {
			return true
		}
	}
	return false
}

// logDiagnosis logs one line per step, for the parent's log.
func logDiagnosis(t *testing.T, d Diagnosis) {
	t.Helper()
	for _, r := range d.Reports {
		for _, s := range r.Steps {
			if s.Status == StepSkipped && s.Cause != "" {
				continue
			}
			line := s.Name + " " + s.Status.String()
			if s.Cause != "" {
				line += ": " + s.Cause
			}
			if s.Hint != "" {
				line += " — " + s.Hint
			}
			if len(s.Details) > 0 {
				line += " [" + strings.Join(s.Details, "; ") + "]"
			}
			t.Logf("%s", line)
		}
	}
}

// dnsErr checks that a client's error is the resolver's, as ok says.
func dnsErr(ok func(*net.DNSError) bool) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var de *net.DNSError
		require.True(t, errors.As(err, &de), "not a *net.DNSError: %v", err)
		require.True(t, ok(de), "%+v", *de)
	}
}
