package steadymqtt

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The status.json document as a reader sees it.
type statusDoc struct {
	GeneratedAt   time.Time `json:"generated_at"`
	WindowSeconds float64   `json:"window_seconds"`
	Clients       []struct {
		ClientID string `json:"client_id"`
		Health   struct {
			State          string `json:"state"`
			Broker         string `json:"broker"`
			LocalAddr      string `json:"local_addr"`
			RemoteAddr     string `json:"remote_addr"`
			SessionPresent bool   `json:"session_present"`
		} `json:"health"`
		Stats struct {
			Reconnects uint64 `json:"reconnects"`
		} `json:"stats"`
		Samples []struct {
			T      time.Time `json:"t"`
			RTT    *float64  `json:"rtt_ms"`
			Outbox int       `json:"outbox"`
		} `json:"samples"`
		Events []struct {
			Seq  uint64    `json:"seq"`
			Time time.Time `json:"time"`
			Kind string    `json:"kind"`
			From string    `json:"from"`
			To   string    `json:"to"`
			Err  string    `json:"error"`
			Step string    `json:"step"`
		} `json:"events"`
		EventsSeen uint64 `json:"events_seen"`
		Diagnose   string `json:"diagnose"`
	} `json:"clients"`
}

// fastStatus samples often, so a test sees the sparklines fill in.
var fastStatus = statusConfig{window: time.Minute, step: 100 * time.Millisecond, events: 50, refresh: time.Second, diagnose: 30 * time.Second}

func statusGet(t *testing.T, h http.Handler, target string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	return rec.Code, rec.Body.String()
}

func statusJSON(t *testing.T, h http.Handler) statusDoc {
	t.Helper()
	code, body := statusGet(t, h, "/status.json")
	require.Equal(t, http.StatusOK, code, body)
	var doc statusDoc
	require.NoError(t, json.Unmarshal([]byte(body), &doc), body)
	return doc
}

// rttClient measures the round trip every second and reconnects at once.
func rttClient(t *testing.T, id, brokerURL string) *Client {
	t.Helper()
	return newClient(t, WithBroker(brokerURL), WithClientID(id), WithKeepAlive(time.Second),
		WithBackoff(NewFullJitterBackOff(50*time.Millisecond, 200*time.Millisecond)))
}

// cardOf is the HTML of one client's card.
func cardOf(t *testing.T, page, id string) string {
	t.Helper()
	start := strings.Index(page, `<section class="client" data-client="`+html.EscapeString(id)+`"`)
	require.GreaterOrEqual(t, start, 0, "no card for %s in:\n%s", id, page)
	end := strings.Index(page[start:], "</section>")
	require.Greater(t, end, 0)
	return page[start : start+end]
}

func TestStatusPageShowsEachClient(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	opts := []Option{WithBroker(b.URL()), WithKeepAlive(time.Second)}
	telemetry := newClient(t, append(opts, WithClientID("gw-telemetry"))...)
	control := newClient(t, append(opts, WithClientID("gw-control"))...)
	h := StatusHandler(telemetry, control)
	connect(t, telemetry)
	connect(t, control)

	// Events reach the page on a goroutine of their own, a moment after
	// Connect returns.
	var page string
	require.Eventually(t, func() bool {
		_, page = statusGet(t, h, "/")
		return strings.Count(page, "connecting → connected") == 2
	}, 5*time.Second, 10*time.Millisecond)
	code, page := statusGet(t, h, "/")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, page, "<!DOCTYPE html>")
	require.NotContains(t, page, "http://", "no external assets")
	require.NotContains(t, page, "https://", "no external assets")
	for _, c := range []*Client{telemetry, control} {
		cd := cardOf(t, page, c.ClientID())
		require.Contains(t, cd, `data-state="connected"`)
		require.Contains(t, cd, html.EscapeString(c.Health().Broker))
		require.Contains(t, cd, c.Health().LocalAddr.String(), "local address")
		require.Contains(t, cd, c.Health().RemoteAddr.String(), "remote address")
		require.Contains(t, cd, "idle → connecting")
		require.Contains(t, cd, "connecting → connected")
		require.Contains(t, cd, `data-series="rtt"`)
		require.Contains(t, cd, `data-series="outbox"`)
		require.Contains(t, cd, `action="diagnose?client=`+c.ClientID()+`"`)
	}
	require.Less(t, strings.Index(page, "gw-telemetry"), strings.Index(page, "gw-control"), "in the order given")

	doc := statusJSON(t, h)
	require.Len(t, doc.Clients, 2)
	for i, c := range []*Client{telemetry, control} {
		got := doc.Clients[i]
		require.Equal(t, c.ClientID(), got.ClientID)
		require.Equal(t, "connected", got.Health.State)
		require.Equal(t, c.Health().Broker, got.Health.Broker)
		require.NotEmpty(t, got.Health.LocalAddr)
		require.Equal(t, "diagnose?client="+c.ClientID(), got.Diagnose)
		require.GreaterOrEqual(t, len(got.Events), 2)
		require.Equal(t, "connected", got.Events[0].To, "newest first")
		require.Equal(t, "connecting", got.Events[1].To)
		require.NotEmpty(t, got.Samples, "a request is a sample")
	}
}

