package steadymqtt

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"go.uber.org/zap"
)

// One received message: paho hands every PUBLISH, in order, to route
// (paho's default handler; paho's own per-filter routes are not used, they
// lose shared subscriptions on unsubscribe). route matches it against the
// registry and puts it in the bounded backlog of each matching
// subscription, never blocking paho's receive path, and acknowledges it
// right away, in the order received (MQTT-4.6.0-2). Waiting for the handler
// would let one slow handler fill the broker's in-flight window (Mosquitto:
// 20) and stop every subscription. Each subscription has one worker that
// calls its handler in order.

// Message is a message received on a subscription.
type Message struct {
	Topic     string
	Payload   []byte
	QoS       byte
	Retained  bool
	Duplicate bool
}

// MessageHandler receives the messages of one subscription, in order, on
// a goroutine of that subscription: a slow handler delays neither the
// connection's keepalive nor other subscriptions. A message is acknowledged
// to the broker once it is in the subscription's backlog. If the handler
// falls behind by more than the backlog (WithHandlerBacklog), messages are
// dropped, counted in Stats().HandlerDrops and reported by a
// KindHandlerOverflow event.
type MessageHandler func(Message)

// WithHandlerBacklog sets how many received messages may wait for each
// subscription's handler. Default 256.
func WithHandlerBacklog(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return optionError("WithHandlerBacklog", "%d must be at least 1", n)
		}
		c.handlerBacklog = n
		return nil
	}
}

type subscription struct {
	filter  string // as subscribed, possibly $share/group/…
	match   string // what topics are matched against
	qos     byte
	granted byte
	handler MessageHandler
	// active: the broker acknowledged it in the current session, so a
	// reconnect that finds the session present need not subscribe again.
	active bool
	queue  chan delivery
}

type delivery struct {
	msg Message
}

// registry holds the subscriptions the client (re)makes after a
// reconnect, and the unsubscriptions asked for while offline, which a
// broker that kept the session must still be told about.
type registry struct {
	mu      sync.Mutex
	subs    map[string]*subscription
	dropped map[string]struct{}
	stopped bool
	workers sync.WaitGroup
}

func newRegistry() *registry {
	return &registry{subs: make(map[string]*subscription), dropped: make(map[string]struct{})}
}

// Subscribe registers h for filter and, when connected, subscribes at the
// broker and waits for its SUBACK. While disconnected the subscription is
// only registered and nil is returned: it is made at the next connection.
// The registry survives reconnects; a filter subscribed again replaces its
// handler. Shared subscriptions ($share/group/filter) are accepted; their
// messages arrive with the plain topic.
func (c *Client) Subscribe(ctx context.Context, filter string, qos byte, h MessageHandler) error {
	match, err := sharedFilter(filter)
	if err != nil {
		return err
	}
	if err := validateFilter(match); err != nil {
		return err
	}
	if qos > 2 {
		return fmt.Errorf("%w: Subscribe: QoS %d is not 0, 1 or 2", ErrInvalidOption, qos)
	}
	if h == nil {
		return fmt.Errorf("%w: Subscribe: nil handler", ErrInvalidOption)
	}
	s := &subscription{filter: filter, match: match, qos: qos, handler: h,
		queue: make(chan delivery, c.cfg.handlerBacklog)}
	r := c.subs
	r.mu.Lock()
	if r.stopped || c.isClosed() {
		r.mu.Unlock()
		return ErrClosed
	}
	if old, ok := r.subs[filter]; ok {
		close(old.queue) // its worker finishes what it has, then ends
	}
	r.subs[filter] = s
	delete(r.dropped, filter)
	r.workers.Add(1)
	go c.work(s)
	r.mu.Unlock()
	pc := c.livePaho()
	if pc == nil || !c.State().Up() {
		return nil // made at the next connection
	}
	return c.subscribe(ctx, pc, s)
}

// sharedFilter returns the filter that topics are matched against:
// $share/group/filter → filter.
func sharedFilter(filter string) (string, error) {
	if !strings.HasPrefix(filter, "$share/") {
		return filter, nil
	}
	parts := strings.SplitN(filter, "/", 3)
	if len(parts) < 3 || parts[1] == "" || strings.ContainsAny(parts[1], "+#") {
		return "", fmt.Errorf("%w: %q: a shared subscription is $share/group/filter", ErrInvalidTopic, filter)
	}
	return parts[2], nil
}

func (c *Client) work(s *subscription) {
	defer c.subs.workers.Done()
	for d := range s.queue {
		c.deliver(s, d.msg)
	}
}

func (c *Client) deliver(s *subscription, m Message) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("message handler panicked; the subscription goes on", zap.String("filter", s.filter), zap.Any("panic", r))
		}
	}()
	s.handler(m)
}

