package steadyprom_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/steadymqtt/steadymqtt"
	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
	"github.com/steadymqtt/steadymqtt/steadyprom"
)

// Every series the collector exports for one client, with its type.
var wantTypes = map[string]dto.MetricType{
	"steadymqtt_state":                         dto.MetricType_GAUGE,
	"steadymqtt_connected":                     dto.MetricType_GAUGE,
	"steadymqtt_state_since_seconds":           dto.MetricType_GAUGE,
	"steadymqtt_keepalive_rtt_seconds":         dto.MetricType_GAUGE,
	"steadymqtt_last_packet_timestamp_seconds": dto.MetricType_GAUGE,
	"steadymqtt_session_present":               dto.MetricType_GAUGE,
	"steadymqtt_connect_attempts_total":        dto.MetricType_COUNTER,
	"steadymqtt_reconnects_total":              dto.MetricType_COUNTER,
	"steadymqtt_consecutive_failed_attempts":   dto.MetricType_GAUGE,
	"steadymqtt_outbox_messages":               dto.MetricType_GAUGE,
	"steadymqtt_outbox_bytes":                  dto.MetricType_GAUGE,
	"steadymqtt_published_total":               dto.MetricType_COUNTER,
	"steadymqtt_acknowledged_total":            dto.MetricType_COUNTER,
	"steadymqtt_dropped_total":                 dto.MetricType_COUNTER,
	"steadymqtt_failed_total":                  dto.MetricType_COUNTER,
	"steadymqtt_redelivered_total":             dto.MetricType_COUNTER,
	"steadymqtt_deduplicated_total":            dto.MetricType_COUNTER,
	"steadymqtt_received_total":                dto.MetricType_COUNTER,
	"steadymqtt_handler_drops_total":           dto.MetricType_COUNTER,
	"steadymqtt_unrouted_total":                dto.MetricType_COUNTER,
	"steadymqtt_handler_backlog":               dto.MetricType_GAUGE,
}

var allowedLabels = map[string]bool{"client_id": true, "qos": true, "state": true}

func TestScrapeThroughPromhttp(t *testing.T) {
	noLeaks(t)
	b := startBroker(t)
	c := connect(t, b.URL(), "gw-1")
	ctx := testContext(t)
	for i := 0; i < 3; i++ {
		require.NoError(t, c.Publish(ctx, "gw/gw-1/telemetry", []byte("q0")))
	}
	for i := 0; i < 2; i++ {
		require.NoError(t, c.Publish(ctx, "gw/gw-1/telemetry", []byte("q1"), steadymqtt.WithQoS(1)))
	}
	// The client counts an acknowledgement just after it releases the
	// Publish that waited for it.
	require.Eventually(t, func() bool {
		s := c.Stats()
		return s.Acknowledged[1] == 2 && s.Outbox == 0
	}, 5*time.Second, 5*time.Millisecond)

	reg := prometheus.NewRegistry()
	reg.MustRegister(steadyprom.NewCollector(c))
	url := serve(t, reg)
	fams := scrape(t, url)

	checkShape(t, fams, "gw-1")
	require.Equal(t, 3.0, value(t, fams, "steadymqtt_published_total", "gw-1", "qos", "0"))
	require.Equal(t, 2.0, value(t, fams, "steadymqtt_published_total", "gw-1", "qos", "1"))
	require.Equal(t, 0.0, value(t, fams, "steadymqtt_published_total", "gw-1", "qos", "2"))
	// QoS 1 Publish returns after the PUBACK, QoS 0 after the write.
	require.Equal(t, 3.0, value(t, fams, "steadymqtt_acknowledged_total", "gw-1", "qos", "0"))
	require.Equal(t, 2.0, value(t, fams, "steadymqtt_acknowledged_total", "gw-1", "qos", "1"))
	require.Equal(t, 1.0, value(t, fams, "steadymqtt_state", "gw-1", "state", "connected"))
	for _, st := range []string{"idle", "connecting", "degraded", "reconnecting", "closed"} {
		require.Equal(t, 0.0, value(t, fams, "steadymqtt_state", "gw-1", "state", st), st)
	}
	require.Equal(t, 1.0, value(t, fams, "steadymqtt_connected", "gw-1"))
	require.Equal(t, 1.0, value(t, fams, "steadymqtt_connect_attempts_total", "gw-1"))
	require.Equal(t, 0.0, value(t, fams, "steadymqtt_reconnects_total", "gw-1"))
	require.Equal(t, 0.0, value(t, fams, "steadymqtt_consecutive_failed_attempts", "gw-1"))
	require.Equal(t, 0.0, value(t, fams, "steadymqtt_outbox_messages", "gw-1"))
	require.Equal(t, 0.0, value(t, fams, "steadymqtt_failed_total", "gw-1", "qos", "1"))
	since := value(t, fams, "steadymqtt_state_since_seconds", "gw-1")
	require.InDelta(t, float64(c.Health().Since.UnixNano())/1e9, since, 1e-3)
	require.InDelta(t, float64(time.Now().Unix()), since, 60)
	// The broker answered the CONNECT and every PUBACK since.
	last := value(t, fams, "steadymqtt_last_packet_timestamp_seconds", "gw-1")
	require.InDelta(t, float64(time.Now().Unix()), last, 60)

	require.NoError(t, c.Close(ctx))
	fams = scrape(t, url)
	checkShape(t, fams, "gw-1")
	require.Equal(t, 1.0, value(t, fams, "steadymqtt_state", "gw-1", "state", "closed"))
	require.Equal(t, 0.0, value(t, fams, "steadymqtt_state", "gw-1", "state", "connected"))
	require.Equal(t, 0.0, value(t, fams, "steadymqtt_connected", "gw-1"))
	require.Equal(t, 2.0, value(t, fams, "steadymqtt_published_total", "gw-1", "qos", "1"),
		"counters survive Close")
}