func TestStatusPageShowsTheReconnect(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	c := rttClient(t, "reconnect", b.URL())
	other := newClient(t, WithBroker(b.URL()), WithClientID("reconnect-other"))
	h := newStatusHandler(fastStatus, c, other)
	r := record(c)
	connect(t, c)
	connect(t, other)

	b.Stop()
	lostAt := r.next(t, 5*time.Second, "reconnecting", to(StateReconnecting)).Time
	require.Eventually(t, func() bool {
		_, page := statusGet(t, h, "/")
		return strings.Contains(cardOf(t, page, c.ClientID()), `data-state="reconnecting"`)
	}, 5*time.Second, 20*time.Millisecond, "the page shows the loss")
	time.Sleep(4 * fastStatus.step) // a few samples of the outage
	require.NoError(t, b.Start())
	back := r.next(t, 10*time.Second, "connected again", to(StateConnected))

	// The RTT series gets points from the new connection: keepalive 1 s.
	var doc statusDoc
	require.Eventually(t, func() bool {
		doc = statusJSON(t, h)
		for _, s := range doc.Clients[0].Samples {
			if s.RTT != nil && *s.RTT > 0 && s.T.After(back.Time) {
				return true
			}
		}
		return false
	}, 10*time.Second, 50*time.Millisecond, "RTT measured after the reconnect")

	got := doc.Clients[0]
	require.Equal(t, "connected", got.Health.State)
	require.GreaterOrEqual(t, got.Stats.Reconnects, uint64(1))
	var lost, regained bool
	for _, ev := range got.Events {
		lost = lost || (ev.From == "connected" && ev.To == "reconnecting" && ev.Err != "")
		regained = regained || (ev.From == "reconnecting" && ev.To == "connected")
	}
	require.True(t, lost, "the loss with its reason: %+v", got.Events)
	require.True(t, regained, "the reconnect: %+v", got.Events)
	// While the broker was down there was no link, so no RTT: a gap.
	var gap bool
	for _, s := range got.Samples {
		gap = gap || (s.RTT == nil && s.T.After(lostAt) && s.T.Before(back.Time))
	}
	require.True(t, gap, "no RTT drawn while reconnecting")

	_, page := statusGet(t, h, "/")
	cd := cardOf(t, page, c.ClientID())
	require.Contains(t, cd, `data-state="connected"`)
	require.Contains(t, cd, "connected → reconnecting")
	require.Contains(t, cd, "reconnecting → connected")
	require.Contains(t, cd, `data-to="reconnecting"`)
	require.Regexp(t, `data-series="rtt" data-points="[1-9][0-9]*"`, cd)
	require.Regexp(t, `<path d="M[0-9.]+ [0-9.]+L`, cd, "a line, not only dots")
}

