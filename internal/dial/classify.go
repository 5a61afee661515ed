package dial

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/steadymqtt/steadymqtt/internal/errs"
)

// classifyTLS turns a handshake failure, or a TLS alert received right
// after it (TLS 1.3 servers reject a client certificate after the client's
// handshake has completed), into a *TLSError. It returns nil for errors
// that are not about TLS.
func classifyTLS(err error, broker string) error {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		op       *net.OpError
	)
	switch {
	case errors.Is(err, errs.TLSPinMismatch):
		return &errs.TLSError{Kind: errs.TLSPinMismatch, Broker: broker, Err: err}
	case errors.As(err, &unknown):
		d := ""
		if unknown.Cert != nil {
			d = fmt.Sprintf("certificate %q issued by %q", unknown.Cert.Subject.CommonName, unknown.Cert.Issuer.CommonName)
		}
		return &errs.TLSError{Kind: errs.TLSUnknownAuthority, Broker: broker, Detail: d, Err: err}
	case errors.As(err, &hostname):
		return &errs.TLSError{Kind: errs.TLSNameMismatch, Broker: broker, Detail: certNames(hostname.Certificate, hostname.Host), Err: err}
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		crt, now := invalid.Cert, time.Now().UTC()
		kind, d := errs.TLSExpired, ""
		if crt != nil {
			if now.Before(crt.NotBefore) {
				kind = errs.TLSNotYetValid
			}
			d = fmt.Sprintf("valid from %s to %s, now %s",
				crt.NotBefore.UTC().Format(time.RFC3339), crt.NotAfter.UTC().Format(time.RFC3339), now.Format(time.RFC3339))
		}
		return &errs.TLSError{Kind: kind, Broker: broker, Detail: d, Err: err}
	case errors.As(err, &op) && op.Op == "remote error":
		// crypto/tls exposes a peer's alert only as text; these are its
		// fixed names (crypto/tls alert.go).
		switch alert := op.Err.Error(); {
		case strings.Contains(alert, "protocol version"):
			return &errs.TLSError{Kind: errs.TLSVersion, Broker: broker, Detail: "the broker said: " + alert, Err: err}
		case strings.Contains(alert, "certificate"), strings.Contains(alert, "access denied"):
			return &errs.TLSError{Kind: errs.TLSClientCertificate, Broker: broker, Detail: "the broker said: " + alert, Err: err}
		}
	case strings.Contains(err.Error(), "tls: server selected unsupported protocol version"),
		strings.Contains(err.Error(), "tls: no supported versions satisfy"):
		return &errs.TLSError{Kind: errs.TLSVersion, Broker: broker, Err: err}
	}
	return nil
}

// Probe records, for one attempt, what the broker asked of the
// client's certificate.
type Probe struct {
	requested atomic.Bool   // the broker sent a CertificateRequest
	offered   atomic.Bool   // and the client had a certificate to give
	version   atomic.Uint32 // the TLS version negotiated, once the handshake is done
}

// classifyCertRejection explains a connection that the broker closed right
// after a handshake in which it asked for a client certificate: that is
// how OpenSSL-based brokers (Mosquitto) reject one over TLS 1.3, without
// an alert. It returns nil when the failure was something else.
//
// Only over TLS 1.3 (in TLS 1.2 the rejection comes as an alert inside the
// handshake) and only before the broker sent anything: a reset after that
// is an ordinary broken connection.
func classifyCertRejection(err error, p *Probe, broker string, receivedAny bool) error {
	if p == nil || !p.requested.Load() || p.version.Load() != tls.VersionTLS13 || receivedAny {
		return nil
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil
	}
	d := "the broker asked for a client certificate, none is configured, and it closed the connection"
	if p.offered.Load() {
		d = "the broker asked for a client certificate and closed the connection once it got ours: it most likely rejected it"
	}
	return &errs.TLSError{Kind: errs.TLSClientCertificate, Broker: broker, Detail: d, Err: err}
}

// classifyMissingCert explains a handshake the broker aborted after asking
// for a client certificate that the client did not have (OpenSSL sends a
// bare "handshake failure" alert for that over TLS 1.2).
func classifyMissingCert(err error, p *Probe, broker string) error {
	var op *net.OpError
	if p == nil || !p.requested.Load() || p.offered.Load() || !errors.As(err, &op) || op.Op != "remote error" {
		return nil
	}
	return &errs.TLSError{Kind: errs.TLSClientCertificate, Broker: broker,
		Detail: "the broker asked for a client certificate, none is configured, and it said: " + op.Err.Error(), Err: err}
}

func certNames(crt *x509.Certificate, host string) string {
	if crt == nil {
		return "dialled " + host
	}
	var names []string
	names = append(names, crt.DNSNames...)
	for _, ip := range crt.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		names = append(names, "no SAN, CN "+crt.Subject.CommonName)
	}
	hint := ""
	if net.ParseIP(host) != nil && len(crt.IPAddresses) == 0 {
		hint = "; the certificate has no IP address: connect by name, or set WithServerName"
	}
	return fmt.Sprintf("dialled %s, certificate is for [%s]%s", host, strings.Join(names, ", "), hint)
}

// classifyHandshake explains a failed TLS handshake.
func classifyHandshake(err error, p *Probe, broker string) error {
	if classified := classifyTLS(err, broker); classified != nil {
		return classified
	}
	if classified := classifyMissingCert(err, p, broker); classified != nil {
		return classified
	}
	return classifyPlainPort(err, broker)
}

const plainPortHint = "use the broker's TLS port (often 8883), or a tcp:// URL for this one"

// classifyPlainPort explains a handshake that met a port which does not
// speak TLS: it answered with bytes that are no TLS record (an MQTT broker
// answers a ClientHello with nothing, a web server with HTTP), or it
// closed the connection without a TLS alert, as a plain-text MQTT broker
// does when it reads a ClientHello as a malformed CONNECT.
func classifyPlainPort(err error, broker string) error {
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &rh):
		return &errs.TLSError{Kind: errs.TLSPlainPort, Broker: broker, Err: err, Hint: plainPortHint,
			Detail: fmt.Sprintf("it answered % x, which is not TLS", rh.RecordHeader[:])}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return &errs.TLSError{Kind: errs.TLSPlainPort, Broker: broker, Err: err, Hint: plainPortHint,
			Detail: "it closed the connection during the handshake without a TLS alert; it may be a plain-text MQTT port"}
	}
	return nil
}

// AfterHandshake explains a connection that failed after its TLS handshake
// completed, where the MQTT handshake or the WebSocket upgrade waits: a TLS
// 1.3 broker rejects a client certificate only then, with an alert or (an
// OpenSSL-based broker) by closing the connection. receivedAny says whether
// the broker sent anything over the connection. It returns nil when the
// failure was something else.
func AfterHandshake(err error, p *Probe, broker string, receivedAny bool) error {
	if classified := classifyTLS(err, broker); classified != nil {
		return classified
	}
	return classifyCertRejection(err, p, broker, receivedAny)
}