// route is paho's default publish handler. It must never block.
func (c *Client) route(_ mqtt.Client, m mqtt.Message) {
	c.stats.received.Add(1)
	msg := Message{Topic: m.Topic(), Payload: m.Payload(), QoS: m.Qos(), Retained: m.Retained(), Duplicate: m.Duplicate()}
	r := c.subs
	r.mu.Lock()
	var targets []*subscription
	if !r.stopped {
		for _, s := range r.subs {
			if matchTopic(s.match, msg.Topic) {
				targets = append(targets, s)
			}
		}
	}
	var overflow []string
	for _, s := range targets {
		select {
		case s.queue <- delivery{msg: msg}:
		default:
			overflow = append(overflow, s.filter)
		}
	}
	r.mu.Unlock()
	m.Ack() // queued (or counted as dropped): the broker may send the next
	if len(targets) == 0 {
		c.stats.unrouted.Add(1)
	}
	for _, f := range overflow {
		c.stats.handlerDrops.Add(1)
		c.m.notice(KindHandlerOverflow, fmt.Errorf("steadymqtt: handler of %q is %d messages behind; message dropped", f, c.cfg.handlerBacklog), msg.Topic, "")
	}
}

// matchTopic reports whether topic matches filter (MQTT 3.1.1 section
// 4.7): '+' is one level, '#' the rest, and wildcards at the first level
// do not match topics starting with '$'.
func matchTopic(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		f, fRest, fMore := strings.Cut(filter, "/")
		if f == "#" {
			return true
		}
		t, tRest, tMore := strings.Cut(topic, "/")
		if f != "+" && f != t {
			return false
		}
		if !fMore || !tMore {
			// "a/#" also matches "a".
			return fMore == tMore || (!tMore && fRest == "#")
		}
		filter, topic = fRest, tRest
	}
}

func (c *Client) subscribe(ctx context.Context, pc mqtt.Client, s *subscription) error {
	tok := pc.Subscribe(s.filter, s.qos, nil) // nil: messages go to route
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("steadymqtt: subscribe %q: %w", s.filter, err)
	}
	granted := s.qos
	if st, ok := tok.(*mqtt.SubscribeToken); ok {
		// One filter per SUBSCRIBE, so the only result is ours (paho keys
		// it without the $share/group/ prefix).
		for _, g := range st.Result() {
			granted = g
		}
	}
	if granted == 0x80 {
		return fmt.Errorf("steadymqtt: subscribe %q: refused by the broker", s.filter)
	}
	c.subs.mu.Lock()
	s.granted, s.active = granted, true
	c.subs.mu.Unlock()
	return nil
}

// GrantedQoS returns the QoS the broker granted for filter (brokers may
// grant less than asked: nats-server grants at most 1), and false when
// the filter is not subscribed in the current session.
func (c *Client) GrantedQoS(filter string) (byte, bool) {
	c.subs.mu.Lock()
	defer c.subs.mu.Unlock()
	s, ok := c.subs.subs[filter]
	if !ok || !s.active {
		return 0, false
	}
	return s.granted, true
}

// syncSubscriptions brings the broker's session in line with the registry
// after a CONNACK: when the session is gone, everything is subscribed
// again; when it was kept, only what changed while offline.
func (c *Client) syncSubscriptions(pc mqtt.Client, sessionPresent bool) {
	c.subs.mu.Lock()
	var todo []*subscription
	for _, s := range c.subs.subs {
		if !sessionPresent {
			s.active = false
		}
		if !s.active {
			todo = append(todo, s)
		}
	}
	var drop []string
	if sessionPresent {
		for f := range c.subs.dropped {
			drop = append(drop, f)
		}
	}
	clear(c.subs.dropped)
	c.subs.mu.Unlock()

	for _, s := range todo {
		ctx, cancel := context.WithTimeout(c.stopCtx, c.cfg.connectTimeout)
		if err := c.subscribe(ctx, pc, s); err != nil {
			c.log.Warn("restoring subscription failed", zap.String("filter", s.filter), zap.Error(err))
		}
		cancel()
	}
	if len(drop) > 0 {
		tok := pc.Unsubscribe(drop...)
		if !tok.WaitTimeout(c.cfg.connectTimeout) || tok.Error() != nil {
			c.log.Warn("unsubscribing what was dropped while offline failed", zap.Strings("filters", drop), zap.Error(tok.Error()))
		}
	}
}

// Unsubscribe removes filters from the registry and, when connected, from
// the broker. Messages already received for them are still handed to
// their handlers.
func (c *Client) Unsubscribe(ctx context.Context, filters ...string) error {
	for _, f := range filters {
		match, err := sharedFilter(f)
		if err != nil {
			return err
		}
		if err := validateFilter(match); err != nil {
			return err
		}
	}
	up := c.State().Up()
	c.subs.mu.Lock()
	if c.subs.stopped || c.isClosed() {
		c.subs.mu.Unlock()
		return ErrClosed
	}
	for _, f := range filters {
		if s, ok := c.subs.subs[f]; ok {
			close(s.queue)
			delete(c.subs.subs, f)
		}
		if !up {
			c.subs.dropped[f] = struct{}{} // told to a broker that kept the session
		}
	}
	c.subs.mu.Unlock()
	pc := c.livePaho()
	if !up || pc == nil || len(filters) == 0 {
		return nil // told to the broker at the next connection, if it kept the session
	}
	tok := pc.Unsubscribe(filters...)
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop ends the subscription workers after they handed over what they
// hold, waiting at most timeout for handlers to return.
func (r *registry) stop(timeout time.Duration) {
	r.mu.Lock()
	if !r.stopped {
		r.stopped = true
		for _, s := range r.subs {
			close(s.queue)
		}
	}
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
	}
}
