package steadymqtt

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/steadymqtt/steadymqtt/internal/dial"
)

// TLS options apply to ssl://, tls://, mqtts:// and wss:// brokers; with
// any of them set, a plain broker URL is refused.

func (c *config) tlsOpt(name string, f func(t *dial.TLSOptions) error) error {
	c.tls.Set = true
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
		return c.tlsOpt("WithTLSConfig", func(o *dial.TLSOptions) error {
			if t == nil {
				return errors.New("nil config")
			}
			if t.InsecureSkipVerify {
				return errors.New("InsecureSkipVerify is set; use WithInsecureSkipVerify() if that is really meant")
			}
			o.Base = t.Clone()
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
		return c.tlsOpt("WithCAFile", func(o *dial.TLSOptions) error {
			o.CAFile = &dial.WatchedFile{Path: path}
			_, err := o.CAFile.Load(dial.ParseCABundle)
			return err
		})
	}
}

// WithCA trusts the CAs of PEM data instead of the system's (add
// WithSystemRoots to trust both).
func WithCA(pemData []byte) Option {
	return func(c *config) error {
		return c.tlsOpt("WithCA", func(o *dial.TLSOptions) error {
			if _, err := dial.ParseCABundle(pemData); err != nil {
				return err
			}
			o.CAPEM = append(o.CAPEM, pemData...)
			return nil
		})
	}
}

// WithSystemRoots trusts the system's CAs in addition to those of WithCA
// and WithCAFile.
func WithSystemRoots() Option {
	return func(c *config) error {
		return c.tlsOpt("WithSystemRoots", func(o *dial.TLSOptions) error { o.SystemRoots = true; return nil })
	}
}

// WithClientCertFiles presents a client certificate (mutual TLS) from PEM
// files. Both are read again at a connection attempt whenever one of them
// changed on disk, so a rotated certificate is used at the next reconnect
// without restarting the service.
func WithClientCertFiles(certFile, keyFile string) Option {
	return func(c *config) error {
		return c.tlsOpt("WithClientCertFiles", func(o *dial.TLSOptions) error {
			o.CertFile, o.KeyFile = &dial.WatchedFile{Path: certFile}, &dial.WatchedFile{Path: keyFile}
			_, err := o.ClientCert()
			return err
		})
	}
}

// WithClientCert presents a client certificate (mutual TLS).
func WithClientCert(cert tls.Certificate) Option {
	return func(c *config) error {
		return c.tlsOpt("WithClientCert", func(o *dial.TLSOptions) error {
			if len(cert.Certificate) == 0 || cert.PrivateKey == nil {
				return errors.New("certificate without chain or private key")
			}
			o.Cert = &cert
			return nil
		})
	}
}

// WithServerName sets the name the broker's certificate is checked
// against, for a broker reached by IP address or through a load balancer.
func WithServerName(name string) Option {
	return func(c *config) error {
		return c.tlsOpt("WithServerName", func(o *dial.TLSOptions) error {
			if name == "" {
				return errors.New("empty server name")
			}
			o.ServerName = name
			return nil
		})
	}
}

// WithMinTLSVersion sets the lowest TLS version accepted (default TLS 1.2;
// lower is refused).
func WithMinTLSVersion(v uint16) Option {
	return func(c *config) error {
		return c.tlsOpt("WithMinTLSVersion", func(o *dial.TLSOptions) error {
			if v != tls.VersionTLS12 && v != tls.VersionTLS13 {
				return fmt.Errorf("%s: only TLS 1.2 and 1.3 are accepted", tls.VersionName(v))
			}
			o.MinVersion = v
			return nil
		})
	}
}

// WithALPN sets the ALPN protocols offered (AWS IoT Core on port 443 wants
// "x-amzn-mqtt-ca").
func WithALPN(protos ...string) Option {
	return func(c *config) error {
		return c.tlsOpt("WithALPN", func(o *dial.TLSOptions) error {
			if len(protos) == 0 {
				return errors.New("no protocol given")
			}
			o.ALPN = append([]string(nil), protos...)
			return nil
		})
	}
}

// WithPinnedKeys accepts the broker only if a certificate of its verified
// chain has one of these public keys, each the base64 SHA-256 of a
// SubjectPublicKeyInfo (as "pin-sha256" in HPKP). Verification still runs.
func WithPinnedKeys(pins ...string) Option {
	return func(c *config) error {
		return c.tlsOpt("WithPinnedKeys", func(o *dial.TLSOptions) error {
			if len(pins) == 0 {
				return errors.New("no pin given")
			}
			for _, p := range pins {
				raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(p, "sha256/"))
				if err != nil || len(raw) != sha256.Size {
					return fmt.Errorf("pin %q is not a base64 SHA-256", p)
				}
				o.Pins = append(o.Pins, [sha256.Size]byte(raw))
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
// and anyone in the path, is accepted. For a laboratory only; New logs a
// warning.
func WithInsecureSkipVerify() Option {
	return func(c *config) error {
		return c.tlsOpt("WithInsecureSkipVerify", func(o *dial.TLSOptions) error { o.Insecure = true; return nil })
	}
}
