package steadymqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
	"github.com/steadymqtt/steadymqtt/internal/testsupport/testpki"
)

// pki is what the TLS tests share: a CA the brokers use, another CA nobody
// trusts, and certificates for every case.
type pki struct {
	ca, other             *testpki.CA
	serverIP, serverDNS   *testpki.Issued // with and without the 127.0.0.1 SAN
	expired               *testpki.Issued
	client                *testpki.Issued
	clientCert, clientKey string // client written to files
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	var p pki
	var err error
	p.ca, err = testpki.NewCA("steadymqtt test CA")
	require.NoError(t, err)
	p.other, err = testpki.NewCA("somebody else's CA")
	require.NoError(t, err)
	localhost := []net.IP{net.IPv4(127, 0, 0, 1)}
	p.serverIP, err = p.ca.Issue(testpki.Leaf{CommonName: "broker", DNSNames: []string{"broker.test"}, IPs: localhost})
	require.NoError(t, err)
	p.serverDNS, err = p.ca.Issue(testpki.Leaf{CommonName: "broker", DNSNames: []string{"broker.test"}})
	require.NoError(t, err)
	p.expired, err = p.ca.Issue(testpki.Leaf{CommonName: "broker", IPs: localhost,
		NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	require.NoError(t, err)
	p.client, err = p.ca.Issue(testpki.Leaf{CommonName: "device-1", Client: true})
	require.NoError(t, err)
	p.clientCert, p.clientKey, err = p.client.WriteFiles(t.TempDir(), "device")
	require.NoError(t, err)
	return &p
}

// serverTLS requires a client certificate from p's CA.
func (p *pki) serverTLS(cert *testpki.Issued) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert.TLS},
		ClientCAs:    p.ca.Pool(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
}

// connectErr returns the outcome of the first attempt: nil if it
// connected, else why it failed.
func connectErr(t *testing.T, url string, opts ...Option) error {
	t.Helper()
	opts = append([]Option{WithBroker(url), WithBackoff(backoff.NewConstantBackOff(50 * time.Millisecond)),
		WithConnectTimeout(5 * time.Second)}, opts...)
	c := newClient(t, opts...)
	rec := record(c)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Connect(ctx) }()
	defer func() { cancel(); <-done }()
	ev := rec.next(t, 10*time.Second, "first outcome", func(ev Event) bool { return ev.Err != nil || ev.To == StateConnected })
	return ev.Err
}

