package errs

import (
	"errors"
	"fmt"
	"strings"
)

// The steps of a connection, in the order an attempt takes them. A
// diagnosis walks them one by one; every connection error the client
// reports names the one it failed at.
const (
	StepInterface = "interface" // the NIC: exists, up, carrier
	StepAddress   = "address"   // a source address of the wanted family
	StepDNS       = "dns"       // the broker's name
	StepRoute     = "route"     // a route from the source to the broker
	StepTCP       = "tcp"       // the TCP connection
	StepTLS       = "tls"       // the TLS handshake
	StepWebSocket = "websocket" // the WebSocket upgrade (ws://, wss://)
	StepConnect   = "connect"   // MQTT CONNECT / CONNACK
	StepRoundTrip = "roundtrip" // a message through the broker and back
	StepKeepalive = "keepalive" // PINGREQ / PINGRESP
	// Where a connection that was accepted ended.
	StepSubscribe = "subscribe" // the broker closed it after a SUBSCRIBE
	StepPublish   = "publish"   // the broker closed it right after a PUBLISH
	StepConnected = "connected" // lost later, for another reason
)

// StepError is a connection error with the step it happened at.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string {
	if e.Err == nil {
		return "steadymqtt: [" + e.Step + "] failed"
	}
	return fmt.Sprintf("steadymqtt: [%s] %s", e.Step, strings.TrimPrefix(e.Err.Error(), "steadymqtt: "))
}

func (e *StepError) Unwrap() error { return e.Err }

// AtStep wraps err with step, unless it already names one (the innermost
// stage that knew better wins) or is nil.
func AtStep(step string, err error) error {
	if err == nil {
		return nil
	}
	var se *StepError
	if errors.As(err, &se) {
		return err
	}
	return &StepError{Step: step, Err: err}
}

// StepOf is the step err names, "" when none.
func StepOf(err error) string {
	var se *StepError
	if errors.As(err, &se) {
		return se.Step
	}
	return ""
}
