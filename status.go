package steadymqtt

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// StatusHandler serves a status page for operators: one self-contained
// HTML page (no external assets; a small inline script and inline SVG)
// with a card per client, in the order given: its state in colour and
// since when, broker, interface, local and remote address,
// session-present, the keepalive round trip and the outbox depth as
// sparklines over the last 10 minutes (one point per 5 s), the counters,
// the last 50 events with their reasons (error and step), and a button
// that runs the client's Diagnose and shows the report. The page reloads
// its data every 2 s (every 5 s without JavaScript).
//
// Paths, relative to where the handler is mounted; every link on the page
// is relative, so it works under any prefix (http.StripPrefix):
//
//	GET  ./                   the page
//	GET  ./status.json        the same data as JSON
//	POST ./diagnose?client=ID run Client.Diagnose (GET too); the report as
//	                          HTML, or as JSON (the Diagnosis, as
//	                          cmd/mqttdoctor -json prints it) with
//	                          Accept: application/json or format=json
//
// status.json is {"generated_at", "window_seconds", "step_seconds",
// "clients": [{"client_id", "health" (as Health marshals), "stats" (as
// Stats marshals), "samples": [{"t", "rtt_ms" (null while not connected),
// "outbox"}] (oldest first), "events": [{"seq", "time", "kind", "from",
// "to", "error", "step", "attempt", "delay_ms", "broker", "interface",
// "session_present", "topic", "dropped"}] (newest first), "events_seen",
// "events_missed", "diagnose" (the relative URL of the diagnosis)}]}.
//
// The page shows what Health, Stats and the events say, with broker URLs
// redacted as everywhere else; it shows no option, credential or message
// payload. A diagnosis connects to the broker (a client ID of its own, a
// round trip on a topic of its own): mount the handler where only
// operators reach it. One diagnosis per client runs at a time; another
// request meanwhile gets 429.
//
// Create the handler once per set of clients, before Connect to see every
// event: it subscribes to each client's events (OnEvent) and samples each
// client every 5 s on a goroutine of its own, which ends when every client
// is closed. Client IDs should be unique among the clients given; the
// diagnosis of an ID shared by two runs the first one's.
func StatusHandler(clients ...*Client) http.Handler {
	return newStatusHandler(defaultStatusConfig, clients...)
}

// statusConfig holds the page's bounds; tests shorten them.
type statusConfig struct {
	window   time.Duration // how far back the sparklines go
	step     time.Duration // one sample per step
	events   int           // events kept per client
	refresh  time.Duration // how often the page reloads its data
	diagnose time.Duration // the longest a diagnosis may take
}

var defaultStatusConfig = statusConfig{
	window: 10 * time.Minute, step: 5 * time.Second, events: 50,
	refresh: 2 * time.Second, diagnose: time.Minute,
}

// sampleCapacity is the ring size that spans the window: one sample per
// step, and one more for the step in progress.
func (c statusConfig) sampleCapacity() int { return int(c.window/c.step) + 1 }

type statusHandler struct {
	cfg       statusConfig
	clients   []*statusClient
	open      atomic.Int64  // clients not closed yet
	allClosed chan struct{} // closed with the last client: the sampler ends
}

type statusClient struct {
	c          *Client
	hist       *statusHistory
	closedOnce sync.Once
	diagnosing sync.Mutex // held while a diagnosis runs
}

func newStatusHandler(cfg statusConfig, clients ...*Client) *statusHandler {
	s := &statusHandler{cfg: cfg, allClosed: make(chan struct{})}
	s.open.Store(int64(len(clients)))
	for _, c := range clients {
		if c == nil {
			panic("steadymqtt: StatusHandler: nil client")
		}
		sc := &statusClient{c: c, hist: newStatusHistory(cfg)}
		s.clients = append(s.clients, sc)
		c.OnEvent(func(ev Event) {
			sc.hist.event(newStatusEvent(ev))
			sc.hist.observe(time.Now(), c.Health())
			if ev.Kind == KindState && ev.To == StateClosed {
				s.closed(sc)
			}
		})
		sc.hist.observe(time.Now(), c.Health())
		// A client closed before the subscription delivers no more events;
		// its state already says so (the state changes before the event
		// stream closes).
		if c.State() == StateClosed {
			s.closed(sc)
		}
	}
	if len(clients) == 0 {
		close(s.allClosed)
		return s
	}
	go s.sample()
	return s
}