func TestStatusHistoryIsBounded(t *testing.T) {
	leakCheck(t)
	cfg := statusConfig{window: time.Second, step: 100 * time.Millisecond, events: 8, refresh: time.Second, diagnose: time.Second}
	// Never connected: every publish past the first drops the oldest, and
	// each drop is an event.
	c := newClient(t, WithBroker("tcp://127.0.0.1:1"), WithClientID("bounded"),
		WithOutboxLimit(1, 1<<20), WithDropOldest())
	h := newStatusHandler(cfg, c)
	const n = 3000
	for i := range n {
		c.PublishAsync(t.Context(), "t/bounded", []byte(fmt.Sprint(i)), WithQoS(1))
	}
	require.Eventually(t, func() bool { return statusJSON(t, h).Clients[0].EventsSeen >= n-1 },
		10*time.Second, 10*time.Millisecond, "every drop seen (delivered or coalesced)")
	hist := h.clients[0].hist
	samples, events := hist.counts()
	require.Equal(t, cfg.events, events, "the event ring stays at its bound")
	doc := statusJSON(t, h)
	require.Len(t, doc.Clients[0].Events, cfg.events)
	require.Equal(t, "message-dropped", doc.Clients[0].Events[0].Kind)
	require.Greater(t, doc.Clients[0].Events[0].Seq, doc.Clients[0].Events[cfg.events-1].Seq, "newest first, oldest gone")
	require.LessOrEqual(t, samples, cfg.sampleCapacity())

	// A long run of observations, one per step: the samples stay at the
	// bound that spans the window; within a step they merge.
	start := time.Now().Truncate(cfg.step)
	for i := range 10 * n {
		hist.observe(start.Add(time.Duration(i)*cfg.step/2), Health{State: StateConnected, RTT: time.Millisecond, Outbox: i})
	}
	samples, events = hist.counts()
	require.Equal(t, cfg.sampleCapacity(), samples)
	require.Equal(t, cfg.events, events)
	last := hist.samples.newest()
	require.Equal(t, 10*n-1, last.Outbox, "the deepest outbox of the step")
}

