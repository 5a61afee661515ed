package steadymqtt

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// TLS handshake failures, matched with errors.Is. The error that carries
// one of them is a *TLSError whose message says what was found (the
// certificate's names, its dates).
var (
	// ErrTLSUnknownAuthority: the broker's certificate does not chain to a
	// trusted CA (wrong or missing CA bundle).
	ErrTLSUnknownAuthority = errors.New("steadymqtt: TLS: broker certificate signed by an unknown authority")
	// ErrTLSNameMismatch: the certificate is valid but not for the host
	// name or IP address the client dialled (a broker reached by IP whose
	// certificate has no IP SAN; see WithServerName).
	ErrTLSNameMismatch = errors.New("steadymqtt: TLS: broker certificate does not match the broker's name or address")
	// ErrTLSExpired: the broker's certificate is past its NotAfter date.
	ErrTLSExpired = errors.New("steadymqtt: TLS: broker certificate expired")
	// ErrTLSNotYetValid: the broker's certificate is before its NotBefore
	// date (often a gateway whose clock has not been set yet).
	ErrTLSNotYetValid = errors.New("steadymqtt: TLS: broker certificate not yet valid")
	// ErrTLSClientCertificate: the broker required a client certificate and
	// got none, or rejected the one it got.
	ErrTLSClientCertificate = errors.New("steadymqtt: TLS: client certificate required or rejected by the broker")
	// ErrTLSVersion: client and broker have no TLS version in common.
	ErrTLSVersion = errors.New("steadymqtt: TLS: no protocol version in common with the broker")
	// ErrTLSPinMismatch: no certificate of the chain has a pinned key.
	ErrTLSPinMismatch = errors.New("steadymqtt: TLS: broker key does not match any pinned key")
	// ErrTLSFiles: a CA bundle or client certificate file could not be read
	// or parsed.
	ErrTLSFiles = errors.New("steadymqtt: TLS: cannot load certificate files")
)

// TLSError is a classified TLS failure.
type TLSError struct {
	Kind   error  // one of the ErrTLS… values
	Broker string // redacted URL
	Detail string // what was found, e.g. the certificate's names
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
	return msg
}

// Is matches the Kind.
func (e *TLSError) Is(target error) bool { return target == e.Kind }

// Unwrap returns the underlying crypto error.
func (e *TLSError) Unwrap() error { return e.Err }

type tlsOptions struct {
	base        *tls.Config // WithTLSConfig, cloned
	caFile      *watchedFile
	caPEM       []byte
	systemRoots bool
	certFile    *watchedFile
	keyFile     *watchedFile
	cert        *tls.Certificate
	serverName  string
	minVersion  uint16
	alpn        []string
	pins        [][sha256.Size]byte
	insecure    bool
	set         bool // any TLS option was given

	warnOnce sync.Once
}

func (c *config) tlsOpt(name string, f func(t *tlsOptions) error) error {
	c.tls.set = true
	if err := f(&c.tls); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalidOption, name, err)
	}
	return nil
}

// WithTLSConfig sets the base TLS configuration for ssl://, tls://,
// mqtts:// and wss:// brokers; the other TLS options refine it. It is
// cloned. A configuration with InsecureSkipVerify is refused: say
// WithInsecureSkipVerify to mean it.
func WithTLSConfig(t *tls.Config) Option {
	return func(c *config) error {
		return c.tlsOpt("WithTLSConfig", func(o *tlsOptions) error {
			if t == nil {
				return errors.New("nil config")
			}
			if t.InsecureSkipVerify {
				return errors.New("InsecureSkipVerify is set; use WithInsecureSkipVerify() if that is really meant")
			}
			o.base = t.Clone()
			return nil
		})
	}
}

// WithCAFile trusts the CAs of a PEM bundle instead of the system's (add
// WithSystemRoots to trust both). The file is read again at a connection
// attempt whenever it changed on disk, so a rotated bundle is used at the
// next reconnect.
func WithCAFile(path string) Option {
	return func(c *config) error {
		return c.tlsOpt("WithCAFile", func(o *tlsOptions) error {
			o.caFile = &watchedFile{path: path}
			_, err := o.caFile.load(parseCABundle)
			return err
		})
	}
}

// WithCA trusts the CAs of PEM data instead of the system's (add
// WithSystemRoots to trust both).
func WithCA(pemData []byte) Option {
	return func(c *config) error {
		return c.tlsOpt("WithCA", func(o *tlsOptions) error {
			if _, err := parseCABundle(pemData); err != nil {
				return err
			}
			o.caPEM = append(o.caPEM, pemData...)
			return nil
		})
	}
}

