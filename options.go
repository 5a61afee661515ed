package steadymqtt

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v4"
	"go.uber.org/zap"

	"github.com/steadymqtt/steadymqtt/internal/clock"
	"github.com/steadymqtt/steadymqtt/internal/dial"
	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/netif"
	"github.com/steadymqtt/steadymqtt/internal/topic"
)

// Option configures a Client. Options are applied in order by New; an
// invalid value makes New return an error that wraps ErrInvalidOption and
// names the option.
type Option func(*config) error

// Defaults. They are what an operator of a fleet of gateways wants when
// nothing is said: gentle on the broker after an outage, quick to notice a
// dead link.
const (
	DefaultKeepAlive      = 30 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	DefaultStableAfter    = 30 * time.Second
	DefaultEventBuffer    = 16
	// DefaultFailback is how long a more preferred interface must stay
	// usable before the client moves back to it.
	DefaultFailback = 30 * time.Second
)

// Defaults of the outbox, the publish path and the subscriptions.
const (
	DefaultOutboxCount    = 1000
	DefaultOutboxBytes    = 16 << 20
	DefaultInFlight       = 32
	DefaultKeyWindow      = 10 * time.Minute
	DefaultKeyCount       = 10000
	DefaultPoisonAfter    = 3
	DefaultHandlerBacklog = 256
)

type config struct {
	brokers        []*url.URL
	clientID       string
	username       string
	password       string
	keepAlive      time.Duration
	connectTimeout time.Duration
	backoff        backoff.BackOff
	stableAfter    time.Duration
	degradedRTT    time.Duration
	eventBuffer    int
	logger         *zap.Logger
	clock          clock.Clock
	tls            dial.TLSOptions
	sourceIP       net.IP
	interfaces     []string
	family         Family
	failback       time.Duration
	netSource      netif.Source // the host's interfaces; a fake in tests
	will           *engine.Message
	cleanSession   bool

	outboxCount    int
	outboxBytes    int
	outboxDir      string
	outboxSalvage  bool
	fixedOrder     bool
	maxPacket      int // 0: only what MQTT itself cannot encode is refused
	dropOldest     bool
	queueQoS0      bool
	inFlight       int
	keyWindow      time.Duration
	keyCount       int
	poisonAfter    int
	envelope       bool
	handlerBacklog int
}

func defaultConfig() *config {
	return &config{
		keepAlive:      DefaultKeepAlive,
		connectTimeout: DefaultConnectTimeout,
		stableAfter:    DefaultStableAfter,
		eventBuffer:    DefaultEventBuffer,
		logger:         zap.NewNop(),
		clock:          clock.Real{},
		cleanSession:   true,
		failback:       DefaultFailback,
		netSource:      netif.System{},
		outboxCount:    DefaultOutboxCount,
		outboxBytes:    DefaultOutboxBytes,
		inFlight:       DefaultInFlight,
		keyWindow:      DefaultKeyWindow,
		keyCount:       DefaultKeyCount,
		poisonAfter:    DefaultPoisonAfter,
		handlerBacklog: DefaultHandlerBacklog,
	}
}

// validate checks what no single option can check alone.
func (c *config) validate() error {
	if len(c.brokers) == 0 {
		return optionError("WithBroker", "at least one broker URL is required")
	}
	for _, u := range c.brokers {
		if c.tls.Set && !dial.IsTLS(u) {
			return optionError("TLS options", "broker %s is not a TLS URL (use ssl://, tls://, mqtts:// or wss://); refusing to send in plaintext what was meant to be encrypted", u.Redacted())
		}
	}
	if c.sourceIP != nil && len(c.interfaces) > 0 {
		return optionError("WithSourceIP", "use either WithSourceIP or WithInterfaces: the interface's own address is the source")
	}
	if c.clientID == "" {
		c.clientID = randomClientID()
	}
	if c.backoff == nil {
		c.backoff = NewFullJitterBackOff(time.Second, 2*time.Minute)
	}
	return nil
}

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

// WithClientID sets the MQTT client identifier. Two clients with the same ID
// make the broker disconnect one of them each time the other connects; give
// each gateway (and each replica) its own. The default is a random ID,
// which only suits clean sessions.
func WithClientID(id string) Option {
	return func(c *config) error {
		if id == "" {
			return optionError("WithClientID", "empty client ID")
		}
		if len(id) > 65535 || !utf8.ValidString(id) || strings.ContainsRune(id, 0) {
			return optionError("WithClientID", "client ID must be valid UTF-8 without NUL, at most 65535 bytes")
		}
		c.clientID = id
		return nil
	}
}

// WithCredentials sets the user name and password sent in CONNECT.
func WithCredentials(username, password string) Option {
	return func(c *config) error {
		c.username, c.password = username, password
		return nil
	}
}

