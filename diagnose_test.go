package steadymqtt

import (
	"crypto/tls"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
)

// requireFailedAt checks that the one report failed at step, with a cause
// that mentions each of words, and that every later step was skipped.
func requireFailedAt(t *testing.T, d Diagnosis, step string, words ...string) Step {
	t.Helper()
	require.False(t, d.OK)
	require.Len(t, d.Reports, 1)
	r := d.Reports[0]
	require.False(t, r.OK)
	f := r.Failed()
	require.NotNil(t, f, "no failed step: %+v", r.Steps)
	require.Equal(t, step, f.Name, "failed at %s: %s", f.Name, f.Cause)
	for _, w := range words {
		require.Contains(t, f.Cause+" "+f.Hint+" "+strings.Join(f.Details, " "), w)
	}
	require.NotEmpty(t, f.Cause)
	after := false
	for _, s := range r.Steps {
		if after {
			require.Equal(t, StepSkipped, s.Status, "%s after the failure", s.Name)
		}
		after = after || s.Name == step
	}
	return *f
}

func requireHealthy(t *testing.T, d Diagnosis) {
	t.Helper()
	for _, r := range d.Reports {
		for _, s := range r.Steps {
			require.NotEqual(t, StepFailed, s.Status, "%s: %s (%v)", s.Name, s.Cause, s.Err)
		}
		require.True(t, r.OK)
		names := make([]string, len(r.Steps))
		for i, s := range r.Steps {
			names[i] = s.Name
		}
		require.Equal(t, []string{StepInterface, StepAddress, StepDNS, StepRoute, StepTCP, StepTLS, StepConnect, StepRoundTrip, StepKeepalive}, names)
		for _, name := range []string{StepDNS, StepRoute, StepTCP, StepConnect, StepRoundTrip, StepKeepalive} {
			require.Equal(t, StepOK, r.Step(name).Status, name)
		}
	}
	require.True(t, d.OK)
}

func TestDiagnoseHealthyBrokers(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	urls := []string{b.URL()}
	if m := mosquittoBeside(t); m != nil {
		urls = append(urls, m.URL())
	}
	d := Diagnose(t.Context(), WithBroker(urls...), WithFixedBrokerOrder())
	requireHealthy(t, d)
	require.Len(t, d.Reports, len(urls))
	for i, r := range d.Reports {
		require.Equal(t, urls[i], r.Broker, "in the order given")
		require.Contains(t, strings.Join(r.Step(StepRoundTrip).Details, " "), "message back")
		require.Contains(t, strings.Join(r.Step(StepKeepalive).Details, " "), "PINGRESP")
	}

	// A running client's own diagnosis leaves its connection alone.
	c := newClient(t, WithBroker(b.URL()), WithClientID("gw-diag"))
	rec := record(c)
	connect(t, c)
	requireHealthy(t, c.Diagnose(t.Context()))
	fence(t, c, "diag/fence")
	for _, ev := range rec.all() {
		require.NotEqual(t, StateReconnecting, ev.To, "the diagnosis took the client's connection over")
	}
}