// WithSystemRoots trusts the system's CAs in addition to those of WithCA
// and WithCAFile.
func WithSystemRoots() Option {
	return func(c *config) error {
		return c.tlsOpt("WithSystemRoots", func(o *tlsOptions) error { o.systemRoots = true; return nil })
	}
}

// WithClientCertFiles presents a client certificate (mutual TLS) from PEM
// files. Both are read again at a connection attempt whenever one of them
// changed on disk, so a rotated certificate is used at the next reconnect
// without restarting the service.
func WithClientCertFiles(certFile, keyFile string) Option {
	return func(c *config) error {
		return c.tlsOpt("WithClientCertFiles", func(o *tlsOptions) error {
			o.certFile, o.keyFile = &watchedFile{path: certFile}, &watchedFile{path: keyFile}
			_, err := o.clientCert()
			return err
		})
	}
}

// WithClientCert presents a client certificate (mutual TLS).
func WithClientCert(cert tls.Certificate) Option {
	return func(c *config) error {
		return c.tlsOpt("WithClientCert", func(o *tlsOptions) error {
			if len(cert.Certificate) == 0 || cert.PrivateKey == nil {
				return errors.New("certificate without chain or private key")
			}
			o.cert = &cert
			return nil
		})
	}
}

// WithServerName sets the name the broker's certificate is checked
// against, for a broker reached by IP address or through a load balancer.
func WithServerName(name string) Option {
	return func(c *config) error {
		return c.tlsOpt("WithServerName", func(o *tlsOptions) error {
			if name == "" {
				return errors.New("empty server name")
			}
			o.serverName = name
			return nil
		})
	}
}

// WithMinTLSVersion sets the lowest TLS version accepted (default TLS 1.2;
// lower is refused).
func WithMinTLSVersion(v uint16) Option {
	return func(c *config) error {
		return c.tlsOpt("WithMinTLSVersion", func(o *tlsOptions) error {
			if v != tls.VersionTLS12 && v != tls.VersionTLS13 {
				return fmt.Errorf("%s: only TLS 1.2 and 1.3 are accepted", tls.VersionName(v))
			}
			o.minVersion = v
			return nil
		})
	}
}

// WithALPN sets the ALPN protocols offered (AWS IoT Core on port 443 wants
// "x-amzn-mqtt-ca").
func WithALPN(protos ...string) Option {
	return func(c *config) error {
		return c.tlsOpt("WithALPN", func(o *tlsOptions) error {
			if len(protos) == 0 {
				return errors.New("no protocol given")
			}
			o.alpn = append([]string(nil), protos...)
			return nil
		})
	}
}

// WithPinnedKeys accepts the broker only if a certificate of its verified
// chain has one of these public keys, each the base64 SHA-256 of a
// SubjectPublicKeyInfo (as "pin-sha256" in HPKP). Verification still runs.
func WithPinnedKeys(pins ...string) Option {
	return func(c *config) error {
		return c.tlsOpt("WithPinnedKeys", func(o *tlsOptions) error {
			if len(pins) == 0 {
				return errors.New("no pin given")
			}
			for _, p := range pins {
				raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(p, "sha256/"))
				if err != nil || len(raw) != sha256.Size {
					return fmt.Errorf("pin %q is not a base64 SHA-256", p)
				}
				o.pins = append(o.pins, [sha256.Size]byte(raw))
			}
			return nil
		})
	}
}

// SPKIPin returns the pin of a certificate's public key, for
// WithPinnedKeys.
func SPKIPin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// WithInsecureSkipVerify turns certificate verification off: any broker,
// and anyone in the path, is accepted. For a laboratory only; the client
// logs a warning at its first TLS connection.
func WithInsecureSkipVerify() Option {
	return func(c *config) error {
		return c.tlsOpt("WithInsecureSkipVerify", func(o *tlsOptions) error { o.insecure = true; return nil })
	}
}

func (o *tlsOptions) clientCert() (*tls.Certificate, error) {
	if o.cert != nil {
		return o.cert, nil
	}
	if o.certFile == nil {
		return nil, nil
	}
	// Read both before parsing, so a pair replaced one file at a time is
	// only used once both match (X509KeyPair checks they do).
	certPEM, err := o.certFile.load(nil)
	if err != nil {
		return nil, err
	}
	keyPEM, err := o.keyFile.load(nil)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM.([]byte), keyPEM.([]byte))
	if err != nil {
		return nil, fmt.Errorf("%w: client certificate %s with key %s: %w", ErrTLSFiles, o.certFile.path, o.keyFile.path, err)
	}
	return &cert, nil
}