// WithKeepAlive sets the MQTT keepalive: a whole number of seconds, at least
// 1 s, default 30 s. The client sends one PINGREQ when a keepalive passed
// without a packet either way (at most one per period while idle), reports
// StateDegraded when the answer is a quarter keepalive overdue, and drops
// the connection after 1.45 × keepalive of silence, within the 1.5 ×
// keepalive the broker itself allows. Round trips up to 0.45 × keepalive
// are always tolerated; on links with round trips of seconds (NB-IoT,
// bloated LTE) choose the keepalive accordingly. On Linux a long upload is
// judged by what the broker's side acknowledges, so a slow uplink is not
// taken for a dead one.
func WithKeepAlive(d time.Duration) Option {
	return func(c *config) error {
		if d < time.Second || d > 65535*time.Second {
			return optionError("WithKeepAlive", "%v is out of range [1s, 65535s]", d)
		}
		if d%time.Second != 0 {
			return optionError("WithKeepAlive", "%v is not a whole number of seconds (MQTT counts keepalive in seconds)", d)
		}
		c.keepAlive = d
		return nil
	}
}

// WithConnectTimeout bounds one connection attempt: dial, TLS handshake and
// CONNACK together. Default 10 s.
func WithConnectTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return optionError("WithConnectTimeout", "%v must be positive", d)
		}
		c.connectTimeout = d
		return nil
	}
}

// WithBackoff replaces the reconnect policy. The client calls NextBackOff
// after every failed attempt and every loss, and Reset only after a
// connection stayed up for the stable period (WithStableAfter). If
// NextBackOff returns backoff.Stop the client gives up and closes with
// ErrGaveUp. The default is NewFullJitterBackOff(time.Second, 2*time.Minute).
func WithBackoff(b backoff.BackOff) Option {
	return func(c *config) error {
		if b == nil {
			return optionError("WithBackoff", "nil BackOff")
		}
		c.backoff = b
		return nil
	}
}

// WithStableAfter sets how long a connection must stay up before the backoff
// is reset. A broker that accepts and then drops the client (duplicate
// client ID, ACL kick) therefore meets a growing delay instead of a tight
// loop. Default 30 s.
func WithStableAfter(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return optionError("WithStableAfter", "%v must be positive", d)
		}
		c.stableAfter = d
		return nil
	}
}

// WithDegradedRTT makes the client report StateDegraded when a keepalive
// round trip takes longer than d. Zero (the default) leaves only the overdue
// answer as a cause of degradation.
func WithDegradedRTT(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return optionError("WithDegradedRTT", "%v must not be negative", d)
		}
		c.degradedRTT = d
		return nil
	}
}

// WithEventBuffer sets how many events each subscriber may have pending
// before the oldest are coalesced away (reported in Event.Dropped).
// Default 16.
func WithEventBuffer(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return optionError("WithEventBuffer", "%d must be at least 1", n)
		}
		c.eventBuffer = n
		return nil
	}
}

// WithLogger sets the logger. The default discards everything; the client
// never touches zap's globals.
func WithLogger(l *zap.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return optionError("WithLogger", "nil logger (use zap.NewNop() to discard)")
		}
		c.logger = l
		return nil
	}
}

// WithWill sets the message the broker publishes when the client vanishes
// without a DISCONNECT.
func WithWill(topicName string, payload []byte, qos byte, retained bool) Option {
	return func(c *config) error {
		if err := topic.Validate(topicName); err != nil {
			return fmt.Errorf("%w: WithWill: %w", ErrInvalidOption, err)
		}
		if qos > 2 {
			return optionError("WithWill", "QoS %d is not 0, 1 or 2", qos)
		}
		c.will = &engine.Message{Topic: topicName, Payload: append([]byte(nil), payload...), QoS: qos, Retain: retained}
		return nil
	}
}

// WithCleanSession chooses a clean session (the default) or a persistent
// one, where the broker keeps subscriptions and queued QoS 1/2 messages
// while the client is away. A persistent session needs a stable client ID.
func WithCleanSession(clean bool) Option {
	return func(c *config) error {
		c.cleanSession = clean
		return nil
	}
}

// StableClientID derives a client ID that stays the same across restarts
// of this machine: prefix, a dash, and 16 hex digits of a hash of the
// machine ID (/etc/machine-id, else the host name). Use it with persistent
// sessions. Two clients with one ID make the broker drop each in turn as the
// other connects, so replicas on one machine (and containers cloned from
// one image, which may share a machine ID) need a prefix of their own, such
// as "gateway-replica-2".
func StableClientID(prefix string) (string, error) {
	var seed []byte
	for _, path := range []string{"/etc/machine-id", "/var/lib/dbus/machine-id"} {
		if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) > 0 {
			seed = bytes.TrimSpace(b)
			break
		}
	}
	if seed == nil {
		host, err := os.Hostname()
		if err != nil || host == "" {
			return "", fmt.Errorf("steadymqtt: no machine ID and no host name to derive a client ID from: %v", err)
		}
		seed = []byte(host)
	}
	sum := sha256.Sum256(append([]byte(prefix+"\x00"), seed...))
	return prefix + "-" + hex.EncodeToString(sum[:8]), nil
}

func randomClientID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "steadymqtt-" + hex.EncodeToString(b[:])
}
