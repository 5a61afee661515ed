package steadymqtt

import (
	"github.com/steadymqtt/steadymqtt/internal/errs"
)

// Every error the client returns, in one place. Match them with errors.Is;
// the error types with errors.As (var e *steadymqtt.TLSError).
var (
	// ErrClosed is returned by calls made after Close.
	ErrClosed = errs.Closed
	// ErrNotConnected is returned when an operation needs a live connection
	// and the client has none (a QoS 0 publish while offline).
	ErrNotConnected = errs.NotConnected
	// ErrInvalidOption is wrapped by every error New returns for a bad
	// option, and by Publish and Subscribe for a bad argument.
	ErrInvalidOption = errs.InvalidOption
	// ErrInvalidTopic is returned for a topic or filter that MQTT forbids.
	ErrInvalidTopic = errs.InvalidTopic
	// ErrSubscriptionRefused is returned by Subscribe when the broker
	// refused the filter (SUBACK failure code); it is not registered.
	ErrSubscriptionRefused = errs.SubscriptionRefused
)

// Connection refusals: a *ConnectRefusedError matches ErrRefused and the
// sentinel of its return code.
var (
	// ErrRefused matches every CONNACK refusal.
	ErrRefused = errs.Refused
	// ErrNotAuthorized matches CONNACK refusals 4 (bad user name or
	// password) and 5 (not authorized).
	ErrNotAuthorized = errs.NotAuthorized
	// ErrBadProtocolVersion is CONNACK return code 1.
	ErrBadProtocolVersion = errs.BadProtocolVersion
	// ErrIdentifierRejected is CONNACK return code 2: the client ID is not
	// allowed (too long, bad characters, or empty with a persistent session).
	ErrIdentifierRejected = errs.IdentifierRejected
	// ErrServerUnavailable is CONNACK return code 3.
	ErrServerUnavailable = errs.ServerUnavailable
	// ErrBadCredentials is CONNACK return code 4; it also matches
	// ErrNotAuthorized.
	ErrBadCredentials = errs.BadCredentials
)

// Connection health and the retry loop.
var (
	// ErrKeepaliveTimeout is the cause of a loss detected by the client:
	// nothing came from the broker, not even a PINGRESP, in time.
	ErrKeepaliveTimeout = errs.KeepaliveTimeout
	// ErrDegraded is the reason given when the client enters
	// StateDegraded: a keepalive answer is overdue or slow.
	ErrDegraded = errs.Degraded
	// ErrConnectTimeout is an attempt that did not finish within the
	// connect timeout.
	ErrConnectTimeout = errs.ConnectTimeout
	// ErrGaveUp is the final error when the configured backoff returned
	// backoff.Stop: the client stops trying and closes.
	ErrGaveUp = errs.GaveUp
)

// Publish outcomes.
var (
	// ErrOutboxFull is returned when a publish cannot be queued because the
	// outbox is at its limit.
	ErrOutboxFull = errs.OutboxFull
	// ErrDropped: the message was pushed out of a full outbox by a newer
	// one (WithDropOldest).
	ErrDropped = errs.Dropped
	// ErrPoisonMessage: the broker closed the connection right after this
	// message each time it was sent (a broker that cannot take its QoS, a
	// payload over its limit, an ACL that disconnects); it was taken out of
	// the outbox so the connection can settle.
	ErrPoisonMessage = errs.PoisonMessage
	// ErrIdempotencyConflict: the idempotency key was used, pending or
	// within the window, for a message with another topic, payload, QoS or
	// retain flag. Nothing was sent.
	ErrIdempotencyConflict = errs.IdempotencyConflict
	// ErrNotDelivered is reported by Close for what the outbox still held,
	// and by a Publish whose message was still waiting when the client closed.
	ErrNotDelivered = errs.NotDelivered
	// ErrPayloadTooLarge: the message cannot be one MQTT packet (the
	// remaining length tops out at 268,435,455 bytes) or is over
	// WithMaxPacketSize. It is refused before anything is queued, copied or
	// sent.
	ErrPayloadTooLarge = errs.PayloadTooLarge
)

// The durable outbox (WithDurableOutbox), reported by New.
var (
	// ErrOutboxLocked: another process has the outbox directory open.
	ErrOutboxLocked = errs.OutboxLocked
	// ErrOutboxCorrupt: the outbox file is damaged (a half-written page, a
	// flash card gone bad, a record that does not read back). Nothing was
	// changed on disk; WithOutboxSalvage moves the file aside and starts
	// with what could be read.
	ErrOutboxCorrupt = errs.OutboxCorrupt
)

// Interface and source-address selection; a *SelectionError matches the
// errors of its candidates, a dial failure on the source side matches one
// of ErrAddressNotAssignable, ErrNoRoute and ErrInterfaceNotFound.
var (
	ErrInterfaceNotFound    = errs.InterfaceNotFound
	ErrInterfaceDown        = errs.InterfaceDown
	ErrNoCarrier            = errs.NoCarrier
	ErrNoUsableAddress      = errs.NoUsableAddress
	ErrAddressNotAssignable = errs.AddressNotAssignable
	ErrNoRoute              = errs.NoRoute
	// ErrNetworkChanged is the cause of a connection the client dropped
	// because its interface or address went away, or to fail back to a
	// preferred interface. The next attempt starts without a backoff wait.
	ErrNetworkChanged = errs.NetworkChanged
)

