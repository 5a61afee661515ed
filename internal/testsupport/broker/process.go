package broker

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process is a broker running as a child process on a loopback port that
// stays the same across restarts.
type Process struct {
	Name string // "mosquitto" or "nats-server"
	Port int
	Dir  string // config, logs and data
	Log  string // path of the broker's log file

	argv []string
	cmd  *exec.Cmd
	exit chan struct{}
}

// ErrNotInstalled is returned when the broker's binary cannot be found.
var ErrNotInstalled = errors.New("broker binary not installed")

// Look finds a broker binary on PATH or in the sbin directories that
// Debian installs servers into.
func Look(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s (apt-get install -y %s)", ErrNotInstalled, name, name)
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// MosquittoConfig describes a Mosquitto instance.
type MosquittoConfig struct {
	// Users, when not empty, turns anonymous access off and writes a
	// password_file with these user → password pairs.
	Users map[string]string
	// Persistent keeps sessions and queued messages across restarts (saved
	// on SIGTERM, lost on SIGKILL since the last autosave).
	Persistent bool
	// Extra lines appended to mosquitto.conf.
	Extra []string
}

// StartMosquitto writes a configuration into dir and starts Mosquitto on a
// free loopback port.
func StartMosquitto(dir string, cfg MosquittoConfig) (*Process, error) {
	bin, err := Look("mosquitto")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	p := &Process{Name: "mosquitto", Port: port, Dir: dir, Log: filepath.Join(dir, "mosquitto.log")}
	persistence := []string{"persistence false"}
	if cfg.Persistent {
		persistence = []string{"persistence true", "persistence_location " + dir + "/", "autosave_interval 1",
			"max_queued_messages 0", "max_queued_bytes 0"}
	}
	conf := append([]string{
		fmt.Sprintf("listener %d 127.0.0.1", port),
		"log_dest file " + p.Log,
		"log_type all",
		"connection_messages true",
	}, persistence...)
	if os.Geteuid() == 0 {
		conf = append(conf, "user root") // else it drops to 'mosquitto' and cannot write dir
	}
	if len(cfg.Users) == 0 {
		conf = append(conf, "allow_anonymous true")
	} else {
		pwfile := filepath.Join(dir, "passwd")
		if err := writePasswords(pwfile, cfg.Users); err != nil {
			return nil, err
		}
		conf = append(conf, "allow_anonymous false", "password_file "+pwfile)
	}
	conf = append(conf, cfg.Extra...)
	confPath := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(confPath, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		return nil, err
	}
	p.argv = []string{bin, "-c", confPath}
	return p, p.Start()
}

func writePasswords(path string, users map[string]string) error {
	bin, err := Look("mosquitto_passwd")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		return err
	}
	for u, pw := range users {
		if out, err := exec.Command(bin, "-b", path, u, pw).CombinedOutput(); err != nil {
			return fmt.Errorf("mosquitto_passwd: %v: %s", err, out)
		}
	}
	return nil
}

// StartNATS starts nats-server with its MQTT listener (which needs
// JetStream and a server name) on a free loopback port.
func StartNATS(dir string) (*Process, error) {
	bin, err := Look("nats-server")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	p := &Process{Name: "nats-server", Port: port, Dir: dir, Log: filepath.Join(dir, "nats.log")}
	conf := fmt.Sprintf(`server_name: steadymqtt_test
listen: 127.0.0.1:-1
jetstream { store_dir: %q }
mqtt { listen: "127.0.0.1:%d" }
`, filepath.Join(dir, "jetstream"), port)
	confPath := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	p.argv = []string{bin, "-c", confPath, "-l", p.Log}
	return p, p.Start()
}

// Addr is 127.0.0.1:port.
func (p *Process) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)) }

// URL is the tcp:// URL of the MQTT listener.
func (p *Process) URL() string { return "tcp://" + p.Addr() }

// Start runs the broker and waits until its port accepts connections.
func (p *Process) Start() error {
	if p.cmd != nil {
		return nil
	}
	out, err := os.OpenFile(filepath.Join(p.Dir, p.Name+".stdout"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	exit := make(chan struct{})
	go func() { _ = cmd.Wait(); out.Close(); close(exit) }()
	p.cmd, p.exit = cmd, exit

	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exit:
			p.cmd = nil
			return fmt.Errorf("%s exited at start; see %s: %s", p.Name, p.Log, p.tail())
		default:
		}
		if c, err := net.DialTimeout("tcp", p.Addr(), 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = p.Kill()
	return fmt.Errorf("%s did not listen on %s within 15s: %s", p.Name, p.Addr(), p.tail())
}

// Kill ends the broker with SIGKILL, as a crash would, and waits for it.
func (p *Process) Kill() error { return p.signal(syscall.SIGKILL) }

// Stop ends the broker with SIGTERM and waits for it.
func (p *Process) Stop() error { return p.signal(syscall.SIGTERM) }

func (p *Process) signal(sig syscall.Signal) error {
	if p.cmd == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exit:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exit
	}
	p.cmd = nil
	return nil
}

// LogText returns the broker's log so far.
func (p *Process) LogText() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

func (p *Process) tail() string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, p.Name+".stdout"))
	l := p.LogText() + string(b)
	if len(l) > 2000 {
		l = l[len(l)-2000:]
	}
	return l
}
