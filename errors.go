package steadymqtt

import (
	"errors"
	"fmt"
)

// Errors that callers can match with errors.Is.
var (
	// ErrClosed is returned by calls made after Close.
	ErrClosed = errors.New("steadymqtt: client closed")
	// ErrNotConnected is returned when an operation needs a live connection
	// and the client has none.
	ErrNotConnected = errors.New("steadymqtt: not connected")
	// ErrOutboxFull is returned when a publish cannot be queued because the
	// outbox is at its limit.
	ErrOutboxFull = errors.New("steadymqtt: outbox full")
	// ErrInvalidTopic is returned for a topic or filter that MQTT forbids.
	ErrInvalidTopic = errors.New("steadymqtt: invalid topic")
	// ErrNotAuthorized matches CONNACK refusals 4 (bad user name or
	// password) and 5 (not authorized).
	ErrNotAuthorized = errors.New("steadymqtt: not authorized")

	// ErrInvalidOption is wrapped by every error New returns for a bad option.
	ErrInvalidOption = errors.New("steadymqtt: invalid option")

	// ErrRefused matches every CONNACK refusal; the more precise errors
	// below match the individual return codes.
	ErrRefused = errors.New("steadymqtt: connection refused by broker")
	// ErrBadProtocolVersion is CONNACK return code 1.
	ErrBadProtocolVersion = errors.New("steadymqtt: broker refused the protocol version")
	// ErrIdentifierRejected is CONNACK return code 2: the client ID is not
	// allowed (too long, bad characters, or empty with a persistent session).
	ErrIdentifierRejected = errors.New("steadymqtt: broker rejected the client identifier")
	// ErrServerUnavailable is CONNACK return code 3.
	ErrServerUnavailable = errors.New("steadymqtt: broker unavailable")
	// ErrBadCredentials is CONNACK return code 4; it also matches
	// ErrNotAuthorized.
	ErrBadCredentials = errors.New("steadymqtt: bad user name or password")

	// ErrKeepaliveTimeout is the cause of a loss detected by the client:
	// nothing came from the broker, not even a PINGRESP, for a keepalive
	// period.
	ErrKeepaliveTimeout = errors.New("steadymqtt: keepalive timeout")
	// ErrDegraded is the reason given when the client enters
	// StateDegraded: a keepalive answer is overdue or slow.
	ErrDegraded = errors.New("steadymqtt: link degraded")
	// ErrConnectTimeout is an attempt that did not finish within the
	// connect timeout.
	ErrConnectTimeout = errors.New("steadymqtt: connect timeout")
	// ErrGaveUp is the final error when the configured backoff returned
	// backoff.Stop: the client stops trying and closes.
	ErrGaveUp = errors.New("steadymqtt: gave up reconnecting")
)

// ConnectRefusedError is a CONNACK with a non-zero return code.
type ConnectRefusedError struct {
	Code   byte
	Broker string // redacted URL
}

func (e *ConnectRefusedError) Error() string {
	return fmt.Sprintf("steadymqtt: %s refused the connection: %s (CONNACK code %d)",
		e.Broker, refusalText(e.Code), e.Code)
}

// Is lets errors.Is match the sentinel of the return code and ErrRefused.
func (e *ConnectRefusedError) Is(target error) bool {
	switch target {
	case ErrRefused:
		return true
	case ErrBadProtocolVersion:
		return e.Code == 1
	case ErrIdentifierRejected:
		return e.Code == 2
	case ErrServerUnavailable:
		return e.Code == 3
	case ErrBadCredentials:
		return e.Code == 4
	case ErrNotAuthorized:
		return e.Code == 4 || e.Code == 5
	}
	return false
}

func refusalText(code byte) string {
	switch code {
	case 1:
		return "unacceptable protocol version"
	case 2:
		return "identifier rejected"
	case 3:
		return "server unavailable"
	case 4:
		return "bad user name or password"
	case 5:
		return "not authorized"
	}
	return "unknown return code"
}

func optionError(name, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidOption, name, fmt.Sprintf(format, args...))
}
