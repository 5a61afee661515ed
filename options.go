package steadymqtt

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.uber.org/zap"

	"github.com/steadymqtt/steadymqtt/internal/clock"
	"github.com/steadymqtt/steadymqtt/internal/dial"
	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/engine/paho311"
	"github.com/steadymqtt/steadymqtt/internal/manager"
	"github.com/steadymqtt/steadymqtt/internal/netif"
	"github.com/steadymqtt/steadymqtt/internal/netpick"
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
	// DefaultProtocol is the MQTT version spoken when WithProtocol is not
	// given.
	DefaultProtocol = ProtocolV311
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
	brokerFailback time.Duration
	maxPacket      int // 0: only what MQTT itself cannot encode is refused
	dropOldest     bool
	queueQoS0      bool
	inFlight       int
	keyWindow      time.Duration
	keyCount       int
	poisonAfter    int
	envelope       bool
	handlerBacklog int
	giveUpOn       []error
	presence       string // WithPresence topic
	protocol       Protocol
	sessionExpiry  time.Duration // 0: the engine's default
}

// newConfig applies the options and validates the result.
func newConfig(opts []Option) (*config, error) {
	cfg := defaultConfig()
	var errs []error
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(cfg); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// dialConfig is what every connection attempt is made with; the client
// adds its picker and its receive path.
func (c *config) dialConfig() manager.Config {
	return manager.Config{
		Brokers: c.brokers, ClientID: c.clientID, Username: c.username, Password: c.password,
		CleanSession: c.cleanSession, Will: c.will,
		KeepAlive: c.keepAlive, DegradedRTT: c.degradedRTT,
		ConnectTimeout: c.connectTimeout, StableAfter: c.stableAfter, Backoff: c.backoff,
		TLS: &c.tls, SourceIP: c.sourceIP,
		Engine: paho311.Engine{}, Clock: c.clock, FixedOrder: c.fixedOrder,
		Failback: c.brokerFailback, GiveUp: c.giveUp,
		Protocol: c.protocol, SessionExpiry: c.sessionExpiry,
	}
}

// pickConfig is what the choice of interface and source is made with.
func (c *config) pickConfig() netpick.Config {
	return netpick.Config{
		Interfaces: c.interfaces, Family: c.family, Failback: c.failback, SourceIP: c.sourceIP,
		Brokers: len(c.brokers), Host: c.netSource, Clock: c.clock,
	}
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
		brokerFailback: DefaultBrokerFailback,
		netSource:      netif.System{},
		outboxCount:    DefaultOutboxCount,
		outboxBytes:    DefaultOutboxBytes,
		inFlight:       DefaultInFlight,
		keyWindow:      DefaultKeyWindow,
		keyCount:       DefaultKeyCount,
		poisonAfter:    DefaultPoisonAfter,
		handlerBacklog: DefaultHandlerBacklog,
		protocol:       DefaultProtocol,
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
	if c.presence != "" {
		if c.will != nil {
			return optionError("WithPresence", "it sets the will; drop WithWill")
		}
		c.will = presenceWill(c.presence, c.clientID)
	}
	if c.backoff == nil {
		b := NewFullJitterBackOff(time.Second, 2*time.Minute)
		b.OutageFactor, b.Now = 2, c.clock.Now
		c.backoff = b
	}
	return nil
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
// ErrGaveUp. The default is NewFullJitterBackOff(time.Second, 2*time.Minute)
// with OutageFactor 2: no wait longer than twice the outage so far.
func WithBackoff(b backoff.BackOff) Option {
	return func(c *config) error {
		if b == nil {
			return optionError("WithBackoff", "nil BackOff")
		}
		c.backoff = b
		return nil
	}
}

// WithGiveUpOn names failures that retrying will not fix, such as
// ErrNotAuthorized or ErrInterfaceNotFound. When a connection attempt fails
// with an error that matches one of them (errors.Is), the client stops
// trying and closes, and Connect returns at once with an error that matches
// both ErrGaveUp and the cause. A connection that was up and is lost is
// always retried. By default every failure is retried.
func WithGiveUpOn(targets ...error) Option {
	return func(c *config) error {
		for _, t := range targets {
			if t == nil {
				return optionError("WithGiveUpOn", "a nil error matches nothing")
			}
		}
		c.giveUpOn = append(c.giveUpOn, targets...)
		return nil
	}
}

// giveUp reports whether err is one the user named in WithGiveUpOn.
func (c *config) giveUp(err error) bool {
	for _, t := range c.giveUpOn {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
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
