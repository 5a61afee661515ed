package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
)

// printEnvironment writes what the figures depend on: machine, load,
// versions.
func printEnvironment(w io.Writer, preset string) {
	fmt.Fprintf(w, "preset:     %s\n", preset)
	fmt.Fprintf(w, "machine:    %s, %d cores (%s/%s)\n", cpuModel(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(w, "load:       %s (1, 5, 15 min) at the start\n", loadAverage())
	fmt.Fprintf(w, "go:         %s\n", runtime.Version())
	fmt.Fprintf(w, "libraries:  %s\n", libraryVersions())
	fmt.Fprintf(w, "broker:     %s on loopback\n", mosquittoVersion())
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func libraryVersions() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	self := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			self += " " + s.Value[:12]
		}
		if s.Key == "vcs.modified" && s.Value == "true" {
			self += "+changes"
		}
	}
	out := []string{"steadymqtt " + self}
	for _, d := range bi.Deps {
		switch d.Path {
		case "github.com/eclipse/paho.mqtt.golang", "github.com/cenkalti/backoff/v4":
			out = append(out, d.Path+" "+d.Version)
		}
	}
	return strings.Join(out, ", ")
}

var mosquittoVersionRE = regexp.MustCompile(`mosquitto version (\S+)`)

func mosquittoVersion() string {
	bin, err := broker.Look("mosquitto")
	if err != nil {
		return "Mosquitto not found"
	}
	out, _ := exec.Command(bin, "-h").CombinedOutput()
	if m := mosquittoVersionRE.FindSubmatch(out); m != nil {
		return "Mosquitto " + string(m[1])
	}
	return "Mosquitto (version unknown)"
}
