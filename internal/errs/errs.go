// Package errs defines every sentinel error and error type of the client,
// once, so that each stage of the pipeline can return them and the root
// package can re-export them under their public names.
package errs

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Client and option errors.
var (
	Closed        = errors.New("steadymqtt: client closed")
	NotConnected  = errors.New("steadymqtt: not connected")
	OutboxFull    = errors.New("steadymqtt: outbox full")
	InvalidTopic  = errors.New("steadymqtt: invalid topic")
	NotAuthorized = errors.New("steadymqtt: not authorized")
	InvalidOption = errors.New("steadymqtt: invalid option")
	// SubscriptionRefused: the broker answered a SUBSCRIBE with a failure.
	SubscriptionRefused = errors.New("steadymqtt: subscription refused by the broker")
)

// CONNACK refusals.
var (
	Refused            = errors.New("steadymqtt: connection refused by broker")
	BadProtocolVersion = errors.New("steadymqtt: broker refused the protocol version")
	IdentifierRejected = errors.New("steadymqtt: broker rejected the client identifier")
	ServerUnavailable  = errors.New("steadymqtt: broker unavailable")
	BadCredentials     = errors.New("steadymqtt: bad user name or password")
)

// Connection health and the retry loop.
var (
	KeepaliveTimeout = errors.New("steadymqtt: keepalive timeout")
	Degraded         = errors.New("steadymqtt: link degraded")
	ConnectTimeout   = errors.New("steadymqtt: connect timeout")
	GaveUp           = errors.New("steadymqtt: gave up connecting")
)

// Publish outcomes.
var (
	Dropped             = errors.New("steadymqtt: message dropped from a full outbox")
	PoisonMessage       = errors.New("steadymqtt: message rejected by the broker (it closed the connection after each send)")
	IdempotencyConflict = errors.New("steadymqtt: idempotency key already used for a different message")
	NotDelivered        = errors.New("steadymqtt: not delivered")
	PayloadTooLarge     = errors.New("steadymqtt: message too large for one MQTT packet")
)

// The durable outbox.
var (
	OutboxLocked  = errors.New("steadymqtt: durable outbox in use by another process")
	OutboxCorrupt = errors.New("steadymqtt: durable outbox damaged")
)

// Interface and source-address selection.
var (
	InterfaceNotFound    = errors.New("steadymqtt: interface not found")
	InterfaceDown        = errors.New("steadymqtt: interface administratively down")
	NoCarrier            = errors.New("steadymqtt: interface has no carrier")
	NoUsableAddress      = errors.New("steadymqtt: interface has no usable address of the wanted family")
	AddressNotAssignable = errors.New("steadymqtt: source address not assignable on this host")
	NoRoute              = errors.New("steadymqtt: no route to the broker from this interface or address")
	NetworkChanged       = errors.New("steadymqtt: local network changed")
)

// TLS handshake failures.
var (
	TLSUnknownAuthority  = errors.New("steadymqtt: TLS: broker certificate signed by an unknown authority")
	TLSNameMismatch      = errors.New("steadymqtt: TLS: broker certificate does not match the broker's name or address")
	TLSExpired           = errors.New("steadymqtt: TLS: broker certificate expired")
	TLSNotYetValid       = errors.New("steadymqtt: TLS: broker certificate not yet valid")
	TLSClientCertificate = errors.New("steadymqtt: TLS: client certificate required or rejected by the broker")
	TLSVersion           = errors.New("steadymqtt: TLS: no protocol version in common with the broker")
	TLSPinMismatch       = errors.New("steadymqtt: TLS: broker key does not match any pinned key")
	TLSFiles             = errors.New("steadymqtt: TLS: cannot load certificate files")
	TLSPlainPort         = errors.New("steadymqtt: TLS: the broker's port did not answer with TLS")
)

// Option builds the error of an invalid option.
func Option(name, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", InvalidOption, name, fmt.Sprintf(format, args...))
}

// ConnectRefusedError is a CONNACK with a non-zero return code.
type ConnectRefusedError struct {
	Code   byte
	Broker string // redacted URL
}

func (e *ConnectRefusedError) Error() string {
	msg := fmt.Sprintf("steadymqtt: %s refused the connection: %s (CONNACK code %d)",
		e.Broker, refusalText(e.Code), e.Code)
	if h := e.Hint(); h != "" {
		msg += "; " + h
	}
	return msg
}

