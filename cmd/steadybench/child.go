package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// The rows that need a fresh process start this program again with
// -child MODE and flags of the mode; the child prints one JSON line,
// prefixed with "result ", and may print "ready" before it.

func runChild(mode string, args []string) int {
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	lib := fs.String("lib", "", "library: paho or steadymqtt")
	url := fs.String("broker", "", "broker URL")
	n := fs.Int("n", 1, "clients")
	window := fs.Duration("window", 0, "measurement window")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	l := paho
	if *lib == "steadymqtt" {
		l = steady
	}
	var res any
	var err error
	switch mode {
	case "footprint":
		res, err = childFootprint(l, *url, *n)
	case "idle":
		res, err = childIdleCPU(l, *url, *n, *window)
	default:
		err = fmt.Errorf("unknown child mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	b, _ := json.Marshal(res)
	fmt.Printf("result %s\n", b)
	return 0
}

// child is a running child process.
type child struct {
	cmd *exec.Cmd
	out *bufio.Scanner
}

// startChild runs this program again as a child for lib.
func startChild(mode string, lib library, args ...string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	name := "paho"
	if lib.name == steady.name {
		name = "steadymqtt"
	}
	cmd := exec.Command(self, append([]string{"-child", mode, "-lib", name}, args...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	return &child{cmd: cmd, out: sc}, nil
}

// waitFor reads lines until one starts with prefix, and returns the rest.
func (c *child) waitFor(prefix string) (string, error) {
	for c.out.Scan() {
		if rest, ok := strings.CutPrefix(c.out.Text(), prefix); ok {
			return rest, nil
		}
	}
	if err := c.out.Err(); err != nil {
		return "", err
	}
	return "", io.ErrUnexpectedEOF
}

// result waits for the child's result and its exit.
func (c *child) result(v any) error {
	line, err := c.waitFor("result ")
	if err == nil {
		err = json.Unmarshal([]byte(line), v)
	}
	if werr := c.cmd.Wait(); err == nil && werr != nil {
		err = werr
	}
	return err
}
