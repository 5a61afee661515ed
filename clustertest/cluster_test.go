package clustertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// node is one nats-server process of the cluster, with ports that stay
// the same across a kill and a restart.
type node struct {
	name                      string
	dir                       string
	client, route, http, mqtt int // loopback ports
	conf, log                 string

	mu   sync.Mutex
	cmd  *exec.Cmd // nil while down
	exit chan struct{}
}

// cluster is three nats-server nodes on loopback: routes between them,
// JetStream clustered (the MQTT streams get three replicas), an MQTT
// listener on each.
type cluster struct {
	bin   string
	nodes []*node
}

// startCluster writes a configuration for each node under base and starts
// the three processes of bin (nats-server).
func startCluster(base, bin string) (*cluster, error) {
	c := &cluster{bin: bin}
	ports, err := freePorts(12)
	if err != nil {
		return nil, err
	}
	for i := 0; i < 3; i++ {
		n := &node{
			name:   fmt.Sprintf("n%d", i+1),
			dir:    filepath.Join(base, fmt.Sprintf("n%d", i+1)),
			client: ports[4*i], route: ports[4*i+1], http: ports[4*i+2], mqtt: ports[4*i+3],
		}
		if err := os.MkdirAll(n.dir, 0o700); err != nil {
			return nil, err
		}
		n.log = filepath.Join(n.dir, "nats.log")
		c.nodes = append(c.nodes, n)
	}
	var routes []string
	for _, n := range c.nodes {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", n.route))
	}
	for _, n := range c.nodes {
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
jetstream { store_dir: %q }
cluster {
  name: steadymqtt
  listen: 127.0.0.1:%d
  routes: [%s]
}
mqtt { listen: 127.0.0.1:%d }
`, n.name, n.client, n.http, filepath.Join(n.dir, "js"), n.route, strings.Join(routes, ", "), n.mqtt)
		n.conf = filepath.Join(n.dir, "nats.conf")
		if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
			return nil, err
		}
	}
	for _, n := range c.nodes {
		if err := c.start(n); err != nil {
			c.stopAll()
			return nil, err
		}
	}
	return c, nil
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (n *node) URL() string  { return fmt.Sprintf("tcp://127.0.0.1:%d", n.mqtt) }
func (n *node) Addr() string { return fmt.Sprintf("127.0.0.1:%d", n.mqtt) }

func (c *cluster) urls() []string {
	var u []string
	for _, n := range c.nodes {
		u = append(u, n.URL())
	}
	return u
}

// start runs n and waits until its MQTT port listens.
func (c *cluster) start(n *node) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return nil
	}
	out, err := os.OpenFile(filepath.Join(n.dir, "stdout"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.bin, "-c", n.conf, "-l", n.log)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start %s: %w", n.name, err)
	}
	exit := make(chan struct{})
	go func() { _ = cmd.Wait(); out.Close(); close(exit) }()
	n.cmd, n.exit = cmd, exit
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exit:
			n.cmd = nil
			return fmt.Errorf("%s exited at start: %s", n.name, n.tail())
		default:
		}
		if conn, err := net.DialTimeout("tcp", n.Addr(), 200*time.Millisecond); err == nil {
			conn.Close()
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("%s did not listen on %s within 20s: %s", n.name, n.Addr(), n.tail())
}

// kill ends n with SIGKILL, as a crash would, and waits for it to be gone.
func (c *cluster) kill(n *node) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exit
	n.cmd = nil
}

func (c *cluster) stopAll() {
	for _, n := range c.nodes {
		c.kill(n)
	}
}

func (n *node) tail() string {
	b, _ := os.ReadFile(n.log)
	o, _ := os.ReadFile(filepath.Join(n.dir, "stdout"))
	b = append(b, o...)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// probeConnect sends one MQTT 3.1.1 CONNECT to addr, reads the CONNACK
// and disconnects: nil when the broker accepted it within timeout, with
// the CONNACK's session-present flag.
func probeConnect(addr, clientID string, clean bool, timeout time.Duration) (sessionPresent bool, err error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	var flags byte
	if clean {
		flags = 0x02
	}
	var vh bytes.Buffer
	vh.Write([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, flags, 0, 30})
	vh.Write([]byte{byte(len(clientID) >> 8), byte(len(clientID))})
	vh.WriteString(clientID)
	pkt := append([]byte{0x10, byte(vh.Len())}, vh.Bytes()...)
	if _, err := conn.Write(pkt); err != nil {
		return false, err
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(conn, ack); err != nil {
		return false, fmt.Errorf("reading CONNACK: %w", err)
	}
	if ack[0] != 0x20 || ack[1] != 2 {
		return false, fmt.Errorf("not a CONNACK: % x", ack)
	}
	if ack[3] != 0 {
		return false, fmt.Errorf("CONNACK return code %d", ack[3])
	}
	_, _ = conn.Write([]byte{0xE0, 0}) // DISCONNECT
	return ack[2]&1 == 1, nil
}

// waitMQTT waits until every node given answers an MQTT CONNECT, which
// on nats-server needs the JetStream streams of MQTT to have leaders.
func (c *cluster) waitMQTT(ctx context.Context, nodes ...*node) error {
	if len(nodes) == 0 {
		nodes = c.nodes
	}
	for _, n := range nodes {
		var last error
		for {
			_, err := probeConnect(n.Addr(), "probe-"+n.name, true, 2*time.Second)
			if err == nil {
				break
			}
			last = err
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: no CONNACK: %v (last: %w)", n.name, ctx.Err(), last)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// jsz is what a node's monitoring endpoint says about JetStream.
type jsz struct {
	Meta struct {
		Leader string `json:"leader"`
	} `json:"meta_cluster"`
	Accounts []struct {
		Streams []struct {
			Name    string `json:"name"`
			Cluster struct {
				Leader string `json:"leader"`
			} `json:"cluster"`
		} `json:"stream_detail"`
	} `json:"account_details"`
}

// leaders returns the meta leader and the leader of each stream as n
// sees them.
func (n *node) leaders() (meta string, streams map[string]string, err error) {
	// No keep-alive: an idle connection would outlive the test.
	cl := http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := cl.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz?accounts=true&streams=true", n.http))
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	var j jsz
	if err := json.NewDecoder(resp.Body).Decode(&j); err != nil {
		return "", nil, err
	}
	streams = map[string]string{}
	for _, a := range j.Accounts {
		for _, s := range a.Streams {
			streams[s.Name] = s.Cluster.Leader
		}
	}
	return j.Meta.Leader, streams, nil
}

// running says whether n's process is up.
func (n *node) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}
