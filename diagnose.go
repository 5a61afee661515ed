package steadymqtt

import (
	"context"

	"github.com/steadymqtt/steadymqtt/internal/diagnose"
	"github.com/steadymqtt/steadymqtt/internal/engine/paho5"
	"github.com/steadymqtt/steadymqtt/internal/manager"
)

// A diagnosis walks one connection to each broker step by step, with the
// client's own stages and options (internal/diagnose): interface, address,
// DNS, route, TCP, TLS, CONNECT, a QoS 1 round trip on a topic of its own,
// one keepalive. It names the step that fails, why in plain words, and what
// to check next.

// Diagnosis is one Report per broker URL, in the order given. OK is true
// when no step of any report failed (warnings allowed). It marshals to the
// JSON of cmd/mqttdoctor -json.
type Diagnosis = diagnose.Diagnosis

// Report is the walk to one broker (Broker is the redacted URL).
type Report = diagnose.Report

// Step is one step of a walk: Name (a Step… constant), Status, Duration,
// and, on failure or warning, Cause (what is wrong, in plain words) and
// Hint (what to check next); Details lists what was found (the candidates
// and why each was rejected, every DNS answer, the certificate's names and
// dates, the CONNACK, the round trip's times); Err is the error behind a
// failure.
type Step = diagnose.Step

// StepStatus is how a step went; String gives "ok", "warning", "failed"
// or "skipped".
type StepStatus = diagnose.Status

// The outcomes of a step. A step after a failed one is skipped; a step that
// does not apply (no interface named, a plain-text URL's TLS) is skipped
// too, with a detail that says why.
const (
	StepOK      = diagnose.OK
	StepWarning = diagnose.Warning
	StepFailed  = diagnose.Failed
	StepSkipped = diagnose.Skipped
)

// StepOptions is the step of a report made when the options themselves
// are invalid: nothing could be walked.
const StepOptions = "options"

// Diagnose walks a connection to each broker with the options New takes
// (brokers, interfaces or source address, TLS, credentials, client ID,
// timeouts), without starting a client. Each network step is bounded by the
// connect timeout; ctx bounds the whole walk. The walk connects with a
// client ID of its own (the given one and "-diagnose-…") and a clean
// session, so a running client with that ID is not disturbed. Passwords
// appear nowhere in the result.
func Diagnose(ctx context.Context, opts ...Option) Diagnosis {
	cfg, err := newConfig(opts)
	if err != nil {
		return optionsFailed(err)
	}
	return cfg.diagnose(ctx)
}

// Diagnose walks a connection to each of the client's brokers with its
// configuration, beside the running connection, which it leaves alone.
func (c *Client) Diagnose(ctx context.Context) Diagnosis { return c.cfg.diagnose(ctx) }

// diagnose walks with an MQTT 5 engine of its own: the client's keeps the
// state of its live session.
func (c *config) diagnose(ctx context.Context) Diagnosis {
	dc := diagnose.Config{Client: c.dialConfig(), Pick: c.pickConfig()}
	dc.Client.Learned = &manager.Learned{}
	if c.protocol != ProtocolV311 {
		v5 := paho5.New()
		defer v5.Close()
		dc.Client.EngineV5 = v5
	}
	return diagnose.Run(ctx, dc)
}

func optionsFailed(err error) Diagnosis {
	return Diagnosis{Reports: []Report{{Steps: []Step{{
		Name: StepOptions, Status: StepFailed, Err: err, Cause: err.Error(), Hint: "fix the option named in the error",
	}}}}}
}
