package steadymqtt

import (
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Which brokers to connect to, and in what order.

// WithBroker sets the broker URLs. Schemes: tcp:// and mqtt:// (plain,
// port 1883 by default), ssl://, tls:// and mqtts:// (TLS, port 8883),
// ws:// and wss:// (MQTT over WebSocket, ports 80 and 443, path /mqtt unless
// the URL has one). Every transport goes through the same dial path.
//
// Several URLs are endpoints of one service (a cluster's nodes, a primary
// and a standby). Each client takes them in an order of its own, shuffled
// once and seeded by the client ID, so that a fleet spreads over the nodes
// and a client keeps its order across restarts (WithFixedBrokerOrder keeps
// the order given). After a failed attempt or a loss the next endpoint is
// tried at once, after a little jitter; the backoff applies per full round
// of endpoints. User information in a URL (mqtt://user:pass@host) overrides
// WithCredentials for that broker; it never appears in logs, events or
// errors.
func WithBroker(urls ...string) Option {
	return func(c *config) error {
		if len(urls) == 0 {
			return optionError("WithBroker", "no URL given")
		}
		c.brokers = c.brokers[:0]
		for _, raw := range urls {
			u, err := parseBroker(raw)
			if err != nil {
				return err
			}
			c.brokers = append(c.brokers, u)
		}
		return nil
	}
}

func parseBroker(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the raw URL, which may hold a password.
		return nil, optionError("WithBroker", "cannot parse broker URL %q", redactRaw(raw))
	}
	var port string
	switch strings.ToLower(u.Scheme) {
	case "tcp", "mqtt":
		port = "1883"
	case "ssl", "tls", "mqtts":
		port = "8883"
	case "ws":
		port = "80"
	case "wss":
		port = "443"
	case "":
		return nil, optionError("WithBroker", "broker URL %q has no scheme (want tcp://host:1883 or ssl://host:8883)", redactRaw(raw))
	default:
		return nil, optionError("WithBroker", "broker URL %s: unsupported scheme %q (want tcp, mqtt, ssl, tls, mqtts, ws or wss)", redactRaw(raw), u.Scheme)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	web := u.Scheme == "ws" || u.Scheme == "wss"
	switch {
	case u.Opaque != "":
		return nil, optionError("WithBroker", "broker URL %s is not of the form scheme://host:port", redactRaw(raw))
	case u.Hostname() == "":
		return nil, optionError("WithBroker", "broker URL %s has no host", redactRaw(raw))
	case !web && u.Path != "" && u.Path != "/":
		return nil, optionError("WithBroker", "broker URL %s: a path means something only for ws:// and wss://", redactRaw(raw))
	case !web && (u.RawQuery != "" || u.Fragment != "" || u.ForceQuery):
		return nil, optionError("WithBroker", "broker URL %s: a query or fragment means something only for ws:// and wss://", redactRaw(raw))
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, optionError("WithBroker", "broker URL %s: port %q is not in 1–65535", redactRaw(raw), p)
		}
	} else {
		if strings.HasSuffix(u.Host, ":") {
			return nil, optionError("WithBroker", "broker URL %s: empty port", redactRaw(raw))
		}
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	if !web {
		u.Path = ""
	}
	return u, nil
}

// redactRaw hides the password of a broker URL given as text, whether
// url.Parse could read it or not ("user:pass@host" without a scheme
// parses as an opaque URL, which url.Redacted does not touch).
func redactRaw(raw string) string {
	at := strings.LastIndex(raw, "@")
	if at < 0 {
		return raw
	}
	start := 0
	if i := strings.Index(raw[:at], "://"); i >= 0 {
		start = i + 3
	}
	if colon := strings.Index(raw[start:at], ":"); colon >= 0 {
		return raw[:start+colon] + ":xxxxx" + raw[at:]
	}
	return raw
}

// WithFixedBrokerOrder makes every client try the WithBroker URLs in the
// order given, the first one first: for a primary and its standby, where
// the first must be preferred, not spread over.
func WithFixedBrokerOrder() Option {
	return func(c *config) error { c.fixedOrder = true; return nil }
}

// DefaultBrokerFailback is how long a client's preferred broker must have
// been reachable before the client, connected to another one, goes back.
const DefaultBrokerFailback = 30 * time.Second

// WithBrokerFailback sets how long a client's preferred broker (the first
// of its order) must have been reachable, probed with a TCP connection,
// before a client connected to another endpoint goes back to it; up to
// half as long again is added at random, so a recovered node is refilled
// without a storm, and the wait doubles after each fail-back that failed.
// Default 30 s; 0 stays on whichever endpoint works.
func WithBrokerFailback(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return optionError("WithBrokerFailback", "%v must not be negative", d)
		}
		c.brokerFailback = d
		return nil
	}
}
