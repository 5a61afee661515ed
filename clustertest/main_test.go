package clustertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/steadymqtt/steadymqtt"
	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
)

// One cluster serves every test of the package: starting three nodes and
// electing the JetStream leaders takes seconds. Each test begins by
// bringing every node back up and waiting until each answers an MQTT
// CONNECT, so no test depends on what an earlier one left behind; client
// IDs and topics are the test's own.
var (
	shared     *cluster
	clusterErr error
	natsBin    string
)

func TestMain(m *testing.M) {
	base, err := os.MkdirTemp("", "steadymqtt-cluster-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	clusterErr = startShared(base)
	code := m.Run()
	if shared != nil {
		shared.stopAll()
	}
	_ = os.RemoveAll(base)
	os.Exit(code)
}

// startShared finds nats-server (STEADYMQTT_NATS_SERVER names another
// binary) and starts the cluster.
func startShared(base string) error {
	natsBin = os.Getenv("STEADYMQTT_NATS_SERVER")
	if natsBin == "" {
		var err error
		if natsBin, err = broker.Look("nats-server"); err != nil {
			return err
		}
	}
	if out, err := exec.Command(natsBin, "--version").CombinedOutput(); err == nil {
		fmt.Fprintf(os.Stderr, "cluster: %s\n", strings.TrimSpace(string(out)))
	}
	c, err := startCluster(base, natsBin)
	if err != nil {
		return err
	}
	shared = c
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return c.waitMQTT(ctx)
}

// needCluster returns the cluster with all three nodes up and answering
// MQTT. Without a nats-server binary the test is skipped, unless
// STEADYMQTT_REQUIRE_INTEROP=1 makes that a failure.
func needCluster(t *testing.T) *cluster {
	t.Helper()
	if clusterErr != nil {
		if errors.Is(clusterErr, broker.ErrNotInstalled) && os.Getenv("STEADYMQTT_REQUIRE_INTEROP") != "1" {
			t.Skipf("skipping: %v (set STEADYMQTT_REQUIRE_INTEROP=1 to make this a failure)", clusterErr)
		}
		t.Fatalf("nats-server cluster: %v", clusterErr)
	}
	c := shared
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.nodes {
				t.Logf("log of %s (last lines):\n%s", n.name, n.tail())
			}
		}
	})
	var restarted []*node
	for _, n := range c.nodes {
		if !n.running() {
			require.NoError(t, c.start(n))
			restarted = append(restarted, n)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, c.waitMQTT(ctx))
	if len(restarted) > 0 {
		t.Logf("restarted %d node(s) left down by an earlier test; MQTT ready after %v", len(restarted), time.Since(start).Round(time.Millisecond))
	}
	return c
}

// leakCheck must be the first call of a test that starts clients:
// cleanups run last-in first-out, so the check runs after the clients are
// closed. The goroutine that waits for a node process belongs to the
// shared cluster, not to the test.
func leakCheck(t *testing.T) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		goleak.VerifyNone(t, before, goleak.IgnoreAnyFunction("github.com/steadymqtt/steadymqtt/clustertest.(*cluster).start.func1"))
	})
}

// clientOptions are those of every client here: a connect timeout short
// enough that a node which accepts TCP but does not answer the CONNECT
// (its JetStream leader gone) is left quickly, and a backoff per round
// that suits a test.
func clientOptions(urls []string, id string, extra ...steadymqtt.Option) []steadymqtt.Option {
	return append([]steadymqtt.Option{
		steadymqtt.WithBroker(urls...),
		steadymqtt.WithClientID(id),
		steadymqtt.WithConnectTimeout(3 * time.Second),
		steadymqtt.WithKeepAlive(5 * time.Second),
		steadymqtt.WithBackoff(steadymqtt.NewFullJitterBackOff(100*time.Millisecond, 2*time.Second)),
	}, extra...)
}

// newClient makes a client, closed by the test's cleanup.
func newClient(t *testing.T, opts ...steadymqtt.Option) *steadymqtt.Client {
	t.Helper()
	cl, err := steadymqtt.New(opts...)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = cl.Close(ctx)
	})
	return cl
}