// TLS handshake failures. The error that carries one of them is a
// *TLSError whose message says what was found (the certificate's names,
// its dates).
var (
	// ErrTLSUnknownAuthority: the broker's certificate does not chain to a
	// trusted CA (wrong or missing CA bundle).
	ErrTLSUnknownAuthority = errs.TLSUnknownAuthority
	// ErrTLSNameMismatch: the certificate is valid but not for the host
	// name or IP address the client dialled (a broker reached by IP whose
	// certificate has no IP SAN; see WithServerName).
	ErrTLSNameMismatch = errs.TLSNameMismatch
	// ErrTLSExpired: the broker's certificate is past its NotAfter date.
	ErrTLSExpired = errs.TLSExpired
	// ErrTLSNotYetValid: the broker's certificate is before its NotBefore
	// date (often a gateway whose clock has not been set yet).
	ErrTLSNotYetValid = errs.TLSNotYetValid
	// ErrTLSClientCertificate: the broker required a client certificate and
	// got none, or rejected the one it got.
	ErrTLSClientCertificate = errs.TLSClientCertificate
	// ErrTLSVersion: client and broker have no TLS version in common.
	ErrTLSVersion = errs.TLSVersion
	// ErrTLSPinMismatch: no certificate of the chain has a pinned key.
	ErrTLSPinMismatch = errs.TLSPinMismatch
	// ErrTLSFiles: a CA bundle or client certificate file could not be read
	// or parsed.
	ErrTLSFiles = errs.TLSFiles
	// ErrTLSPlainPort: the broker's port did not answer the handshake with
	// TLS (a plain-text MQTT port closes on a ClientHello, a web server
	// answers in HTTP): a TLS URL pointed at the wrong port.
	ErrTLSPlainPort = errs.TLSPlainPort
)

// The steps of a connection, in the order an attempt takes them. A
// Diagnosis reports one Step per step it walked; every connection error the
// client reports (Connect's, Event.Err, Health.LastError) is a *StepError
// naming the one it failed at.
const (
	StepInterface = errs.StepInterface // the NIC: exists, up, carrier
	StepAddress   = errs.StepAddress   // a source address of the wanted family
	StepDNS       = errs.StepDNS       // the broker's host name
	StepRoute     = errs.StepRoute     // a route from the source to the broker
	StepTCP       = errs.StepTCP       // the TCP connection
	StepTLS       = errs.StepTLS       // the TLS handshake and the broker's certificate
	StepWebSocket = errs.StepWebSocket // the WebSocket upgrade (ws://, wss://)
	StepConnect   = errs.StepConnect   // MQTT CONNECT and its CONNACK
	StepRoundTrip = errs.StepRoundTrip // a message through the broker and back
	StepKeepalive = errs.StepKeepalive // PINGREQ and PINGRESP
	// Where an accepted connection ended.
	StepSubscribe = errs.StepSubscribe // the broker closed it after a SUBSCRIBE (restoring subscriptions)
	StepPublish   = errs.StepPublish   // the broker closed it right after a PUBLISH
	StepConnected = errs.StepConnected // lost later, for another reason
)

// StepError is a connection error and the step it happened at: match it
// with errors.As (var se *steadymqtt.StepError); Err is the cause, which
// errors.Is sees through.
type StepError = errs.StepError

// ConnectRefusedError is a CONNACK with a non-zero return code (Code) from
// Broker (redacted URL).
type ConnectRefusedError = errs.ConnectRefusedError

// ReasonCodeError is an MQTT 5 reason code of 0x80 or more from a CONNACK,
// SUBACK, PUBACK, PUBREC, PUBCOMP or a server's DISCONNECT (Packet), with
// the broker's reason string. It matches the sentinels of 3.1.1:
// errors.Is(err, ErrNotAuthorized) for 0x87 (and 0x86 on CONNACK),
// ErrBadCredentials for 0x86, ErrPayloadTooLarge for 0x95, and so on.
// A Publish the broker refused returns it: the message is not sent again.
type ReasonCodeError = errs.ReasonCodeError

// CloseError is what Close returns when messages were left: how many, and
// whether they are on disk (WithDurableOutbox) for the next start. It
// matches ErrNotDelivered.
type CloseError = errs.CloseError

// TLSError is a classified TLS failure: Kind is one of the ErrTLS…
// values, Detail says what was found, Err is the crypto error.
type TLSError = errs.TLSError

// SelectionError says why no interface or address could be used, with
// every Candidate considered.
type SelectionError = errs.SelectionError

// Candidate is one interface or address considered for an attempt and, if
// it was rejected, why (Err).
type Candidate = errs.Candidate

func optionError(name, format string, args ...any) error {
	return errs.Option(name, format, args...)
}
