package errs

import "fmt"

// ReasonCodeError is an MQTT 5 reason code of 0x80 or more, from a CONNACK,
// SUBACK, UNSUBACK, PUBACK, PUBREC, PUBCOMP or DISCONNECT, with the reason
// string the broker gave (often empty).
type ReasonCodeError struct {
	Code   byte
	Reason string // the broker's reason string, if any
	Packet string // "CONNACK", "PUBACK", ...
	Broker string // redacted URL, when known
}

func (e *ReasonCodeError) Error() string {
	msg := fmt.Sprintf("steadymqtt: %s reason code 0x%02X (%s)", e.Packet, e.Code, ReasonText(e.Code))
	if e.Broker != "" {
		msg = fmt.Sprintf("steadymqtt: %s: %s reason code 0x%02X (%s)", e.Broker, e.Packet, e.Code, ReasonText(e.Code))
	}
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	if h := e.Hint(); h != "" {
		msg += "; " + h
	}
	return msg
}

// Hint says what to check for a refused connection, "" otherwise.
func (e *ReasonCodeError) Hint() string {
	if e.Packet != "CONNACK" {
		return ""
	}
	switch e.Code {
	case 0x86, 0x87: // Mosquitto answers a wrong password with 0x87
		return "check the user name and password (WithCredentials) and the broker's ACL for this client ID"
	case 0x85:
		return "check the client ID (length, characters)"
	case 0x84:
		return "the broker does not speak MQTT 5: use ProtocolAuto or ProtocolV311"
	case 0x88, 0x89:
		return "the broker is up but cannot serve clients now; it may be starting or overloaded"
	case 0x9C, 0x9D:
		return "the broker sends its clients to another server"
	}
	return ""
}

// Is matches the sentinels that MQTT 3.1.1 users already match: a v5
// refusal means the same as its 3.1.1 counterpart.
func (e *ReasonCodeError) Is(target error) bool {
	switch target {
	case NotAuthorized:
		return e.Code == 0x87 || (e.Packet == "CONNACK" && e.Code == 0x86)
	case BadCredentials:
		return e.Packet == "CONNACK" && e.Code == 0x86
	case BadProtocolVersion:
		return e.Packet == "CONNACK" && e.Code == 0x84
	case IdentifierRejected:
		return e.Packet == "CONNACK" && e.Code == 0x85
	case ServerUnavailable:
		return e.Packet == "CONNACK" && (e.Code == 0x88 || e.Code == 0x89)
	case Refused:
		return e.Packet == "CONNACK"
	case SubscriptionRefused:
		return e.Packet == "SUBACK"
	case PayloadTooLarge:
		return e.Code == 0x95
	}
	return false
}

// ReasonText is the MQTT 5 name of a reason code (section 2.4).
func ReasonText(code byte) string {
	if t, ok := reasonTexts[code]; ok {
		return t
	}
	return "unknown reason"
}

var reasonTexts = map[byte]string{
	0x00: "success", 0x01: "granted QoS 1", 0x02: "granted QoS 2", 0x04: "disconnect with will message",
	0x10: "no matching subscribers", 0x11: "no subscription existed", 0x18: "continue authentication",
	0x19: "re-authenticate", 0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
	0x83: "implementation specific error", 0x84: "unsupported protocol version", 0x85: "client identifier not valid",
	0x86: "bad user name or password", 0x87: "not authorized", 0x88: "server unavailable", 0x89: "server busy",
	0x8A: "banned", 0x8B: "server shutting down", 0x8C: "bad authentication method", 0x8D: "keep alive timeout",
	0x8E: "session taken over", 0x8F: "topic filter invalid", 0x90: "topic name invalid",
	0x91: "packet identifier in use", 0x92: "packet identifier not found", 0x93: "receive maximum exceeded",
	0x94: "topic alias invalid", 0x95: "packet too large", 0x96: "message rate too high", 0x97: "quota exceeded",
	0x98: "administrative action", 0x99: "payload format invalid", 0x9A: "retain not supported",
	0x9B: "QoS not supported", 0x9C: "use another server", 0x9D: "server moved",
	0x9E: "shared subscriptions not supported", 0x9F: "connection rate exceeded", 0xA0: "maximum connect time",
	0xA1: "subscription identifiers not supported", 0xA2: "wildcard subscriptions not supported",
}