// tlsConfigFor builds the configuration of one TLS attempt to u: the
// files are checked for changes here, once per attempt.
func (c *Client) tlsConfigFor(u *url.URL, probe *certProbe) (*tls.Config, error) {
	o := &c.cfg.tls
	cfg := &tls.Config{}
	if o.base != nil {
		cfg = o.base.Clone()
	}
	cfg.MinVersion = max(cfg.MinVersion, o.minVersion, tls.VersionTLS12)
	switch {
	case o.serverName != "":
		cfg.ServerName = o.serverName
	case cfg.ServerName == "":
		cfg.ServerName = u.Hostname()
	}
	if len(o.alpn) > 0 {
		cfg.NextProtos = o.alpn
	}
	if o.caFile != nil || o.caPEM != nil {
		pool := x509.NewCertPool()
		if o.systemRoots {
			sys, err := x509.SystemCertPool()
			if err != nil {
				return nil, fmt.Errorf("%w: system roots: %w", ErrTLSFiles, err)
			}
			pool = sys
		}
		if o.caFile != nil {
			certs, err := o.caFile.load(parseCABundle)
			if err != nil {
				return nil, err
			}
			for _, crt := range certs.([]*x509.Certificate) {
				pool.AddCert(crt)
			}
		}
		if o.caPEM != nil {
			pool.AppendCertsFromPEM(o.caPEM)
		}
		cfg.RootCAs = pool
	}
	cert, err := o.clientCert()
	if err != nil {
		return nil, err
	}
	if cert == nil && len(cfg.Certificates) > 0 {
		cert = &cfg.Certificates[0]
	}
	if cfg.GetClientCertificate == nil {
		// Remember whether the broker asked for a certificate: over TLS 1.3
		// a broker that rejects ours (or finds none) may just reset the
		// connection after the handshake, and this is what tells that reset
		// from any other.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if probe != nil {
				probe.requested.Store(true)
				probe.offered.Store(cert != nil)
			}
			if cert == nil {
				return &tls.Certificate{}, nil
			}
			return cert, nil
		}
	}
	if o.insecure {
		o.warnOnce.Do(func() {
			c.log.Warn("TLS certificate verification is OFF (WithInsecureSkipVerify): the broker is not authenticated")
		})
		cfg.InsecureSkipVerify = true
	}
	if len(o.pins) > 0 {
		pins, base := o.pins, cfg.VerifyConnection
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if base != nil { // the user's own check still runs
				if err := base(cs); err != nil {
					return err
				}
			}
			// Only certificates of a chain that verified count: a server may
			// send any extra certificate, the broker's own among them. With
			// verification off, only the leaf can be held to a pin.
			var certs []*x509.Certificate
			for _, chain := range cs.VerifiedChains {
				certs = append(certs, chain...)
			}
			if len(cs.VerifiedChains) == 0 && len(cs.PeerCertificates) > 0 {
				certs = cs.PeerCertificates[:1]
			}
			for _, crt := range certs {
				sum := sha256.Sum256(crt.RawSubjectPublicKeyInfo)
				for _, p := range pins {
					if sum == p {
						return nil
					}
				}
			}
			return ErrTLSPinMismatch
		}
	}
	return cfg, nil
}

func parseCABundle(pemData []byte) (any, error) {
	var certs []*x509.Certificate
	for rest := pemData; ; {
		var block []byte
		block, rest = nextPEMCert(rest)
		if block == nil {
			break
		}
		crt, err := x509.ParseCertificate(block)
		if err != nil {
			return nil, fmt.Errorf("%w: CA bundle: %w", ErrTLSFiles, err)
		}
		certs = append(certs, crt)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: CA bundle holds no PEM certificate", ErrTLSFiles)
	}
	return certs, nil
}

// watchedFile is read at every connection attempt and parsed again when
// its content changed. Certificate files are small, and comparing content
// catches what size and modification time miss (a same-size file written
// within the file system's timestamp granularity, or copied with its time).
type watchedFile struct {
	path string

	mu    sync.Mutex
	sum   [sha256.Size]byte
	value any
}

