package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
)

// brokerUnderTest is the broker every row runs against: Mosquitto in a
// process of its own on a free loopback port.
type brokerUnderTest struct {
	p *broker.Process
}

// startBroker starts Mosquitto, or says why it cannot.
func startBroker() (*brokerUnderTest, error) {
	dir, err := os.MkdirTemp("", "steadybench-mosquitto")
	if err != nil {
		return nil, err
	}
	// Mosquitto's default of 20 QoS 2 messages in flight per client would
	// disconnect either library at 100 in flight; no limit on queued
	// messages for the replay rows; no log, so that writing it does not
	// cost the broker CPU.
	p, err := broker.StartMosquitto(dir, broker.MosquittoConfig{Extra: []string{
		"max_inflight_messages 1000",
		"max_queued_messages 0",
		"log_dest none",
	}})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return &brokerUnderTest{p: p}, nil
}

func (b *brokerUnderTest) URL() string  { return b.p.URL() }
func (b *brokerUnderTest) Addr() string { return b.p.Addr() }

// Down kills the broker, as a crash would.
func (b *brokerUnderTest) Down() error { return b.p.Kill() }

// Up starts it again on the same port and returns once it listens.
func (b *brokerUnderTest) Up() error { return b.p.Start() }

func (b *brokerUnderTest) Close() {
	_ = b.p.Kill()
	_ = os.RemoveAll(b.p.Dir)
}

// Pid finds the broker's process by its configuration file, 0 if none.
func (b *brokerUnderTest) Pid() int {
	conf := filepath.Join(b.p.Dir, "mosquitto.conf")
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), conf) {
			return pid
		}
	}
	return 0
}

// cpuSeconds is the CPU time (user + system) a process has used so far,
// from /proc/PID/stat.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	// The command name may hold spaces: fields count from after ')'.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTicks, nil
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go runs on.
const clockTicks = 100