func TestTwoClientsGiveTwoSeries(t *testing.T) {
	noLeaks(t)
	b := startBroker(t)
	gw1 := connect(t, b.URL(), "gw-1")
	gw2 := connect(t, b.URL(), "gw-2")
	require.NoError(t, gw2.Publish(testContext(t), "gw/gw-2/telemetry", []byte("x"), steadymqtt.WithQoS(1)))

	for name, register := range map[string]func(*prometheus.Registry){
		"one collector": func(r *prometheus.Registry) { r.MustRegister(steadyprom.NewCollector(gw1, gw2)) },
		"two collectors": func(r *prometheus.Registry) {
			r.MustRegister(steadyprom.NewCollector(gw1), steadyprom.NewCollector(gw2))
		},
	} {
		t.Run(name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			register(reg)
			fams := scrape(t, serve(t, reg))
			checkShape(t, fams, "gw-1", "gw-2")
			require.Equal(t, 0.0, value(t, fams, "steadymqtt_published_total", "gw-1", "qos", "1"))
			require.Equal(t, 1.0, value(t, fams, "steadymqtt_published_total", "gw-2", "qos", "1"))
			require.Equal(t, 1.0, value(t, fams, "steadymqtt_state", "gw-1", "state", "connected"))
			require.Equal(t, 1.0, value(t, fams, "steadymqtt_state", "gw-2", "state", "connected"))
		})
	}
}

func TestClientIDsMustBeDistinct(t *testing.T) {
	noLeaks(t)
	a := newClient(t, "tcp://127.0.0.1:1", "same")
	b := newClient(t, "tcp://127.0.0.1:1", "same")

	err := prometheus.NewRegistry().Register(steadyprom.NewCollector(a, b))
	require.ErrorContains(t, err, `two clients with client ID "same"`)

	// Across collectors the registry itself refuses the second.
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(steadyprom.NewCollector(a)))
	require.Error(t, reg.Register(steadyprom.NewCollector(b)))

	// The documented way out: a label of the user's that tells them apart.
	reg = prometheus.NewRegistry()
	prometheus.WrapRegistererWith(prometheus.Labels{"broker": "telemetry"}, reg).MustRegister(steadyprom.NewCollector(a))
	prometheus.WrapRegistererWith(prometheus.Labels{"broker": "control"}, reg).MustRegister(steadyprom.NewCollector(b))
	fams, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, byName(fams)["steadymqtt_connected"].GetMetric(), 2)

	// The same client twice is one client.
	require.Equal(t, 1, testutil.CollectAndCount(steadyprom.NewCollector(a, a), "steadymqtt_connected"))

	err = prometheus.NewRegistry().Register(steadyprom.NewCollector(a, nil))
	require.ErrorContains(t, err, "nil client")
}

func TestLint(t *testing.T) {
	noLeaks(t)
	b := startBroker(t)
	idle := newClient(t, b.URL(), "gw-idle")
	live := connect(t, b.URL(), "gw-1")
	c := steadyprom.NewCollector(idle, live)

	problems, err := testutil.CollectAndLint(c)
	require.NoError(t, err)
	require.Empty(t, problems)
	// One series per state, per QoS, or alone, for each client.
	perClient := len(wantTypes) - 1 - 4 + 6 + 4*3
	require.Equal(t, 2*perClient, testutil.CollectAndCount(c))
}

