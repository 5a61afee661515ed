package dial

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"sync"

	"github.com/steadymqtt/steadymqtt/internal/errs"
)

// TLSOptions are the TLS settings of a client, as its options set them.
// The files among them are checked for changes at every attempt, so a
// rotated CA bundle or client certificate is used without a restart.
type TLSOptions struct {
	Base        *tls.Config // WithTLSConfig, cloned
	CAFile      *WatchedFile
	CAPEM       []byte
	SystemRoots bool
	CertFile    *WatchedFile
	KeyFile     *WatchedFile
	Cert        *tls.Certificate
	ServerName  string
	MinVersion  uint16
	ALPN        []string
	Pins        [][sha256.Size]byte
	Insecure    bool
	Set         bool // any TLS option was given
}

func (o *TLSOptions) ClientCert() (*tls.Certificate, error) {
	if o.Cert != nil {
		return o.Cert, nil
	}
	if o.CertFile == nil {
		return nil, nil
	}
	// Read both before parsing, so a pair replaced one file at a time is
	// only used once both match (X509KeyPair checks they do).
	certPEM, err := o.CertFile.Load(nil)
	if err != nil {
		return nil, err
	}
	keyPEM, err := o.KeyFile.Load(nil)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM.([]byte), keyPEM.([]byte))
	if err != nil {
		return nil, fmt.Errorf("%w: client certificate %s with key %s: %w", errs.TLSFiles, o.CertFile.Path, o.KeyFile.Path, err)
	}
	return &cert, nil
}

// Config builds the configuration of one TLS attempt to host: the files
// are checked for changes here, once per attempt.
func (o *TLSOptions) Config(host string, probe *Probe) (*tls.Config, error) {
	if o == nil {
		o = &TLSOptions{}
	}
	cfg := &tls.Config{}
	if o.Base != nil {
		cfg = o.Base.Clone()
	}
	cfg.MinVersion = max(cfg.MinVersion, o.MinVersion, tls.VersionTLS12)
	switch {
	case o.ServerName != "":
		cfg.ServerName = o.ServerName
	case cfg.ServerName == "":
		cfg.ServerName = host
	}
	if len(o.ALPN) > 0 {
		cfg.NextProtos = o.ALPN
	}
	if o.CAFile != nil || o.CAPEM != nil {
		pool := x509.NewCertPool()
		if o.SystemRoots {
			sys, err := x509.SystemCertPool()
			if err != nil {
				return nil, fmt.Errorf("%w: system roots: %w", errs.TLSFiles, err)
			}
			pool = sys
		}
		if o.CAFile != nil {
			certs, err := o.CAFile.Load(ParseCABundle)
			if err != nil {
				return nil, err
			}
			for _, crt := range certs.([]*x509.Certificate) {
				pool.AddCert(crt)
			}
		}
		if o.CAPEM != nil {
			pool.AppendCertsFromPEM(o.CAPEM)
		}
		cfg.RootCAs = pool
	}
	cert, err := o.ClientCert()
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
	if o.Insecure {
		cfg.InsecureSkipVerify = true
	}
	if len(o.Pins) > 0 {
		pins, base := o.Pins, cfg.VerifyConnection
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
			return errs.TLSPinMismatch
		}
	}
	return cfg, nil
}

func ParseCABundle(pemData []byte) (any, error) {
	var certs []*x509.Certificate
	for rest := pemData; ; {
		var block []byte
		block, rest = nextPEMCert(rest)
		if block == nil {
			break
		}
		crt, err := x509.ParseCertificate(block)
		if err != nil {
			return nil, fmt.Errorf("%w: CA bundle: %w", errs.TLSFiles, err)
		}
		certs = append(certs, crt)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: CA bundle holds no PEM certificate", errs.TLSFiles)
	}
	return certs, nil
}

// WatchedFile is read at every connection attempt and parsed again when
// its content changed. Certificate files are small, and comparing content
// catches what size and modification time miss (a same-size file written
// within the file system's timestamp granularity, or copied with its time).
type WatchedFile struct {
	Path string

	mu    sync.Mutex
	sum   [sha256.Size]byte
	value any
}

func (w *WatchedFile) Load(parse func([]byte) (any, error)) (any, error) {
	data, err := os.ReadFile(w.Path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errs.TLSFiles, err)
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
			return nil, fmt.Errorf("%s: %w", w.Path, err)
		}
	}
	w.sum, w.value = sum, v
	return v, nil
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