func TestStatusHandlerUnderConcurrentRequests(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	c1 := rttClient(t, "concurrent-1", b.URL())
	c2 := newClient(t, WithBroker(b.URL()), WithClientID("concurrent-2"))
	srv := httptest.NewServer(newStatusHandler(fastStatus, c1, c2))
	t.Cleanup(srv.Close)
	connect(t, c1)
	connect(t, c2)

	stop := make(chan struct{})
	var churn sync.WaitGroup
	churn.Add(1)
	go func() { // events and samples change while pages are rendered
		defer churn.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c2.PublishAsync(t.Context(), "t/churn", []byte("x"), WithQoS(1))
			if i%20 == 10 {
				b.Kick(c1.ClientID())
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				path := []string{"/", "/status.json"}[(w+i)%2]
				resp, err := srv.Client().Get(srv.URL + path)
				if err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("%s: %s", path, resp.Status)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	churn.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func TestStatusPageShowsNoSecret(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	u, err := url.Parse(b.URL())
	require.NoError(t, err)
	u.User = url.UserPassword("user", "pa55word")
	withCreds := newClient(t, WithBroker(b.URL()), WithClientID("secret-creds"), WithCredentials("u", "s3cret"),
		WithBackoff(NewFullJitterBackOff(50*time.Millisecond, 100*time.Millisecond)))
	inURL := newClient(t, WithBroker(u.String()), WithClientID("secret-url"),
		WithBackoff(NewFullJitterBackOff(50*time.Millisecond, 100*time.Millisecond)))
	h := newStatusHandler(fastStatus, withCreds, inURL)
	r := record(inURL)
	connect(t, withCreds)
	connect(t, inURL)
	// Failed attempts put the broker's URL into errors and events too.
	b.Stop()
	r.next(t, 5*time.Second, "a failed attempt", func(ev Event) bool { return ev.From == ev.To && ev.Err != nil })

	var bodies []string
	for _, target := range []string{"/", "/status.json"} {
		code, body := statusGet(t, h, target)
		require.Equal(t, http.StatusOK, code)
		bodies = append(bodies, body)
	}
	for _, id := range []string{"secret-creds", "secret-url"} {
		for _, accept := range []string{"text/html", "application/json"} {
			req := httptest.NewRequest(http.MethodPost, "/diagnose?client="+id, nil)
			req.Header.Set("Accept", accept)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			bodies = append(bodies, rec.Body.String())
		}
	}
	for _, body := range bodies {
		require.NotContains(t, body, "s3cret")
		require.NotContains(t, body, "pa55word")
	}
	require.Contains(t, bodies[1], "secret-url", "the JSON names the client")
	require.Contains(t, bodies[1], "127.0.0.1", "and its broker, redacted")
}

func TestStatusDiagnose(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	c := newClient(t, WithBroker(b.URL()), WithClientID("diag-me"))
	h := newStatusHandler(fastStatus, c)
	connect(t, c)

	post := func(target, accept string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, target, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}

	rec := post("/diagnose?client=diag-me", "application/json")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var d struct {
		OK      bool `json:"ok"`
		Reports []struct {
			Broker string `json:"broker"`
			Steps  []struct {
				Name   string `json:"name"`
				Status string `json:"status"`
			} `json:"steps"`
		} `json:"reports"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &d), rec.Body.String())
	require.True(t, d.OK, rec.Body.String())
	require.Len(t, d.Reports, 1)
	require.Equal(t, c.Health().Broker, d.Reports[0].Broker)
	var names []string
	for _, s := range d.Reports[0].Steps {
		names = append(names, s.Name)
	}
	require.Contains(t, names, StepConnect)

	rec = post("/diagnose?client=diag-me", "")
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), `id="diagnosis" data-ok="true"`)
	require.Contains(t, rec.Body.String(), `data-step="connect" data-status="ok"`)
	require.Contains(t, rec.Body.String(), `<a href="./">`, "back to the page, relatively")

	code, body := statusGet(t, h, "/diagnose?client=diag-me&format=json")
	require.Equal(t, http.StatusOK, code, "GET works too")
	require.Contains(t, body, `"reports"`)

	require.Equal(t, http.StatusNotFound, post("/diagnose?client=nobody", "").Code)
	sc := h.find("diag-me")
	sc.diagnosing.Lock()
	require.Equal(t, http.StatusTooManyRequests, post("/diagnose?client=diag-me", "").Code, "one at a time")
	sc.diagnosing.Unlock()

	require.Equal(t, http.StatusMethodNotAllowed, post("/status.json", "").Code)
	require.Equal(t, http.StatusMethodNotAllowed, post("/", "").Code)
	code, _ = statusGet(t, h, "/nothing-here")
	require.Equal(t, http.StatusNotFound, code)
}

var linkAttr = regexp.MustCompile(`(?:href|action)="([^"]*)"`)

func TestStatusLinksAreRelative(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	c := newClient(t, WithBroker(b.URL()), WithClientID("rel"))
	h := StatusHandler(c)
	connect(t, c)
	mux := http.NewServeMux()
	mux.Handle("/ops/mqtt/", http.StripPrefix("/ops/mqtt", h))
	mux.Handle("/ops/mqtt", http.StripPrefix("/ops/mqtt", h))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	for _, page := range []string{"/ops/mqtt/", "/ops/mqtt", "/ops/mqtt/index.html"} {
		base, err := url.Parse(srv.URL + page)
		require.NoError(t, err)
		resp, err := srv.Client().Get(base.String())
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, page)
		require.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'none'")

		links := linkAttr.FindAllStringSubmatch(string(body), -1)
		require.NotEmpty(t, links)
		for _, l := range links {
			link := html.UnescapeString(l[1])
			require.False(t, strings.HasPrefix(link, "/"), "%s: link %q is not relative", page, link)
			ref, err := url.Parse(link)
			require.NoError(t, err)
			target := base.ResolveReference(ref)
			method := http.MethodGet
			if strings.Contains(link, "diagnose") {
				method = http.MethodPost
			}
			req, err := http.NewRequest(method, target.String(), nil)
			require.NoError(t, err)
			req.Header.Set("Accept", "application/json")
			resp, err := srv.Client().Do(req)
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s resolves to %s", page, link, target)
		}
	}
}

func TestStatusSamplerEndsWithTheClients(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	c := newClient(t, WithBroker(b.URL()), WithClientID("sampler"))
	idle := newClient(t, WithBroker(b.URL()), WithClientID("sampler-idle")) // closed without a Connect
	h := newStatusHandler(fastStatus, c, idle)
	connect(t, c)
	select {
	case <-h.allClosed:
		t.Fatal("the sampler stopped while clients are open")
	case <-time.After(3 * fastStatus.step):
	}
	require.NoError(t, c.Close(t.Context()))
	require.NoError(t, idle.Close(t.Context()))
	select {
	case <-h.allClosed:
	case <-time.After(5 * time.Second):
		t.Fatal("the sampler did not stop after every client closed")
	}
	doc := statusJSON(t, h)
	require.Equal(t, "closed", doc.Clients[0].Health.State)
	require.Equal(t, "closed", doc.Clients[0].Events[0].To)

	// A handler made for clients already closed starts no sampler.
	late := newStatusHandler(fastStatus, c)
	select {
	case <-late.allClosed:
	default:
		t.Fatal("a sampler for a closed client")
	}
	empty := newStatusHandler(fastStatus)
	<-empty.allClosed
	code, page := statusGet(t, empty, "/")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, page, "No clients.")
}

func TestStatusFoldsRepeatedFailures(t *testing.T) {
	hist := newStatusHistory(fastStatus)
	t0 := time.Now()
	ev := func(i int, from, to State, err string) statusEvent {
		return statusEvent{Seq: uint64(i), Time: t0.Add(time.Duration(i) * time.Second), Kind: "state", From: from, To: to, Err: err, Step: StepTCP, Attempt: i}
	}
	hist.event(ev(1, StateConnected, StateReconnecting, "connection lost"))
	for i := 2; i <= 6; i++ {
		hist.event(ev(i, StateReconnecting, StateReconnecting, "connection refused"))
	}
	other := ev(7, StateReconnecting, StateReconnecting, "not authorized")
	other.Step = StepConnect
	hist.event(other)
	varied := ev(8, StateReconnecting, StateReconnecting, "read tcp 127.0.0.1:40001: connection reset")
	varied.Step = StepConnect
	hist.event(varied)
	_, events, seen, _ := hist.snapshot(t0.Add(10*time.Second), time.Minute)
	require.Equal(t, uint64(8), seen)
	require.Len(t, events, 3, "the loss stays in view: %+v", events)
	require.Equal(t, uint64(8), events[0].Seq, "another step, another row; the latest error of it")
	require.Equal(t, 1, events[0].Repeated)
	require.True(t, events[0].ErrorsVaried)
	require.Equal(t, uint64(6), events[1].Seq, "the latest of the repeats")
	require.Equal(t, "connection refused", events[1].Err)
	require.Equal(t, 4, events[1].Repeated)
	require.False(t, events[1].ErrorsVaried)
	require.Equal(t, t0.Add(2*time.Second), events[1].FirstTime)
	require.Equal(t, StateConnected, events[2].From)
}

func TestStatusSparklineBreaksWhereThereIsNoValue(t *testing.T) {
	now := time.Now()
	at := func(i int) time.Time { return now.Add(-time.Duration(10-i) * fastStatus.step) }
	var samples []statusSample
	for i := range 10 {
		samples = append(samples, statusSample{At: at(i), RTT: time.Duration(i+1) * time.Millisecond, HasRTT: i != 4 && i != 6, Outbox: i})
	}
	rtt := newSparkline("rtt", now, fastStatus, samples, func(x statusSample) (float64, bool) {
		return float64(x.RTT) / float64(time.Millisecond), x.HasRTT
	}, func(v float64) string { return formatMillis(v) + " ms" })
	require.Equal(t, 8, rtt.Points)
	require.Equal(t, 2, strings.Count(rtt.Path, "M"), "two stretches around the lone point: %s", rtt.Path)
	require.Len(t, rtt.Dots, 2, "the lone point (5) and the last one")
	require.Equal(t, "10.0 ms", rtt.Last)
	require.Equal(t, "10.0 ms", rtt.Peak)

	none := newSparkline("rtt", now, fastStatus, nil, func(statusSample) (float64, bool) { return 0, false }, formatMillis)
	require.Zero(t, none.Points)
	require.Empty(t, none.Path)
	require.Contains(t, none.Label, "no values")
}
