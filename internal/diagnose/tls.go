package diagnose

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/steadymqtt/steadymqtt/internal/dial"
	"github.com/steadymqtt/steadymqtt/internal/errs"
)

// checkTLS runs the client's TLS handshake over the TCP connection and
// shows the broker's certificate: names, issuer, dates.
func (w *walk) checkTLS(s *Step) {
	if !dial.IsTLS(w.u) {
		s.Status = Skipped
		s.Details = []string{w.u.Scheme + "://: plain text, no TLS"}
		return
	}
	ctx, cancel := w.timeout()
	defer cancel()
	tc, err := dial.Handshake(ctx, w.target, w.conn)
	if err != nil {
		w.conn = nil // closed by Handshake
		cause, hint := tlsTrouble(err)
		fail(s, err, cause, hint)
		addCertDetails(s, certOf(err))
		return
	}
	w.conn = tc
	st := tc.ConnectionState()
	s.Details = append(s.Details, "TLS "+tls.VersionName(st.Version)+", "+tls.CipherSuiteName(st.CipherSuite))
	if st.NegotiatedProtocol != "" {
		s.Details = append(s.Details, "ALPN "+st.NegotiatedProtocol)
	}
	if len(st.PeerCertificates) == 0 {
		return
	}
	crt := st.PeerCertificates[0]
	addCertDetails(s, crt)
	if left := time.Until(crt.NotAfter); left < 14*24*time.Hour {
		s.Status = Warning
		s.Cause = fmt.Sprintf("the broker's certificate expires in %v (%s)", left.Round(time.Hour), crt.NotAfter.UTC().Format(time.RFC3339))
		s.Hint = "renew it before then: every client will refuse it once it has expired"
	}
}

func addCertDetails(s *Step, crt *x509.Certificate) {
	if crt == nil {
		return
	}
	names := append([]string(nil), crt.DNSNames...)
	for _, ip := range crt.IPAddresses {
		names = append(names, ip.String())
	}
	s.Details = append(s.Details,
		fmt.Sprintf("certificate %q issued by %q", crt.Subject.CommonName, crt.Issuer.CommonName),
		"names: "+strings.Join(names, ", "),
		fmt.Sprintf("valid %s to %s", crt.NotBefore.UTC().Format(time.RFC3339), crt.NotAfter.UTC().Format(time.RFC3339)))
}

// certOf is the certificate a verification error is about.
func certOf(err error) *x509.Certificate {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &unknown):
		return unknown.Cert
	case errors.As(err, &hostname):
		return hostname.Certificate
	case errors.As(err, &invalid):
		return invalid.Cert
	}
	return nil
}

func tlsTrouble(err error) (cause, hint string) {
	var te *errs.TLSError
	if !errors.As(err, &te) {
		if dial.IsTimeout(err) {
			return "the TLS handshake did not finish in time", "the port may not speak TLS, or the path drops large packets (MTU)"
		}
		return "the TLS handshake failed: " + rootCause(err).Error(), ""
	}
	cause = strings.TrimPrefix(te.Kind.Error(), "steadymqtt: TLS: ")
	if te.Detail != "" {
		cause += ": " + te.Detail
	}
	if te.Hint != "" {
		return cause, te.Hint
	}
	switch te.Kind {
	case errs.TLSUnknownAuthority:
		hint = "give the CA that signed the broker's certificate (WithCAFile / -ca), or WithSystemRoots for a public CA"
	case errs.TLSNameMismatch:
		hint = "connect by a name the certificate lists, or set WithServerName (-server-name) to one of them"
	case errs.TLSExpired:
		hint = "the broker's certificate must be renewed; if it is not, check this host's clock"
	case errs.TLSNotYetValid:
		hint = "check this host's clock (a gateway without RTC or NTP starts in 1970), or the certificate's start date"
	case errs.TLSClientCertificate:
		hint = "give a client certificate the broker trusts (WithClientCertFiles / -cert, -key)"
	case errs.TLSVersion:
		hint = "the broker and the client have no TLS version in common: check WithMinTLSVersion and the broker's settings"
	case errs.TLSPinMismatch:
		hint = "the broker's key changed, or the pins are wrong"
	case errs.TLSFiles:
		hint = "check the certificate and key files: their paths, permissions and PEM contents"
	}
	return cause, hint
}
