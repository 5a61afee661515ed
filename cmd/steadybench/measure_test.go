package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestLargestBurst(t *testing.T) {
	for _, c := range []struct {
		at   []float64
		want int
	}{
		{nil, 0},
		{[]float64{1}, 1},
		{[]float64{0, 0.05, 0.1, 0.3}, 3},
		{[]float64{0, 0.2, 0.4, 0.45, 0.5, 0.58, 2}, 3},
	} {
		if got := largestBurst(c.at, 0.1); got != c.want {
			t.Errorf("largestBurst(%v) = %d, want %d", c.at, got, c.want)
		}
	}
}

func TestMedian(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median = %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median = %v", m)
	}
}

// The bounded policy never waits longer than factor × the outage so far
// (nor than initial at first), and grows to max on a long outage.
func TestOutageBoundedWaits(t *testing.T) {
	o := &outageBounded{initial: time.Second, max: 2 * time.Minute, factor: 2}
	for range 1000 {
		o.Reset()
		if w := o.NextBackOff(); w > time.Second {
			t.Fatalf("first wait %v > initial", w)
		}
	}
	o.Reset()
	o.NextBackOff()
	o.since = time.Now().Add(-3 * time.Second) // three seconds into the outage
	for range 5 {
		if w := o.NextBackOff(); w > 6*time.Second+100*time.Millisecond {
			t.Fatalf("wait %v beyond twice the outage so far", w)
		}
	}
	o.since = time.Now().Add(-time.Hour)
	longest := time.Duration(0)
	for range 2000 {
		longest = max(longest, o.NextBackOff())
	}
	if longest <= time.Minute || longest > 2*time.Minute {
		t.Fatalf("a long outage should meet waits up to the cap, got at most %v", longest)
	}
}

func TestDecorrelatedStaysWithinBounds(t *testing.T) {
	d := &decorrelated{base: time.Second, max: 2 * time.Minute}
	prev := time.Second
	for range 1000 {
		w := d.NextBackOff()
		if w < time.Second || w > min(3*prev, 2*time.Minute) {
			t.Fatalf("wait %v outside [1 s, 3 × %v]", w, prev)
		}
		prev = w
	}
}

func TestRatioOfAZeroFigureIsNotShown(t *testing.T) {
	r := &row{digits: 1, unit: "s", paho: []float64{0.01}, steady: []float64{5}}
	p, _ := r.value(r.paho, "")
	if math.IsNaN(p) {
		t.Fatal("no paho median")
	}
	var sb strings.Builder
	printTable(&sb, []*row{r})
	if want := "| — |"; !strings.Contains(sb.String(), want) {
		t.Fatalf("ratio to 0.0 shown: %s", sb.String())
	}
}
