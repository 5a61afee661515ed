package steadymqtt

import (
	"bytes"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The status page: one html/template (status_page.html), rendered on the
// server, sparklines included; the page's script only fetches the page
// again and swaps in the fresh cards, so there is one renderer.

//go:embed status_page.html
var statusFiles embed.FS

var statusTemplates = template.Must(template.New("status").Funcs(template.FuncMap{
	"inc":     func(n int) int { return n + 1 },
	"clock":   func(t time.Time) string { return t.Local().Format("15:04:05") },
	"clockms": func(t time.Time) string { return t.Local().Format("15:04:05.000") },
	"stamp":   func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05 MST") },
	"iso":     func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
	"millis":  func(d time.Duration) string { return formatMillis(float64(d) / float64(time.Millisecond)) },
	"round":   roundDuration,
	"delay":   func(ms float64) string { return roundDuration(time.Duration(ms * float64(time.Millisecond))) },
}).ParseFS(statusFiles, "status_page.html"))

// statusPage is what the page template renders.
type statusPage struct {
	Nonce     string
	RefreshMS int64
	Generated time.Time
	Window    string
	JSONURL   string
	Clients   []statusCard
}

// statusCard is one client.
type statusCard struct {
	ID            string
	State         string
	Health        Health
	SinceAgo      string
	Local, Remote string
	LastError     string
	LastPacketAgo string
	Stats         Stats
	RTT, Outbox   sparkline
	Events        []statusEvent
	EventsSeen    uint64
	EventsMissed  uint64
	DiagnoseURL   string
}

func (s *statusHandler) servePage(w http.ResponseWriter, r *http.Request) {
	nonce := newNonce()
	pageHeaders(w.Header(), nonce)
	if r.Method == http.MethodHead {
		return
	}
	now := time.Now()
	base := pageBase(r)
	rep := s.report(now)
	page := statusPage{
		Nonce: nonce, RefreshMS: s.cfg.refresh.Milliseconds(), Generated: now,
		Window: roundDuration(s.cfg.window), JSONURL: base + "status.json",
	}
	for _, c := range rep.Clients {
		page.Clients = append(page.Clients, s.card(now, base, c))
	}
	render(w, "page", page)
}

// render executes a template into memory first, so that a failure is a
// 500, not half a page.
func render(w http.ResponseWriter, name string, data any) {
	var b bytes.Buffer
	if err := statusTemplates.ExecuteTemplate(&b, name, data); err != nil {
		http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	_, _ = w.Write(b.Bytes())
}

func (s *statusHandler) card(now time.Time, base string, c statusClientReport) statusCard {
	h := c.Health
	card := statusCard{
		ID: c.ClientID, State: h.State.String(), Health: h, Stats: c.Stats,
		SinceAgo: roundDuration(now.Sub(h.Since)), Local: addrText(h.LocalAddr), Remote: addrText(h.RemoteAddr),
		Events: c.Events, EventsSeen: c.EventsSeen, EventsMissed: c.EventsMissed,
		DiagnoseURL: base + c.Diagnose,
		RTT: newSparkline("rtt", now, s.cfg, c.Samples, func(x statusSample) (float64, bool) {
			return float64(x.RTT) / float64(time.Millisecond), x.HasRTT
		}, func(v float64) string { return formatMillis(v) + " ms" }),
		Outbox: newSparkline("outbox", now, s.cfg, c.Samples, func(x statusSample) (float64, bool) {
			return float64(x.Outbox), true
		}, func(v float64) string { return fmt.Sprintf("%.0f", v) }),
	}
	if h.LastError != nil {
		card.LastError = h.LastError.Error()
	}
	if !h.LastPacketAt.IsZero() {
		card.LastPacketAgo = roundDuration(now.Sub(h.LastPacketAt))
	}
	return card
}

// diagnosisPage is what the diagnosis template renders.
type diagnosisPage struct {
	Nonce     string
	ClientID  string
	Started   time.Time
	Took      string
	Diagnosis Diagnosis
}

func (s *statusHandler) serveDiagnosis(w http.ResponseWriter, id string, started time.Time, d Diagnosis) {
	nonce := newNonce()
	pageHeaders(w.Header(), nonce)
	render(w, "diagnosis", diagnosisPage{
		Nonce: nonce, ClientID: id, Started: started, Took: roundDuration(time.Since(started)), Diagnosis: d,
	})
}

// pageHeaders: the page may run only its own inline script and style, and
// talk only to its own server.
func pageHeaders(h http.Header, nonce string) {
	noStore(h)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'nonce-"+nonce+"'; style-src 'nonce-"+nonce+
		"'; connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'self'")
}

func newNonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// pageBase is what the page's links start with. They are relative to the
// page's directory; the one case where that directory is not the mount is
// a page requested without its trailing slash (http.StripPrefix("/status",
// …) serving "/status"): then the links go through the last element.
func pageBase(r *http.Request) string {
	if r.URL.Path != "" {
		return ""
	}
	u, err := url.ParseRequestURI(r.RequestURI)
	if err != nil {
		return ""
	}
	p := u.EscapedPath()
	if p == "" || strings.HasSuffix(p, "/") {
		return ""
	}
	return p[strings.LastIndexByte(p, '/')+1:] + "/"
}

func addrText(a interface{ String() string }) string {
	if a == nil {
		return ""
	}
	return a.String()
}

func formatMillis(ms float64) string {
	switch {
	case ms < 10:
		return fmt.Sprintf("%.2f", ms)
	case ms < 100:
		return fmt.Sprintf("%.1f", ms)
	}
	return fmt.Sprintf("%.0f", ms)
}

// roundDuration shows a duration as a person reads it: 850ms, 4.2s,
// 3m12s, 2h5m.
func roundDuration(d time.Duration) string {
	switch {
	case d < 0:
		d = 0
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	}
	s := d.Round(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	return s
}

// sparkline is one inline SVG series over the window: a path through the
// samples with a value, broken where there is none (no live connection)
// or where samples are missing, and a dot for each lone point and the
// last one.
type sparkline struct {
	Series string
	Path   string
	Dots   []sparkDot
	Points int    // samples with a value
	Last   string // the newest value, "" when none
	Peak   string
	Label  string
}

type sparkDot struct{ X, Y string }

const sparkWidth, sparkHeight, sparkPad = 260.0, 44.0, 3.0

func newSparkline(series string, now time.Time, cfg statusConfig, samples []statusSample,
	value func(statusSample) (float64, bool), format func(float64) string) sparkline {
	sp := sparkline{Series: series}
	peak := 0.0
	for _, x := range samples {
		if v, ok := value(x); ok {
			sp.Points++
			peak = max(peak, v)
		}
	}
	pos := func(x statusSample, v float64) (float64, float64) {
		px := sparkWidth * (1 - float64(now.Sub(x.At))/float64(cfg.window))
		px = min(max(px, 0), sparkWidth)
		py := sparkHeight - sparkPad
		if peak > 0 {
			py -= v / peak * (sparkHeight - 2*sparkPad)
		}
		return px, py
	}
	coord := func(f float64) string { return fmt.Sprintf("%.1f", f) }
	var (
		d       strings.Builder
		stretch strings.Builder // the current stretch, drawn once it has two points
		run     int             // points in the current stretch
		lone    sparkDot
		prevAt  time.Time
		lastV   float64
		lastDot sparkDot
		have    bool
	)
	end := func() {
		switch {
		case run == 1:
			sp.Dots = append(sp.Dots, lone)
		case run > 1:
			d.WriteString(stretch.String())
		}
		stretch.Reset()
		run = 0
	}
	for _, x := range samples {
		v, ok := value(x)
		if !ok || (!prevAt.IsZero() && x.At.Sub(prevAt) > 3*cfg.step) {
			end()
		}
		prevAt = x.At
		if !ok {
			continue
		}
		px, py := pos(x, v)
		dot := sparkDot{coord(px), coord(py)}
		if run == 0 {
			fmt.Fprintf(&stretch, "M%s %s", dot.X, dot.Y)
			lone = dot
		} else {
			fmt.Fprintf(&stretch, "L%s %s", dot.X, dot.Y)
		}
		run++
		lastV, lastDot, have = v, dot, true
	}
	lastRun := run
	end()
	if have && lastRun > 1 {
		sp.Dots = append(sp.Dots, lastDot)
	}
	sp.Path = d.String()
	if have {
		sp.Last, sp.Peak = format(lastV), format(peak)
		sp.Label = fmt.Sprintf("%s over the last %s: last %s, peak %s, %d points", series, roundDuration(cfg.window), sp.Last, sp.Peak, sp.Points)
	} else {
		sp.Label = fmt.Sprintf("%s over the last %s: no values", series, roundDuration(cfg.window))
	}
	return sp
}
