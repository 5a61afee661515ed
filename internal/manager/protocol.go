package manager

import (
	"context"
	"errors"
	"net/url"
	"sync"

	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/netpick"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// Protocol is the MQTT version an attempt speaks.
type Protocol int

const (
	// ProtocolAuto tries MQTT 5 and falls back to 3.1.1 for a broker that
	// refuses the version, remembered per broker.
	ProtocolAuto Protocol = iota
	ProtocolV311
	ProtocolV5
)

// Learned remembers, for ProtocolAuto, the brokers that refused MQTT 5,
// for the client's life: they are not asked again.
type Learned struct {
	mu   sync.Mutex
	v311 map[string]bool
}

func (l *Learned) only311(u *url.URL) bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.v311[u.Host]
}

func (l *Learned) refusedV5(u *url.URL) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.v311 == nil {
		l.v311 = map[string]bool{}
	}
	l.v311[u.Host] = true
}

// engineFor is the engine of the next attempt to u.
func (cfg *Config) engineFor(u *url.URL) (engine.Engine, bool) {
	switch {
	case cfg.EngineV5 == nil, cfg.Protocol == ProtocolV311, cfg.Protocol == ProtocolAuto && cfg.Learned.only311(u):
		return cfg.Engine, false
	case cfg.Protocol == ProtocolV5:
		return cfg.EngineV5, false
	}
	return cfg.EngineV5, true // auto: may fall back
}

// Open is the way of every attempt from the chosen source to a session:
// dial, observe, MQTT handshake, until ctx ends; with ProtocolAuto, a
// broker that refuses MQTT 5 is asked again in 3.1.1 at once, on a new
// connection. The diagnosis takes the same way, so that what it tests is
// what the client does.
func Open(ctx context.Context, cfg *Config, u *url.URL, ch netpick.Choice) (engine.Session, *wire.Conn, error) {
	eng, fallback := cfg.engineFor(u)
	sess, conn, err := open(ctx, cfg, eng, u, ch)
	if err != nil && fallback && errors.Is(err, errs.BadProtocolVersion) && errs.StepOf(err) == errs.StepConnect {
		cfg.Learned.refusedV5(u)
		return open(ctx, cfg, cfg.Engine, u, ch)
	}
	return sess, conn, err
}

// String is "auto", "3.1.1" or "5".
func (p Protocol) String() string {
	switch p {
	case ProtocolAuto:
		return "auto"
	case ProtocolV311:
		return "3.1.1"
	case ProtocolV5:
		return "5"
	}
	return "Protocol(" + itoa(int(p)) + ")"
}

// MarshalText writes the protocol by name, in JSON too.
func (p Protocol) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

func itoa(n int) string {
	if n < 0 {
		return "-" + itoa(-n)
	}
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