func TestDiagnoseNamesTheFailingStep(t *testing.T) {
	p := newPKI(t)
	tlsIP := startEmbedded(t, broker.WithTLS(&tls.Config{Certificates: []tls.Certificate{p.serverIP.TLS}}))
	tlsDNS := startEmbedded(t, broker.WithTLS(&tls.Config{Certificates: []tls.Certificate{p.serverDNS.TLS}}))
	tlsExpired := startEmbedded(t, broker.WithTLS(&tls.Config{Certificates: []tls.Certificate{p.expired.TLS}}))
	plain := startEmbedded(t)
	dropper := startEmbedded(t, broker.WithHook(&dropOnSubscribePrefix{prefix: "steadymqtt/diagnose/"}))
	port, err := broker.FreePort()
	require.NoError(t, err)
	mqtts := func(u string) string { return strings.Replace(u, "tcp://", "mqtts://", 1) }

	tests := []struct {
		name  string
		opts  []Option
		step  string
		words []string
	}{
		{"unknown host", []Option{WithBroker("tcp://nosuch-broker.invalid:1883")}, StepDNS, []string{"nosuch-broker.invalid"}},
		{"connection refused", []Option{WithBroker("tcp://127.0.0.1:" + itoa(port))}, StepTCP, []string{"refused", "127.0.0.1:" + itoa(port)}},
		{"interface missing", []Option{WithBroker(plain.URL()), WithInterfaces("nosuchnic9")}, StepInterface, []string{"nosuchnic9", "does not exist", "lo"}},
		{"source address not on this host", []Option{WithBroker(plain.URL()), WithSourceIP([]byte{192, 0, 2, 77})}, StepAddress, []string{"192.0.2.77", "not configured"}},
		{"wrong CA", []Option{WithBroker(tlsIP.URL()), WithCA(p.other.PEM)}, StepTLS, []string{"unknown authority", "steadymqtt test CA", "WithCAFile"}},
		{"name mismatch", []Option{WithBroker(tlsDNS.URL()), WithCA(p.ca.PEM)}, StepTLS, []string{"broker.test", "127.0.0.1", "WithServerName"}},
		{"expired certificate", []Option{WithBroker(tlsExpired.URL()), WithCA(p.ca.PEM)}, StepTLS, []string{"expired", p.expired.Cert.NotAfter.UTC().Format(time.RFC3339)}},
		{"TLS to a plain-text port", []Option{WithBroker(mqtts(plain.URL())), WithCA(p.ca.PEM)}, StepTLS, []string{"not answer with TLS", "8883"}},
		{"dropped after SUBSCRIBE", []Option{WithBroker(dropper.URL())}, StepRoundTrip, []string{"closed the connection after SUBSCRIBE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leakCheck(t)
			d := Diagnose(t.Context(), append([]Option{WithConnectTimeout(2 * time.Second)}, tt.opts...)...)
			requireFailedAt(t, d, tt.step, tt.words...)
		})
	}
}

func TestDiagnoseOnMosquittoRefusalsAndACL(t *testing.T) {
	leakCheck(t)
	dir := t.TempDir()
	acl := filepath.Join(dir, "acl")
	require.NoError(t, os.WriteFile(acl, []byte("user gateway\ntopic readwrite gw/#\n"), 0o600))
	m := startMosquitto(t, broker.MosquittoConfig{Users: map[string]string{"gateway": "s3cret-pass"}, Extra: []string{"acl_file " + acl}})

	t.Run("bad credentials", func(t *testing.T) {
		leakCheck(t)
		d := Diagnose(t.Context(), WithBroker(m.URL()), WithCredentials("gateway", "wrong-pass"))
		f := requireFailedAt(t, d, StepConnect, "CONNACK code 5", "user name and password")
		require.ErrorIs(t, f.Err, ErrNotAuthorized)
		js, err := json.Marshal(d)
		require.NoError(t, err)
		require.NotContains(t, string(js), "wrong-pass")
	})
	t.Run("not authorized on the round-trip topic", func(t *testing.T) {
		leakCheck(t)
		url := strings.Replace(m.URL(), "tcp://", "tcp://gateway:s3cret-pass@", 1)
		d := Diagnose(t.Context(), WithBroker(url), WithConnectTimeout(time.Second))
		requireFailedAt(t, d, StepRoundTrip, "ACL")
		js, err := json.Marshal(d)
		require.NoError(t, err)
		require.NotContains(t, string(js), "s3cret-pass")
		require.Contains(t, string(js), `"name":"roundtrip","status":"failed"`)
	})
}

func TestDiagnoseInvalidOptions(t *testing.T) {
	d := Diagnose(t.Context(), WithBroker("gopher://x"))
	require.False(t, d.OK)
	require.Equal(t, StepOptions, d.Reports[0].Steps[0].Name)
	require.ErrorIs(t, d.Reports[0].Steps[0].Err, ErrInvalidOption)
}

// dropOnSubscribePrefix closes a client that subscribes to a filter under
// prefix: a node that accepts the CONNECT and drops the client at its
// subscription.
type dropOnSubscribePrefix struct {
	mqtt.HookBase
	prefix string
}

func (h *dropOnSubscribePrefix) ID() string           { return "drop-on-subscribe-prefix" }
func (h *dropOnSubscribePrefix) Provides(b byte) bool { return b == mqtt.OnSubscribe }
func (h *dropOnSubscribePrefix) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	for _, f := range pk.Filters {
		if strings.HasPrefix(f.Filter, h.prefix) {
			cl.Stop(nil)
		}
	}
	return pk
}