func TestTLSAgainstEmbeddedBroker(t *testing.T) {
	p := newPKI(t)
	mtls := []Option{WithCA(p.ca.PEM), WithClientCertFiles(p.clientCert, p.clientKey)}
	tests := []struct {
		name      string
		server    *testpki.Issued
		websocket bool
		alpn      []string        // protocols the server speaks; it then requires one
		extra     *testpki.Issued // a certificate the server sends after its chain
		opts      []Option
		want      error    // nil: connects
		mentions  []string // in the error message
	}{
		{name: "mutual TLS with IP SAN", server: p.serverIP, opts: mtls},
		{name: "wss mutual TLS", server: p.serverIP, websocket: true, opts: mtls},
		{name: "wrong CA", server: p.serverIP, opts: []Option{WithCA(p.other.PEM), WithClientCertFiles(p.clientCert, p.clientKey)},
			want: ErrTLSUnknownAuthority, mentions: []string{"steadymqtt test CA"}},
		{name: "wss wrong CA", server: p.serverIP, websocket: true, opts: []Option{WithCA(p.other.PEM)},
			want: ErrTLSUnknownAuthority},
		{name: "DNS certificate reached by IP", server: p.serverDNS, opts: mtls,
			want: ErrTLSNameMismatch, mentions: []string{"broker.test", "127.0.0.1", "WithServerName"}},
		{name: "wss DNS certificate reached by IP", server: p.serverDNS, websocket: true, opts: mtls,
			want: ErrTLSNameMismatch, mentions: []string{"broker.test"}},
		{name: "server name override", server: p.serverDNS, opts: append([]Option{WithServerName("broker.test")}, mtls...)},
		{name: "expired server certificate", server: p.expired, opts: mtls,
			want: ErrTLSExpired, mentions: []string{p.expired.Cert.NotAfter.UTC().Format(time.RFC3339)}},
		{name: "missing client certificate", server: p.serverIP, opts: []Option{WithCA(p.ca.PEM)},
			want: ErrTLSClientCertificate},
		{name: "wss missing client certificate", server: p.serverIP, websocket: true, opts: []Option{WithCA(p.ca.PEM)},
			want: ErrTLSClientCertificate},
		{name: "pinned key matches", server: p.serverIP, opts: append([]Option{WithPinnedKeys(SPKIPin(p.serverIP.Cert))}, mtls...)},
		{name: "a pinned key in an extra certificate does not count", server: p.serverIP, extra: p.serverDNS,
			opts: append([]Option{WithPinnedKeys(SPKIPin(p.serverDNS.Cert))}, mtls...), want: ErrTLSPinMismatch},
		{name: "pins keep the user's own check", server: p.serverIP,
			opts: append([]Option{WithPinnedKeys(SPKIPin(p.serverIP.Cert)), WithTLSConfig(&tls.Config{
				VerifyConnection: func(tls.ConnectionState) error { return ErrTLSPinMismatch },
			})}, mtls...), want: ErrTLSPinMismatch},
		{name: "pinned key differs", server: p.serverIP, opts: append([]Option{WithPinnedKeys(SPKIPin(p.serverDNS.Cert))}, mtls...),
			want: ErrTLSPinMismatch},
		{name: "ALPN as AWS IoT on 443 wants it", server: p.serverIP, alpn: []string{"x-amzn-mqtt-ca"},
			opts: append([]Option{WithALPN("x-amzn-mqtt-ca")}, mtls...)},
		{name: "no common version", server: p.serverIP, opts: append([]Option{WithMinTLSVersion(tls.VersionTLS13)}, mtls...),
			want: ErrTLSVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leakCheck(t)
			cfg := p.serverTLS(tt.server)
			if tt.want == ErrTLSVersion {
				cfg.MaxVersion = tls.VersionTLS12
			}
			if tt.extra != nil {
				leaf := tt.server.TLS
				leaf.Certificate = append(append([][]byte(nil), leaf.Certificate...), tt.extra.TLS.Certificate[0])
				cfg.Certificates = []tls.Certificate{leaf}
			}
			if tt.alpn != nil {
				cfg.NextProtos = tt.alpn
				cfg.VerifyConnection = func(cs tls.ConnectionState) error {
					if cs.NegotiatedProtocol == "" {
						return errors.New("client offered no ALPN protocol")
					}
					return nil
				}
			}
			bopts := []broker.EmbeddedOption{broker.WithTLS(cfg)}
			if tt.websocket {
				bopts = append(bopts, broker.WithWebSocket())
			}
			b := startEmbedded(t, bopts...)
			err := connectErr(t, b.URL(), tt.opts...)
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.want)
			var tlsErr *TLSError
			require.ErrorAs(t, err, &tlsErr)
			for _, m := range tt.mentions {
				require.Contains(t, err.Error(), m)
			}
		})
	}
}

func TestPlainWebSocket(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t, broker.WithWebSocket())
	require.True(t, strings.HasPrefix(b.URL(), "ws://"))
	c := newClient(t, WithBroker(b.URL()), WithKeepAlive(time.Second))
	connect(t, c)
	got := make(chan Message, 1)
	require.NoError(t, c.Subscribe(t.Context(), "ws/t", 1, func(m Message) { got <- m }))
	require.NoError(t, c.Publish(t.Context(), "ws/t", []byte("over websocket"), WithQoS(1)))
	require.Equal(t, "over websocket", string((<-got).Payload))
	// Health and keepalive apply as on TCP: a round trip gets measured.
	require.Eventually(t, func() bool { return c.Health().RTT > 0 }, 3*time.Second, 50*time.Millisecond)
}

// mosquittoTLS starts Mosquitto with a TLS listener that requires a client
// certificate and takes its CN as the user name.
func mosquittoTLS(t *testing.T, p *pki) (*broker.Process, string) {
	t.Helper()
	return mosquittoTLSWith(t, p, p.serverIP)
}

func mosquittoTLSWith(t *testing.T, p *pki, server *testpki.Issued) (*broker.Process, string) {
	t.Helper()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	require.NoError(t, os.WriteFile(caFile, p.ca.PEM, 0o600))
	certFile, keyFile, err := server.WriteFiles(dir, "server")
	require.NoError(t, err)
	m := startMosquitto(t, broker.MosquittoConfig{Extra: []string{
		"cafile " + caFile, "certfile " + certFile, "keyfile " + keyFile,
		"require_certificate true", "use_identity_as_username true",
	}})
	return m, "ssl://" + m.Addr()
}

