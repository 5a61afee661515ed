package steadymqtt

import (
	"crypto/tls"
	"net/url"
)

// tlsConfigFor returns the configuration of one TLS attempt: the user's, or
// a safe default, with TLS 1.2 at least and the broker's host as server
// name unless one was set.
func (c *Client) tlsConfigFor(u *url.URL) *tls.Config {
	var cfg *tls.Config
	if c.cfg.tlsConfig != nil {
		cfg = c.cfg.tlsConfig.Clone()
	} else {
		cfg = &tls.Config{}
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if cfg.ServerName == "" {
		cfg.ServerName = u.Hostname()
	}
	return cfg
}
