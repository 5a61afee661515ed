// Package netns builds the multi-homed test host: a client namespace with
// two NICs (A = wired0, B = lte0), each a veth pair to a broker namespace that runs
// Mosquitto on an address reachable over both. It needs root (or
// CAP_NET_ADMIN) and iproute2; everything it makes lives in its own
// namespaces and is removed by Close.
//
//	client ns                         broker ns
//	wired0 10.77.1.2/24 ── veth ── p-wired0 10.77.1.1/24
//	lte0   10.77.2.2/24 ── veth ── p-lte0   10.77.2.1/24
//	default via 10.77.1.1 dev wired0 metric 100   lo 10.77.9.1/32 (Mosquitto :1883)
//	default via 10.77.2.1 dev lte0 metric 200
package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
)

// Lab is one client/broker pair of namespaces. Its fields travel to the
// child process that runs inside the client namespace (as JSON).
type Lab struct {
	Client, Broker string // namespace names
	A, B           string // client interfaces; A carries the default route
	PA, PB         string // their peers in the broker namespace
	AIP, BIP       string // client addresses
	AGW, BGW       string // the peers' addresses (gateways)
	BrokerIP       string
	BrokerURL      string
	Dir            string
	MosquittoLog   string
	mosquitto      *exec.Cmd
	etcDir         string // /etc/netns/<Client>, when WriteEtc made it
	madeEtcNetns   bool   // and /etc/netns itself
}

// ErrUnavailable means network namespaces cannot be made here.
var ErrUnavailable = errors.New("network namespaces unavailable")

var seq atomic.Int32

// Available says why namespaces cannot be used, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: needs root or CAP_NET_ADMIN", ErrUnavailable)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("%w: no ip command (apt-get install -y iproute2)", ErrUnavailable)
	}
	probe := fmt.Sprintf("smq-probe-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		return fmt.Errorf("%w: ip netns add: %v: %s", ErrUnavailable, err, out)
	}
	_ = exec.Command("ip", "netns", "del", probe).Run()
	return nil
}

// New builds the namespaces and links, after removing what a test process
// that died (its pid is gone) left behind.
func New(dir string) (*Lab, error) {
	removeStale()
	id := fmt.Sprintf("%d-%d", os.Getpid(), seq.Add(1))
	l := &Lab{
		Client: "smq-c-" + id, Broker: "smq-b-" + id,
		A: "wired0", B: "lte0", PA: "p-wired0", PB: "p-lte0",
		AIP: "10.77.1.2", BIP: "10.77.2.2", AGW: "10.77.1.1", BGW: "10.77.2.1",
		BrokerIP: "10.77.9.1", Dir: dir,
	}
	l.BrokerURL = "tcp://" + l.BrokerIP + ":1883"
	steps := [][]string{
		{"netns", "add", l.Client},
		{"netns", "add", l.Broker},
		{"-n", l.Client, "link", "set", "lo", "up"},
		{"-n", l.Broker, "link", "set", "lo", "up"},
		{"-n", l.Client, "link", "add", "name", l.A, "type", "veth", "peer", "name", l.PA, "netns", l.Broker},
		{"-n", l.Client, "link", "add", "name", l.B, "type", "veth", "peer", "name", l.PB, "netns", l.Broker},
		{"-n", l.Client, "addr", "add", l.AIP + "/24", "dev", l.A},
		{"-n", l.Client, "addr", "add", l.BIP + "/24", "dev", l.B},
		{"-n", l.Broker, "addr", "add", l.AGW + "/24", "dev", l.PA},
		{"-n", l.Broker, "addr", "add", l.BGW + "/24", "dev", l.PB},
		{"-n", l.Broker, "addr", "add", l.BrokerIP + "/32", "dev", "lo"},
		{"-n", l.Client, "link", "set", "dev", l.A, "up"},
		{"-n", l.Client, "link", "set", "dev", l.B, "up"},
		{"-n", l.Broker, "link", "set", "dev", l.PA, "up"},
		{"-n", l.Broker, "link", "set", "dev", l.PB, "up"},
		{"-n", l.Client, "route", "add", "default", "via", l.AGW, "dev", l.A, "metric", "100"},
		{"-n", l.Client, "route", "add", "default", "via", l.BGW, "dev", l.B, "metric", "200"},
	}
	for _, s := range steps {
		if err := IP(s...); err != nil {
			l.Close()
			return nil, err
		}
	}
	// Replies to b's address leave by pb; no reverse-path filter in the way.
	for _, key := range []string{"all", "default", l.PA, l.PB} {
		_ = exec.Command("ip", "netns", "exec", l.Broker, "sysctl", "-qw", "net.ipv4.conf."+key+".rp_filter=0").Run()
	}
	return l, nil
}