func TestTLSAgainstMosquitto(t *testing.T) {
	p := newPKI(t)
	m, url := mosquittoTLS(t, p)
	t.Run("mutual TLS", func(t *testing.T) {
		leakCheck(t)
		require.NoError(t, connectErr(t, url, WithCA(p.ca.PEM), WithClientCertFiles(p.clientCert, p.clientKey)))
	})
	t.Run("wrong CA", func(t *testing.T) {
		leakCheck(t)
		require.ErrorIs(t, connectErr(t, url, WithCA(p.other.PEM), WithClientCertFiles(p.clientCert, p.clientKey)), ErrTLSUnknownAuthority)
	})
	t.Run("missing client certificate", func(t *testing.T) {
		leakCheck(t)
		require.ErrorIs(t, connectErr(t, url, WithCA(p.ca.PEM)), ErrTLSClientCertificate)
	})
	t.Run("missing client certificate over TLS 1.2", func(t *testing.T) {
		leakCheck(t)
		tls12 := &tls.Config{MaxVersion: tls.VersionTLS12}
		require.ErrorIs(t, connectErr(t, url, WithTLSConfig(tls12), WithCA(p.ca.PEM)), ErrTLSClientCertificate)
	})
	t.Run("client certificate from another CA", func(t *testing.T) {
		leakCheck(t)
		stranger, err := p.other.Issue(testpki.Leaf{CommonName: "intruder", Client: true})
		require.NoError(t, err)
		// Over TLS 1.3 Mosquitto (OpenSSL) resets the connection after the
		// handshake without an alert, which cannot be told from any other
		// reset; over TLS 1.2 the rejection is an alert in the handshake.
		tls12 := &tls.Config{MaxVersion: tls.VersionTLS12}
		require.ErrorIs(t, connectErr(t, url, WithTLSConfig(tls12), WithCA(p.ca.PEM), WithClientCert(stranger.TLS)), ErrTLSClientCertificate)
	})
	_ = m

	// The checks that need another server certificate, each on a Mosquitto
	// of its own.
	mtls := []Option{WithCA(p.ca.PEM), WithClientCertFiles(p.clientCert, p.clientKey)}
	t.Run("DNS certificate reached by IP", func(t *testing.T) {
		leakCheck(t)
		_, url := mosquittoTLSWith(t, p, p.serverDNS)
		err := connectErr(t, url, mtls...)
		require.ErrorIs(t, err, ErrTLSNameMismatch)
		require.Contains(t, err.Error(), "broker.test")
		require.NoError(t, connectErr(t, url, append([]Option{WithServerName("broker.test")}, mtls...)...), "server name override")
	})
	t.Run("expired server certificate", func(t *testing.T) {
		leakCheck(t)
		_, url := mosquittoTLSWith(t, p, p.expired)
		err := connectErr(t, url, mtls...)
		require.ErrorIs(t, err, ErrTLSExpired)
		require.Contains(t, err.Error(), p.expired.Cert.NotAfter.UTC().Format(time.RFC3339))
	})
}

func TestClientCertificateRotation(t *testing.T) {
	leakCheck(t)
	p := newPKI(t)
	m, url := mosquittoTLS(t, p)
	dir := t.TempDir()
	certFile, keyFile, err := p.client.WriteFiles(dir, "device")
	require.NoError(t, err)

	c := newClient(t, WithBroker(url), WithCA(p.ca.PEM), WithClientCertFiles(certFile, keyFile),
		WithBackoff(backoff.NewConstantBackOff(100*time.Millisecond)))
	rec := record(c)
	connect(t, c)
	require.Contains(t, m.LogText(), "u'device-1'")

	// The files are replaced while connected; the next attempt uses them.
	rotated, err := p.ca.Issue(testpki.Leaf{CommonName: "device-2", Client: true})
	require.NoError(t, err)
	_, _, err = rotated.WriteFiles(dir, "device")
	require.NoError(t, err)
	require.NoError(t, m.Kill())
	rec.next(t, 5*time.Second, "lost", to(StateReconnecting))
	require.NoError(t, m.Start())
	rec.next(t, 10*time.Second, "back", to(StateConnected))
	require.Eventually(t, func() bool { return strings.Contains(m.LogText(), "u'device-2'") }, 2*time.Second, 50*time.Millisecond,
		"the broker did not see the rotated certificate:\n%s", m.LogText())
}
