package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt"
)

func sample() steadymqtt.Diagnosis {
	ok := steadymqtt.Report{Broker: "tcp://127.0.0.1:1883", OK: true, Steps: []steadymqtt.Step{
		{Name: "interface", Status: steadymqtt.StepSkipped, Details: []string{"no interface named"}},
		{Name: "dns", Status: steadymqtt.StepOK, Duration: 3 * time.Microsecond, Details: []string{"127.0.0.1 is an address"}},
		{Name: "tcp", Status: steadymqtt.StepOK, Duration: 1500 * time.Microsecond},
		{Name: "tls", Status: steadymqtt.StepWarning, Duration: 2300 * time.Millisecond,
			Cause: "the broker's certificate expires in 100h", Hint: "renew it", Details: []string{"TLS 1.3"}},
		{Name: "keepalive", Status: steadymqtt.StepOK, Duration: 250 * time.Microsecond},
	}}
	bad := steadymqtt.Report{Broker: "mqtts://gateway:xxxxx@broker:8883", Steps: []steadymqtt.Step{
		{Name: "dns", Status: steadymqtt.StepOK, Duration: 12 * time.Millisecond, Details: []string{"192.0.2.1", "1 answers in 12ms"}},
		{Name: "tcp", Status: steadymqtt.StepFailed, Duration: 5 * time.Second, Err: errors.New("i/o timeout"),
			Cause: "no answer within 5s", Hint: "the packets are dropped on the way", Details: []string{"192.0.2.1:8883: no answer within 5s"}},
		{Name: "roundtrip", Status: steadymqtt.StepSkipped, Cause: "not tried: the tcp step failed"},
	}}
	return steadymqtt.Diagnosis{Reports: []steadymqtt.Report{ok, bad}}
}

var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

func TestHumanFormat(t *testing.T) {
	var b bytes.Buffer
	writeHuman(&b, sample(), false)
	out := b.String()
	require.NotContains(t, out, "\x1b[")
	require.Equal(t, `tcp://127.0.0.1:1883  OK (1 warning)
  skipped  interface  no interface named
  ok       dns          3µs
           127.0.0.1 is an address
  ok       tcp        1.5ms
  warning  tls        2.30s
           cause: the broker's certificate expires in 100h
           hint:  renew it
           TLS 1.3
  ok       keepalive  250µs

mqtts://gateway:xxxxx@broker:8883  FAILED
  ok       dns        12.0ms
           192.0.2.1
           1 answers in 12ms
  failed   tcp         5.00s
           cause: no answer within 5s
           hint:  the packets are dropped on the way
           192.0.2.1:8883: no answer within 5s
  skipped  roundtrip  not tried: the tcp step failed
failed at step tcp: no answer within 5s (mqtts://gateway:xxxxx@broker:8883)
`, out)
	requireAligned(t, out)
}

// requireAligned: in each report the step names start in one column, the
// durations end in one column, and what is under a step starts where the
// names do.
func requireAligned(t *testing.T, out string) {
	t.Helper()
	for _, block := range strings.Split(out, "\n\n") {
		nameCol, durEnd := -1, -1
		for _, line := range strings.Split(strings.TrimRight(block, "\n"), "\n") {
			if !strings.HasPrefix(line, "  ") {
				continue // the header, the last line
			}
			if strings.HasPrefix(line, "   ") { // cause, hint, details
				col := len(line) - len(strings.TrimLeft(line, " "))
				require.Equal(t, nameCol, col, "%q", line)
				continue
			}
			fields := strings.Fields(line)
			col := strings.Index(line, " "+fields[1]) + 1
			if nameCol < 0 {
				nameCol = col
			}
			require.Equal(t, nameCol, col, "%q", line)
			if fields[0] != "skipped" {
				end := utf8.RuneCountInString(line)
				if durEnd < 0 {
					durEnd = end
				}
				require.Equal(t, durEnd, end, "%q", line)
			}
		}
	}
}

func TestHumanFormatColour(t *testing.T) {
	var b bytes.Buffer
	writeHuman(&b, sample(), true)
	out := b.String()
	require.Contains(t, out, ansiRed)
	require.Contains(t, out, ansiGreen)
	require.Contains(t, out, ansiYellow)
	var plain bytes.Buffer
	writeHuman(&plain, sample(), false)
	require.Equal(t, plain.String(), ansi.ReplaceAllString(out, ""), "colour changes no character or column")
}

func TestUseColour(t *testing.T) {
	t.Setenv("NO_COLOR", "")
	t.Setenv("TERM", "xterm")
	require.False(t, useColour(&bytes.Buffer{}))
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	require.NoError(t, err)
	defer f.Close()
	require.False(t, useColour(f), "a regular file is not a terminal")

	dev, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("skipped: %v", err)
	}
	defer dev.Close()
	require.True(t, useColour(dev), "a character device counts as a terminal")
	t.Setenv("NO_COLOR", "1")
	require.False(t, useColour(dev), "NO_COLOR turns colour off")
	t.Setenv("NO_COLOR", "")
	t.Setenv("TERM", "dumb")
	require.False(t, useColour(dev))
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0µs", 999: "0µs", 12 * time.Microsecond: "12µs", 1500 * time.Microsecond: "1.5ms",
		999 * time.Millisecond: "999.0ms", 2030 * time.Millisecond: "2.03s", 90 * time.Second: "90.00s",
	} {
		require.Equal(t, want, duration(d), d.String())
	}
}
