package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
)

// row is one line of the table: the samples of each library (one per
// round; the median is shown), or a text in place of a figure.
type row struct {
	figure       string
	unit         string
	digits       int // decimals shown
	paho, steady []float64
	pahoText     string // shown instead of the paho figure ("—": not applicable)
	steadyText   string
	target       string
	// met says whether steadymqtt's median s meets the target, given
	// paho's median p; nil when there is no target to check.
	met func(p, s float64) bool
}

func (r *row) value(samples []float64, text string) (float64, string) {
	if text != "" {
		return math.NaN(), text
	}
	if len(samples) == 0 {
		return math.NaN(), "—"
	}
	m := median(samples)
	s := formatNumber(m, r.digits)
	if r.unit != "" {
		s += " " + r.unit
	}
	if len(samples) > 1 {
		lo, hi := minMax(samples)
		if hi > lo {
			s += fmt.Sprintf(" (%s–%s)", formatNumber(lo, r.digits), formatNumber(hi, r.digits))
		}
	}
	return m, s
}

func formatNumber(v float64, digits int) string {
	switch {
	case math.IsInf(v, 1):
		return "∞"
	case math.Abs(v) >= 10000 && digits == 0:
		return fmt.Sprintf("%.1fk", v/1000)
	}
	return fmt.Sprintf("%.*f", digits, v)
}

// printTable writes the rows as a Markdown table.
func printTable(w io.Writer, rows []*row) {
	fmt.Fprintln(w, "| figure | raw paho | steadymqtt | steadymqtt / paho | target | |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, r := range rows {
		p, ps := r.value(r.paho, r.pahoText)
		s, ss := r.value(r.steady, r.steadyText)
		ratio := "—"
		// A ratio to a figure that shows as zero says nothing.
		if !math.IsNaN(p) && !math.IsNaN(s) && !math.IsInf(p, 0) && !math.IsInf(s, 0) &&
			strings.Trim(formatNumber(p, r.digits), "0.") != "" {
			ratio = fmt.Sprintf("%.2f×", s/p)
		}
		verdict := ""
		if r.met != nil && !math.IsNaN(s) {
			verdict = "missed"
			if r.met(p, s) {
				verdict = "met"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", r.figure, ps, ss, ratio, r.target, verdict)
	}
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func minMax(v []float64) (float64, float64) {
	lo, hi := v[0], v[0]
	for _, x := range v {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	return lo, hi
}

// Targets, as functions of paho's median p and steadymqtt's s.
func atMost(limit float64) func(p, s float64) bool {
	return func(_, s float64) bool { return s <= limit }
}
func atMostTimes(f float64) func(p, s float64) bool {
	return func(p, s float64) bool { return !math.IsNaN(p) && s <= p*f }
}
func atLeastTimes(f float64) func(p, s float64) bool {
	return func(p, s float64) bool { return !math.IsNaN(p) && s >= p*f }
}
func atMostPlus(d float64) func(p, s float64) bool {
	return func(p, s float64) bool { return !math.IsNaN(p) && s <= p+d }
}

// skipped fills a row whose measurement could not run.
func skipped(r *row, why string) *row {
	r.pahoText, r.steadyText = "skipped", "skipped: "+why
	return r
}

// joinNotes is for the lines printed under the table.
func joinNotes(notes []string) string {
	if len(notes) == 0 {
		return ""
	}
	return "- " + strings.Join(notes, "\n- ") + "\n"
}
