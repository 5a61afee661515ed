package mqtttest

import "crypto/tls"

// Option configures a broker made by NewBroker or Start.
type Option func(*config)

type config struct {
	tls      *tls.Config
	auth     bool
	user     string
	password string
}

// WithUser makes the broker accept only clients that send this user name
// and password; any other CONNECT is refused with return code 4 (bad user
// name or password). Use it to test a client's credentials, or how it
// reports wrong ones.
func WithUser(name, password string) Option {
	return func(c *config) { c.auth, c.user, c.password = true, name, password }
}

// WithTLS makes the broker speak MQTT over TLS with cfg (which must hold a
// certificate; set ClientAuth for mutual TLS). URL then starts with
// ssl://, and the certificate must be valid for 127.0.0.1, the host of URL.
func WithTLS(cfg *tls.Config) Option {
	return func(c *config) { c.tls = cfg }
}