// closed counts a client out; the last one stops the sampler.
func (s *statusHandler) closed(sc *statusClient) {
	sc.closedOnce.Do(func() {
		if s.open.Add(-1) == 0 {
			close(s.allClosed)
		}
	})
}

// sample takes a Health snapshot of every client each step, so that the
// sparklines have points while nobody looks and nothing happens.
func (s *statusHandler) sample() {
	t := time.NewTicker(s.cfg.step)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.observeAll(time.Now())
		case <-s.allClosed:
			return
		}
	}
}

func (s *statusHandler) observeAll(now time.Time) {
	for _, sc := range s.clients {
		sc.hist.observe(now, sc.c.Health())
	}
}

func (s *statusHandler) find(id string) *statusClient {
	for _, sc := range s.clients {
		if sc.c.ClientID() == id {
			return sc
		}
	}
	return nil
}

// ServeHTTP routes on the last element of the path, so the handler works
// mounted with or without http.StripPrefix.
func (s *statusHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch p[strings.LastIndexByte(p, '/')+1:] {
	case "", "index.html":
		if allow(w, r, http.MethodGet, http.MethodHead) {
			s.servePage(w, r)
		}
	case "status.json":
		if allow(w, r, http.MethodGet, http.MethodHead) {
			s.serveJSON(w, r)
		}
	case "diagnose":
		if allow(w, r, http.MethodGet, http.MethodPost) {
			s.serveDiagnose(w, r)
		}
	default:
		http.NotFound(w, r)
	}
}

func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// statusReport is the document of status.json, and what the page shows.
type statusReport struct {
	GeneratedAt   time.Time            `json:"generated_at"`
	WindowSeconds float64              `json:"window_seconds"`
	StepSeconds   float64              `json:"step_seconds"`
	Clients       []statusClientReport `json:"clients"`
}

type statusClientReport struct {
	ClientID     string         `json:"client_id"`
	Health       Health         `json:"health"`
	Stats        Stats          `json:"stats"`
	Samples      []statusSample `json:"samples"` // oldest first
	Events       []statusEvent  `json:"events"`  // newest first
	EventsSeen   uint64         `json:"events_seen"`
	EventsMissed uint64         `json:"events_missed"`
	Diagnose     string         `json:"diagnose"` // relative to status.json
}

// report snapshots every client. A request is an observation too, so the
// sparklines end at the moment shown.
func (s *statusHandler) report(now time.Time) statusReport {
	rep := statusReport{
		GeneratedAt: now, WindowSeconds: s.cfg.window.Seconds(), StepSeconds: s.cfg.step.Seconds(),
		Clients: make([]statusClientReport, 0, len(s.clients)),
	}
	for _, sc := range s.clients {
		h := sc.c.Health()
		sc.hist.observe(now, h)
		samples, events, seen, missed := sc.hist.snapshot(now, s.cfg.window)
		rep.Clients = append(rep.Clients, statusClientReport{
			ClientID: sc.c.ClientID(), Health: h, Stats: sc.c.Stats(),
			Samples: samples, Events: events, EventsSeen: seen, EventsMissed: missed,
			Diagnose: diagnoseLink(sc.c.ClientID()),
		})
	}
	return rep
}

func diagnoseLink(id string) string { return "diagnose?client=" + url.QueryEscape(id) }

func (s *statusHandler) serveJSON(w http.ResponseWriter, r *http.Request) {
	noStore(w.Header())
	w.Header().Set("Content-Type", "application/json")
	if r.Method == http.MethodHead {
		return
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(s.report(time.Now()))
}

func (s *statusHandler) serveDiagnose(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10) // a form with one field at most
	id := r.FormValue("client")
	sc := s.find(id)
	if sc == nil {
		http.Error(w, "no client with that ID on this page", http.StatusNotFound)
		return
	}
	if !sc.diagnosing.TryLock() {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "a diagnosis of this client is already running", http.StatusTooManyRequests)
		return
	}
	defer sc.diagnosing.Unlock()
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.diagnose)
	defer cancel()
	started := time.Now()
	d := sc.c.Diagnose(ctx)

	noStore(w.Header())
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(d)
		return
	}
	s.serveDiagnosis(w, id, started, d)
}

func wantsJSON(r *http.Request) bool {
	return r.FormValue("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json")
}

func noStore(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
}
