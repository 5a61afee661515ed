// Package keepalive is the one keepalive owner of a connection: it sends
// the PINGREQs, judges the link by what the wire shows, reports a degraded
// link and closes a dead one.
//
// The schedule, as fractions of the keepalive period KA:
//
//   - ping once KA passed without a packet received or without one sent,
//     less a small margin (a tenth of KA, at most 100 ms) so that the
//     broker hears from the client within KA as MQTT asks, even when the
//     timer fires late or the broker rounds its 1.5 × KA down (mochi allows
//     exactly 1 s at KA 1 s): at most one PINGREQ per KA while idle
//     (gateways on LTE pay for every packet);
//   - degraded once the answer is a quarter KA overdue (1.25 KA of silence),
//     or when the last round trip exceeds the configured threshold;
//   - dead at 1.45 KA of silence: the promise is 1.5 KA, and the margin
//     absorbs scheduling delays on a loaded host. The answer to a ping thus
//     gets almost half a keepalive.
//
// Silence is judged by progress, not by packets alone: bytes trickling in,
// or a long write that the kernel keeps taking, count as signs of life.
package keepalive

import (
	"errors"
	"fmt"
	"time"

	"github.com/steadymqtt/steadymqtt/internal/clock"
	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

// Fractions of the keepalive period.
const (
	PingAfter     = 1.0
	DegradedAfter = 1.25
	DeadAfter     = 1.45
)

// pingMargin caps how early before a whole keepalive the ping goes.
const pingMargin = 100 * time.Millisecond

// Config sets the schedule of one monitor.
type Config struct {
	KeepAlive   time.Duration
	DegradedRTT time.Duration // 0: only an overdue answer degrades
	Clock       clock.Clock   // nil: the system clock
}

// Run watches conn until it closes or stop is closed. degrade is called
// with the reason whenever the link looks degraded, and with nil when it
// looks healthy (the caller keeps the state and ignores repeats).
func Run(cfg Config, conn *wire.Conn, degrade func(why error), stop <-chan struct{}) {
	ka := cfg.KeepAlive
	clk := cfg.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	frac := func(f float64) time.Duration { return time.Duration(float64(ka) * f) }
	pingAfter, degradedAfter, deadAfter := frac(PingAfter)-min(ka/10, pingMargin), frac(DegradedAfter), frac(DeadAfter)
	// The floor keeps a busy writer (ErrBusy) from spinning the loop; the
	// ceiling bounds how stale a decision can be.
	floor, ceiling := ka/40, ka/4
	for {
		s := conn.Stats()
		if s.SinceAlive >= deadAfter {
			_ = conn.CloseWithError(fmt.Errorf("%w: nothing received from the broker for %v (keepalive %v)",
				errs.KeepaliveTimeout, s.SinceAlive.Round(time.Millisecond), ka))
			return
		}
		idle := max(s.SinceReceived, s.SinceSent)
		if idle >= pingAfter {
			if err := conn.SendPing(ka / 4); err != nil && !errors.Is(err, wire.ErrBusy) {
				_ = conn.CloseWithError(fmt.Errorf("%w: sending PINGREQ: %w", errs.KeepaliveTimeout, err))
				return
			}
			s = conn.Stats()
			idle = max(s.SinceReceived, s.SinceSent)
		}
		var why error
		switch {
		case s.SinceAlive >= degradedAfter:
			why = fmt.Errorf("%w: keepalive answer overdue, nothing received for %v",
				errs.Degraded, s.SinceAlive.Round(time.Millisecond))
		case cfg.DegradedRTT > 0 && s.RTT > cfg.DegradedRTT:
			why = fmt.Errorf("%w: keepalive round trip %v above the %v threshold", errs.Degraded, s.RTT, cfg.DegradedRTT)
		}
		degrade(why)

		next := min(deadAfter-s.SinceAlive, ceiling)
		if why == nil && s.SinceAlive < degradedAfter {
			next = min(next, degradedAfter-s.SinceAlive)
		}
		if idle < pingAfter {
			next = min(next, pingAfter-idle)
		}
		t := clk.NewTimer(max(next, floor))
		select {
		case <-stop:
			t.Stop()
			return
		case <-conn.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}
