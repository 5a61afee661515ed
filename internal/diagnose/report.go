package diagnose

import (
	"encoding/json"
	"fmt"
	"time"
)

// Status is how a step went.
type Status int

const (
	OK Status = iota
	Warning
	Failed
	Skipped
)

var statusNames = [...]string{"ok", "warning", "failed", "skipped"}

// String is "ok", "warning", "failed" or "skipped".
func (s Status) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// MarshalText writes the status by name, in JSON too.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Step is one step of a walk and what was found.
type Step struct {
	Name     string        // one of the errs.Step… names
	Status   Status        // OK, Warning, Failed, Skipped
	Duration time.Duration // how long the step took
	Cause    string        // on failed/warning: what is wrong, in plain words
	Hint     string        // what to check next
	Details  []string      // what was found: candidates, answers, names and dates, codes
	Err      error         // the error behind a failure, if any
}

// MarshalJSON writes the step with the field names of the JSON report
// (documented, stable): name, status, duration_ms, cause, hint, details,
// error.
func (s Step) MarshalJSON() ([]byte, error) {
	type out struct {
		Name       string   `json:"name"`
		Status     Status   `json:"status"`
		DurationMS float64  `json:"duration_ms"`
		Cause      string   `json:"cause,omitempty"`
		Hint       string   `json:"hint,omitempty"`
		Details    []string `json:"details,omitempty"`
		Error      string   `json:"error,omitempty"`
	}
	o := out{Name: s.Name, Status: s.Status, DurationMS: float64(s.Duration.Microseconds()) / 1000,
		Cause: s.Cause, Hint: s.Hint, Details: s.Details}
	if s.Err != nil {
		o.Error = s.Err.Error()
	}
	return json.Marshal(o)
}

// Report is the walk to one broker.
type Report struct {
	Broker string `json:"broker"` // redacted URL
	OK     bool   `json:"ok"`     // no step failed (warnings allowed)
	Steps  []Step `json:"steps"`
}

// Failed is the first failed step, or nil.
func (r *Report) Failed() *Step {
	for i := range r.Steps {
		if r.Steps[i].Status == Failed {
			return &r.Steps[i]
		}
	}
	return nil
}

// Step returns the step of that name, or nil.
func (r *Report) Step(name string) *Step {
	for i := range r.Steps {
		if r.Steps[i].Name == name {
			return &r.Steps[i]
		}
	}
	return nil
}

// Diagnosis is one Report per broker, in the order given.
type Diagnosis struct {
	OK      bool     `json:"ok"` // every report is OK
	Reports []Report `json:"reports"`
}
