package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/steadymqtt/steadymqtt"
)

// The human report: per broker a header with the broker and OK or FAILED,
// then one line per step (status, name, duration) in aligned columns, with
// the cause, the hint and the details indented under it; a failure ends
// with "failed at step <name>: <cause>".
//
//	tcp://127.0.0.1:1883  FAILED
//	  skipped  interface  no interface named (WithInterfaces): the kernel's routing table chooses
//	  ok       dns          3µs
//	           127.0.0.1 is an address: nothing to resolve
//	  failed   tcp        201µs
//	           cause: connection refused: nothing listens on 127.0.0.1:1883
//	           hint:  is the broker running, and is this its port (MQTT 1883, MQTT over TLS 8883)?
//	           127.0.0.1:1883: connection refused: nothing listens on 127.0.0.1:1883
//	  skipped  tls        not tried: the tcp step failed
//	  …
//	failed at step tcp: connection refused: nothing listens on 127.0.0.1:1883
//
// A skipped step has no duration; why it was skipped stands on its line.

// ANSI colours, used only on a terminal and never with NO_COLOR.
const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiDim    = "\x1b[2m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
)

// useColour: w is a terminal, and neither NO_COLOR (https://no-color.org)
// nor TERM=dumb says otherwise.
func useColour(w io.Writer) bool {
	if os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

type painter bool

func (p painter) paint(code, s string) string {
	if !p || code == "" {
		return s
	}
	return code + s + ansiReset
}

func statusColour(s steadymqtt.StepStatus) string {
	switch s {
	case steadymqtt.StepOK:
		return ansiGreen
	case steadymqtt.StepWarning:
		return ansiYellow
	case steadymqtt.StepFailed:
		return ansiRed + ansiBold
	case steadymqtt.StepSkipped:
		return ansiDim
	}
	return ""
}

// writeHuman writes the diagnosis for people, with colour when colour is
// true.
func writeHuman(w io.Writer, d steadymqtt.Diagnosis, colour bool) {
	p := painter(colour)
	for i, r := range d.Reports {
		if i > 0 {
			fmt.Fprintln(w)
		}
		writeReport(w, r, p)
	}
	for _, r := range d.Reports {
		f := firstFailed(r)
		if f == nil {
			continue
		}
		line := fmt.Sprintf("failed at step %s: %s", f.Name, f.Cause)
		if len(d.Reports) > 1 {
			line += " (" + r.Broker + ")"
		}
		fmt.Fprintln(w, p.paint(ansiRed, line))
	}
}

func writeReport(w io.Writer, r steadymqtt.Report, p painter) {
	verdict := p.paint(ansiGreen+ansiBold, "OK")
	if !r.OK {
		verdict = p.paint(ansiRed+ansiBold, "FAILED")
	} else if n := count(r, steadymqtt.StepWarning); n > 0 {
		verdict += fmt.Sprintf(" (%d %s)", n, plural(n, "warning", "warnings"))
	}
	fmt.Fprintf(w, "%s  %s\n", r.Broker, verdict)

	statusW, nameW, durW := 0, 0, 0
	durs := make([]string, len(r.Steps))
	for i, s := range r.Steps {
		statusW = max(statusW, width(s.Status.String()))
		nameW = max(nameW, width(s.Name))
		if s.Status != steadymqtt.StepSkipped {
			durs[i] = duration(s.Duration)
			durW = max(durW, width(durs[i]))
		}
	}
	indent := strings.Repeat(" ", 2+statusW+2)
	for i, s := range r.Steps {
		line := "  " + p.paint(statusColour(s.Status), padRight(s.Status.String(), statusW)) +
			"  " + padRight(s.Name, nameW)
		if s.Status == steadymqtt.StepSkipped {
			// No duration; the reason it was skipped fits on the line.
			fmt.Fprintln(w, strings.TrimRight(line+"  "+p.paint(ansiDim, skipReason(s)), " "))
			continue
		}
		if durW > 0 {
			line += "  " + padLeft(durs[i], durW)
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
		if s.Cause != "" {
			fmt.Fprintf(w, "%scause: %s\n", indent, s.Cause)
		}
		if s.Hint != "" {
			fmt.Fprintf(w, "%shint:  %s\n", indent, s.Hint)
		}
		for _, d := range s.Details {
			fmt.Fprintf(w, "%s%s\n", indent, d)
		}
	}
}

// skipReason is why a step was skipped: an earlier failure (the cause) or
// nothing to do (the details).
func skipReason(s steadymqtt.Step) string {
	parts := s.Details
	if s.Cause != "" {
		parts = append([]string{s.Cause}, parts...)
	}
	return strings.Join(parts, "; ")
}

func firstFailed(r steadymqtt.Report) *steadymqtt.Step {
	for i := range r.Steps {
		if r.Steps[i].Status == steadymqtt.StepFailed {
			return &r.Steps[i]
		}
	}
	return nil
}

func count(r steadymqtt.Report, st steadymqtt.StepStatus) int {
	n := 0
	for _, s := range r.Steps {
		if s.Status == st {
			n++
		}
	}
	return n
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// duration is short and of a steady precision: 12µs, 1.5ms, 2.03s.
func duration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0µs"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// width counts characters, not bytes: "µs" is two wide.
func width(s string) int { return utf8.RuneCountInString(s) }

func padRight(s string, n int) string { return s + strings.Repeat(" ", max(0, n-width(s))) }

func padLeft(s string, n int) string { return strings.Repeat(" ", max(0, n-width(s))) + s }