func TestIdleClient(t *testing.T) {
	noLeaks(t)
	c := newClient(t, "tcp://127.0.0.1:1", "gw-idle")
	reg := prometheus.NewRegistry()
	reg.MustRegister(steadyprom.NewCollector(c))
	gathered, err := reg.Gather()
	require.NoError(t, err)
	fams := byName(gathered)
	checkShape(t, fams, "gw-idle")
	require.Equal(t, 1.0, value(t, fams, "steadymqtt_state", "gw-idle", "state", "idle"))
	require.Equal(t, 0.0, value(t, fams, "steadymqtt_connected", "gw-idle"))
	// No packet yet reads as 0, not as a date in year 1.
	require.Equal(t, 0.0, value(t, fams, "steadymqtt_last_packet_timestamp_seconds", "gw-idle"))
	require.Equal(t, 0.0, value(t, fams, "steadymqtt_keepalive_rtt_seconds", "gw-idle"))
	require.Equal(t, 0.0, value(t, fams, "steadymqtt_connect_attempts_total", "gw-idle"))
}

func TestNothingRegisteredGlobally(t *testing.T) {
	noLeaks(t)
	c := newClient(t, "tcp://127.0.0.1:1", "gw-global")
	_ = steadyprom.NewCollector(c)
	fams, err := prometheus.DefaultGatherer.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		require.False(t, strings.HasPrefix(f.GetName(), "steadymqtt_"), f.GetName())
	}
}

// checkShape asserts that every metric is there, of its type, once per
// client (and per state or QoS), and labelled only with client_id, qos and
// state: never with a topic.
func checkShape(t *testing.T, fams map[string]*dto.MetricFamily, clientIDs ...string) {
	t.Helper()
	for name, typ := range wantTypes {
		f, ok := fams[name]
		require.True(t, ok, "missing %s", name)
		require.Equal(t, typ, f.GetType(), name)
		require.NotEmpty(t, f.GetHelp(), name)
	}
	for name, f := range fams {
		if !strings.HasPrefix(name, "steadymqtt_") {
			continue
		}
		_, known := wantTypes[name]
		require.True(t, known, "unexpected metric %s", name)
		var ids []string
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				require.True(t, allowedLabels[l.GetName()], "%s has label %s=%q", name, l.GetName(), l.GetValue())
				if l.GetName() == "client_id" {
					ids = append(ids, l.GetValue())
				}
			}
		}
		require.Len(t, ids, len(f.GetMetric()), "%s: a series without client_id", name)
		perClient := 1
		switch name {
		case "steadymqtt_state":
			perClient = 6
		case "steadymqtt_published_total", "steadymqtt_acknowledged_total", "steadymqtt_dropped_total", "steadymqtt_failed_total":
			perClient = 3
		}
		var want []string
		for _, id := range clientIDs {
			for i := 0; i < perClient; i++ {
				want = append(want, id)
			}
		}
		sort.Strings(ids)
		sort.Strings(want)
		require.Equal(t, want, ids, name)
	}
}

func value(t *testing.T, fams map[string]*dto.MetricFamily, name, clientID string, labelPair ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	require.True(t, ok, "missing %s", name)
	want := map[string]string{"client_id": clientID}
	for i := 0; i+1 < len(labelPair); i += 2 {
		want[labelPair[i]] = labelPair[i+1]
	}
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if len(got) != len(want) {
			continue
		}
		match := true
		for k, v := range want {
			match = match && got[k] == v
		}
		if !match {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue()
		}
		t.Fatalf("%s%v is neither a counter nor a gauge", name, want)
	}
	t.Fatalf("no series %s%v", name, want)
	return 0
}

func byName(fams []*dto.MetricFamily) map[string]*dto.MetricFamily {
	m := make(map[string]*dto.MetricFamily, len(fams))
	for _, f := range fams {
		m[f.GetName()] = f
	}
	return m
}

// noLeaks must be the first cleanup a test registers, so that it runs
// after every other one has stopped what it started.
func noLeaks(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func startBroker(t *testing.T) *broker.Embedded {
	b, err := broker.StartEmbedded("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Stop() })
	return b
}

func newClient(t *testing.T, url, id string) *steadymqtt.Client {
	c, err := steadymqtt.New(steadymqtt.WithBroker(url), steadymqtt.WithClientID(id))
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

func connect(t *testing.T, url, id string) *steadymqtt.Client {
	c := newClient(t, url, id)
	require.NoError(t, c.Connect(testContext(t)))
	return c
}

// serve exposes reg on a loopback port as a Prometheus server scrapes it.
func serve(t *testing.T, reg *prometheus.Registry) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
		require.True(t, errors.Is(<-served, http.ErrServerClosed))
	})
	return "http://" + ln.Addr().String() + "/metrics"
}

// scrape asks for the text format, the one every scraper understands.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain"), resp.Header.Get("Content-Type"))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}