func (w *watchedFile) load(parse func([]byte) (any, error)) (any, error) {
	data, err := os.ReadFile(w.path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTLSFiles, err)
	}
	sum := sha256.Sum256(data)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.value != nil && sum == w.sum {
		return w.value, nil
	}
	var v any = data
	if parse != nil {
		if v, err = parse(data); err != nil {
			return nil, fmt.Errorf("%s: %w", w.path, err)
		}
	}
	w.sum, w.value = sum, v
	return v, nil
}

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
	case errors.Is(err, ErrTLSPinMismatch):
		return &TLSError{Kind: ErrTLSPinMismatch, Broker: broker, Err: err}
	case errors.As(err, &unknown):
		d := ""
		if unknown.Cert != nil {
			d = fmt.Sprintf("certificate %q issued by %q", unknown.Cert.Subject.CommonName, unknown.Cert.Issuer.CommonName)
		}
		return &TLSError{Kind: ErrTLSUnknownAuthority, Broker: broker, Detail: d, Err: err}
	case errors.As(err, &hostname):
		return &TLSError{Kind: ErrTLSNameMismatch, Broker: broker, Detail: certNames(hostname.Certificate, hostname.Host), Err: err}
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		crt, now := invalid.Cert, time.Now().UTC()
		kind, d := ErrTLSExpired, ""
		if crt != nil {
			if now.Before(crt.NotBefore) {
				kind = ErrTLSNotYetValid
			}
			d = fmt.Sprintf("valid from %s to %s, now %s",
				crt.NotBefore.UTC().Format(time.RFC3339), crt.NotAfter.UTC().Format(time.RFC3339), now.Format(time.RFC3339))
		}
		return &TLSError{Kind: kind, Broker: broker, Detail: d, Err: err}
	case errors.As(err, &op) && op.Op == "remote error":
		// crypto/tls exposes a peer's alert only as text; these are its
		// fixed names (crypto/tls alert.go).
		switch alert := op.Err.Error(); {
		case strings.Contains(alert, "protocol version"):
			return &TLSError{Kind: ErrTLSVersion, Broker: broker, Detail: "the broker said: " + alert, Err: err}
		case strings.Contains(alert, "certificate"), strings.Contains(alert, "access denied"):
			return &TLSError{Kind: ErrTLSClientCertificate, Broker: broker, Detail: "the broker said: " + alert, Err: err}
		}
	case strings.Contains(err.Error(), "tls: server selected unsupported protocol version"),
		strings.Contains(err.Error(), "tls: no supported versions satisfy"):
		return &TLSError{Kind: ErrTLSVersion, Broker: broker, Err: err}
	}
	return nil
}

// certProbe records, for one attempt, what the broker asked of the
// client's certificate.
type certProbe struct {
	requested atomic.Bool   // the broker sent a CertificateRequest
	offered   atomic.Bool   // and the client had a certificate to give
	version   atomic.Uint32 // the TLS version negotiated, once the handshake is done
}

func probeFrom(ctx context.Context) *certProbe {
	if a := attemptFrom(ctx); a != nil {
		return a.probe
	}
	return nil
}

// classifyCertRejection explains a connection that the broker closed right
// after a handshake in which it asked for a client certificate: that is
// how OpenSSL-based brokers (Mosquitto) reject one over TLS 1.3, without
// an alert. It returns nil when the failure was something else.
//
// Only over TLS 1.3 (in TLS 1.2 the rejection comes as an alert inside the
// handshake) and only before the broker sent anything: a reset after that
// is an ordinary broken connection.
func classifyCertRejection(err error, p *certProbe, broker string, receivedAny bool) error {
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
	return &TLSError{Kind: ErrTLSClientCertificate, Broker: broker, Detail: d, Err: err}
}

// classifyMissingCert explains a handshake the broker aborted after asking
// for a client certificate that the client did not have (OpenSSL sends a
// bare "handshake failure" alert for that over TLS 1.2).
func classifyMissingCert(err error, p *certProbe, broker string) error {
	var op *net.OpError
	if p == nil || !p.requested.Load() || p.offered.Load() || !errors.As(err, &op) || op.Op != "remote error" {
		return nil
	}
	return &TLSError{Kind: ErrTLSClientCertificate, Broker: broker,
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

// nextPEMCert returns the DER of the next CERTIFICATE block and the rest.
func nextPEMCert(data []byte) ([]byte, []byte) {
	for {
		block, rest := pem.Decode(data)
		if block == nil {
			return nil, nil
		}
		if block.Type == "CERTIFICATE" {
			return block.Bytes, rest
		}
		data = rest
	}
}