// removeStale deletes smq-* namespaces whose creating process is gone.
func removeStale() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		name := fields[0]
		parts := strings.Split(name, "-")
		if len(parts) != 4 || parts[0] != "smq" {
			continue
		}
		pid, err := strconv.Atoi(parts[2])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat("/proc/" + parts[2]); err == nil {
			continue // still running
		}
		_ = exec.Command("ip", "netns", "del", name).Run()
	}
}

// IP runs the ip command with args.
func IP(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// StartMosquitto runs Mosquitto in the broker namespace, logging every
// connection with its source address.
func (l *Lab) StartMosquitto() error {
	bin, err := broker.Look("mosquitto")
	if err != nil {
		return err
	}
	l.MosquittoLog = filepath.Join(l.Dir, "mosquitto.log")
	conf := filepath.Join(l.Dir, "mosquitto.conf")
	lines := []string{
		"listener 1883 " + l.BrokerIP, "allow_anonymous true", "persistence false",
		"log_dest file " + l.MosquittoLog, "log_type all", "connection_messages true",
	}
	if os.Geteuid() == 0 {
		lines = append(lines, "user root")
	}
	if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	cmd := exec.Command("ip", "netns", "exec", l.Broker, bin, "-c", conf)
	if err := cmd.Start(); err != nil {
		return err
	}
	l.mosquitto = cmd
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if strings.Contains(l.Log(), " running") {
			return nil
		}
	}
	return fmt.Errorf("mosquitto did not start in %s: %s", l.Broker, l.Log())
}

// Log is what Mosquitto logged so far.
func (l *Lab) Log() string {
	b, _ := os.ReadFile(l.MosquittoLog)
	return string(b)
}

// Close stops Mosquitto and removes both namespaces (and with them the
// veth pairs).
func (l *Lab) Close() {
	if l.mosquitto != nil {
		_ = l.mosquitto.Process.Kill()
		_ = l.mosquitto.Wait()
	}
	_ = exec.Command("ip", "netns", "del", l.Client).Run()
	_ = exec.Command("ip", "netns", "del", l.Broker).Run()
	l.removeEtc()
}

// etcNetns is where `ip netns exec NAME` finds the files it bind-mounts
// over /etc for the process it runs: /etc/netns/NAME/resolv.conf becomes
// that process's /etc/resolv.conf.
const etcNetns = "/etc/netns"

// WriteEtc writes a file (resolv.conf, hosts, ...) that processes run in
// the client namespace with `ip netns exec` see in /etc instead of the
// host's. It must be written before they start; Close removes it.
func (l *Lab) WriteEtc(name, content string) error {
	if name == "" || strings.ContainsRune(name, '/') {
		return fmt.Errorf("netns: %q is not a file name in /etc", name)
	}
	removeStaleEtc()
	dir := filepath.Join(etcNetns, l.Client)
	if _, err := os.Stat(etcNetns); errors.Is(err, os.ErrNotExist) {
		l.madeEtcNetns = true
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	l.etcDir = dir
	return os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
}

// WriteResolvConf gives the client namespace its own /etc/resolv.conf.
func (l *Lab) WriteResolvConf(lines ...string) error {
	return l.WriteEtc("resolv.conf", strings.Join(lines, "\n")+"\n")
}

// removeEtc removes what WriteEtc made: its directory, and /etc/netns
// if it made that too and nothing else is in it now.
func (l *Lab) removeEtc() {
	if l.etcDir == "" {
		return
	}
	_ = os.RemoveAll(l.etcDir)
	l.etcDir = ""
	if l.madeEtcNetns {
		_ = os.Remove(etcNetns) // fails, harmlessly, while other namespaces have files there
	}
}

// removeStaleEtc removes the /etc/netns directories of labs whose creating
// process is gone.
func removeStaleEtc() {
	entries, err := os.ReadDir(etcNetns)
	if err != nil {
		return
	}
	for _, e := range entries {
		parts := strings.Split(e.Name(), "-")
		if len(parts) != 4 || parts[0] != "smq" {
			continue
		}
		if pid, err := strconv.Atoi(parts[2]); err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat("/proc/" + parts[2]); err == nil {
			continue // still running
		}
		_ = os.RemoveAll(filepath.Join(etcNetns, e.Name()))
	}
}