// Hint says what to check for the refusal, "" when nothing useful can be
// said.
func (e *ConnectRefusedError) Hint() string {
	switch e.Code {
	case 1:
		return "the broker does not speak this MQTT version"
	case 2:
		return "check the client ID (length, characters; a persistent session needs one)"
	case 3:
		return "the broker is up but cannot serve clients now; it may be starting or overloaded"
	case 4:
		return "check the user name and password (WithCredentials)"
	case 5:
		// Mosquitto answers a wrong password with 5, not 4.
		return "check the user name and password (WithCredentials) and the broker's ACL for this client ID"
	}
	return ""
}

// Is lets errors.Is match the sentinel of the return code and Refused.
func (e *ConnectRefusedError) Is(target error) bool {
	switch target {
	case Refused:
		return true
	case BadProtocolVersion:
		return e.Code == 1
	case IdentifierRejected:
		return e.Code == 2
	case ServerUnavailable:
		return e.Code == 3
	case BadCredentials:
		return e.Code == 4
	case NotAuthorized:
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

// TLSError is a classified TLS failure.
type TLSError struct {
	Kind   error  // one of the TLS… sentinels
	Broker string // redacted URL
	Detail string // what was found, e.g. the certificate's names
	Hint   string // what to do about it, when there is something to say
	Err    error  // the error from crypto/tls or crypto/x509
}

func (e *TLSError) Error() string {
	msg := e.Kind.Error()
	if e.Broker != "" {
		msg += " (" + e.Broker + ")"
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

// Is matches the Kind.
func (e *TLSError) Is(target error) bool { return target == e.Kind }

// Unwrap returns the underlying crypto error.
func (e *TLSError) Unwrap() error { return e.Err }

// Candidate is one interface or address considered for an attempt and, if
// it was rejected, why.
type Candidate struct {
	Interface string
	Addr      netip.Addr // the source address chosen or rejected, if any
	Err       error      // nil for the one chosen
}

func (c Candidate) String() string {
	s := c.Interface
	if c.Addr.IsValid() {
		if s != "" {
			s += " "
		}
		s += c.Addr.String()
	}
	if c.Err != nil {
		s += ": " + strings.TrimPrefix(c.Err.Error(), "steadymqtt: ")
	}
	return s
}

// SelectionError says why no interface or address could be used, with
// every candidate considered.
type SelectionError struct {
	Candidates []Candidate
}

func (e *SelectionError) Error() string {
	parts := make([]string, len(e.Candidates))
	for i, c := range e.Candidates {
		parts[i] = c.String()
	}
	return "steadymqtt: no usable interface or address: " + strings.Join(parts, "; ")
}

// Unwrap lets errors.Is match the reason of any candidate.
func (e *SelectionError) Unwrap() []error {
	out := make([]error, 0, len(e.Candidates))
	for _, c := range e.Candidates {
		if c.Err != nil {
			out = append(out, c.Err)
		}
	}
	return out
}

// SourceError is a dial failure caused by the source side: the bound
// interface or address.
type SourceError struct {
	Kind error // InterfaceNotFound, AddressNotAssignable or NoRoute
	From string
	Err  error
}

func (e *SourceError) Error() string {
	return strings.TrimPrefix(e.Kind.Error(), "steadymqtt: ") + " (" + e.From + "): " + e.Err.Error()
}

// Is matches the Kind.
func (e *SourceError) Is(target error) bool { return target == e.Kind }

// Unwrap returns the dial error.
func (e *SourceError) Unwrap() error { return e.Err }

// CloseError is Close's error when messages were left undelivered.
type CloseError struct {
	NotDelivered int  // messages still waiting when the client stopped
	Durable      bool // they are on disk, to be sent by the next start
}

func (e *CloseError) Error() string {
	n := fmt.Sprintf("%d messages", e.NotDelivered)
	if e.NotDelivered == 1 {
		n = "1 message"
	}
	if e.Durable {
		return "steadymqtt: close: " + n + " not yet acknowledged; kept in the durable outbox for the next start"
	}
	return "steadymqtt: close: " + n + " not delivered (lost: the outbox is in memory)"
}

// Is makes errors.Is(err, NotDelivered) true.
func (e *CloseError) Is(target error) bool { return target == NotDelivered }