// fleet is n gateway replicas given the same three endpoints, with the
// events of each from before its Connect.
type fleet struct {
	ids     []string
	clients []*steadymqtt.Client
	logs    []*eventLog
}

func startFleet(t *testing.T, c *cluster, idFormat string, n int, extra ...steadymqtt.Option) *fleet {
	t.Helper()
	f := &fleet{}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf(idFormat, i)
		f.ids = append(f.ids, id)
		cl := newClient(t, clientOptions(c.urls(), id, extra...)...)
		f.clients = append(f.clients, cl)
		f.logs = append(f.logs, recordEvents(t, cl))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, cl := range f.clients {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = cl.Connect(ctx) }()
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "client %s", f.ids[i])
	}
	return f
}

// firstTry says whether client i's first attempt connected: then it is on
// the first endpoint of its order, its preferred one. Events reach the log
// on a goroutine of their own, maybe after Connect returned.
func (f *fleet) firstTry(t *testing.T, i int) bool {
	t.Helper()
	var first *steadymqtt.Event
	require.Eventually(t, func() bool {
		for _, ev := range f.logs[i].snapshot() {
			if ev.Kind == steadymqtt.KindState && ev.To == steadymqtt.StateConnected {
				first = &ev
				return true
			}
		}
		return false
	}, 5*time.Second, 5*time.Millisecond, "%s: no connected event", f.ids[i])
	return first.Attempt == 0
}

// on returns the node client i is connected to, by the socket's remote
// address; nil when it is not connected.
func (f *fleet) on(c *cluster, i int) *node { return connectedTo(c, f.clients[i]) }

func connectedTo(c *cluster, cl *steadymqtt.Client) *node {
	h := cl.Health()
	if !h.State.Up() || h.RemoteAddr == nil {
		return nil
	}
	_, port, err := net.SplitHostPort(h.RemoteAddr.String())
	if err != nil {
		return nil
	}
	for _, n := range c.nodes {
		if strconv.Itoa(n.mqtt) == port {
			return n
		}
	}
	return nil
}

// spread counts the clients on each node (in the cluster's node order) and
// those not connected.
func (f *fleet) spread(c *cluster) (counts []int, down int) {
	counts = make([]int, len(c.nodes))
	for i := range f.clients {
		n := f.on(c, i)
		if n == nil {
			down++
			continue
		}
		for j := range c.nodes {
			if c.nodes[j] == n {
				counts[j]++
			}
		}
	}
	return counts, down
}

// spreadOK says whether counts of a 30-client fleet are no worse than
// 14/10/6: no node above 14, none below 6.
func spreadOK(counts []int) bool {
	s := append([]int(nil), counts...)
	sort.Ints(s)
	return s[0] >= 6 && s[len(s)-1] <= 14
}

// eventLog keeps every event of a client, in order.
type eventLog struct {
	mu     sync.Mutex
	events []steadymqtt.Event
}

func recordEvents(t *testing.T, cl *steadymqtt.Client) *eventLog {
	l := &eventLog{}
	cancel := cl.OnEvent(func(ev steadymqtt.Event) {
		l.mu.Lock()
		l.events = append(l.events, ev)
		l.mu.Unlock()
	})
	t.Cleanup(cancel)
	return l
}

func (l *eventLog) snapshot() []steadymqtt.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]steadymqtt.Event(nil), l.events...)
}

// keySet is a concurrent set of idempotency keys.
type keySet struct {
	mu sync.Mutex
	m  map[string]time.Time
}

func newKeySet() *keySet { return &keySet{m: map[string]time.Time{}} }

func (s *keySet) add(k string) {
	s.mu.Lock()
	if _, ok := s.m[k]; !ok {
		s.m[k] = time.Now()
	}
	s.mu.Unlock()
}

func (s *keySet) has(k string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[k]
	return ok
}

func (s *keySet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// missing lists the keys of want that s lacks, sorted.
func (s *keySet) missing(want []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, k := range want {
		if _, ok := s.m[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }
