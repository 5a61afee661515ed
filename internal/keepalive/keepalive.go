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
// a long write that the kernel keeps taking, and, where the kernel tells
// (Config.Upload), the peer acknowledging the bytes of an upload count as
// signs of life. A PINGREQ waits behind an upload; a link whose peer keeps
// acknowledging it is alive however long it takes, and one whose peer
// acknowledges nothing is dead on the usual schedule.
//
// While degraded and busy, the monitor pings every quarter keepalive, so
// that a link that recovered under load is seen to have recovered: a busy
// link would otherwise never be measured again. An idle degraded link
// keeps the one ping per keepalive.
package keepalive

import (
	"errors"
	"fmt"
	"time"

	"github.com/steadymqtt/steadymqtt/internal/clock"
	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/tcpstat"
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
	// Upload reads the kernel's view of the socket (tcpstat.Read); nil, or
	// false from it, where the system cannot tell.
	Upload func() (tcpstat.Stat, bool)
}

// uploading is how many bytes must wait in the send queue for their
// acknowledgement to count as the peer's sign of life: more than a
// PINGREQ or a PUBACK, which a broker's kernel acknowledges even when the
// broker itself hangs.
const uploading = 64

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
	var (
		up      tcpstat.Stat
		upOK    bool
		ackedAt time.Time // last time the peer acknowledged upload bytes
		wasDegr bool
		// last PINGREQ sent to measure a degraded link again, and the
		// packet count after the last ping of any kind
		rechecked     = clk.Now()
		pingedPackets uint64
	)
	polled := clk.Now()
	if cfg.Upload != nil {
		up, upOK = cfg.Upload()
	}
	for {
		now := clk.Now()
		s := conn.Stats()
		if cfg.Upload != nil {
			st, ok := cfg.Upload()
			if ok && upOK && st.Acked > up.Acked && up.Queued > uploading {
				// Acknowledged some time since the last poll: counting from
				// that poll keeps the deadline on the safe side.
				ackedAt = polled
			}
			up, upOK = st, ok
		}
		polled = now
		// Where the kernel tells what the peer acknowledged, that is the
		// judge of an upload: a write returning only says the local buffer
		// took the bytes, which it does for a dead path too.
		silence := s.SinceAlive
		if upOK {
			silence = s.SinceRead
			if !ackedAt.IsZero() {
				silence = min(silence, now.Sub(ackedAt))
			}
		}
		if silence >= deadAfter {
			_ = conn.Abort(fmt.Errorf("%w: nothing received from the broker for %v (keepalive %v)",
				errs.KeepaliveTimeout, silence.Round(time.Millisecond), ka))
			return
		}
		idle := max(s.SinceReceived, s.SinceSent)
		// Traffic since the last ping, beyond the ping and its answer: on
		// an idle link the regular ping measures it.
		busy := s.PacketsIn+s.PacketsOut > pingedPackets+1
		recheck := wasDegr && busy && now.Sub(rechecked) >= ceiling && s.PingOutstanding == 0
		if idle >= pingAfter || recheck {
			// The ping's own write may take no longer than the link has left.
			if err := conn.SendPing(max(min(ka/4, deadAfter-silence), time.Millisecond)); err != nil && !errors.Is(err, wire.ErrBusy) {
				_ = conn.Abort(fmt.Errorf("%w: sending PINGREQ: %w", errs.KeepaliveTimeout, err))
				return
			}
			s = conn.Stats()
			pingedPackets = s.PacketsIn + s.PacketsOut
			if recheck {
				rechecked = now
			}
			idle = max(s.SinceReceived, s.SinceSent)
		}
		var why error // a StepError of the keepalive, like the loss it may lead to
		switch {
		case silence >= degradedAfter:
			why = fmt.Errorf("%w: keepalive answer overdue, nothing received for %v",
				errs.Degraded, silence.Round(time.Millisecond))
		case cfg.DegradedRTT > 0 && s.RTT > cfg.DegradedRTT:
			why = fmt.Errorf("%w: keepalive round trip %v above the %v threshold", errs.Degraded, s.RTT, cfg.DegradedRTT)
		}
		degrade(errs.AtStep(errs.StepKeepalive, why))
		wasDegr = why != nil

		next := min(deadAfter-silence, ceiling)
		if why == nil && silence < degradedAfter {
			next = min(next, degradedAfter-silence)
		}
		if idle < pingAfter {
			next = min(next, pingAfter-idle)
		}
		if !clock.Wait(clk, max(next, floor), stop, conn.Done()) {
			return
		}
	}
}
