package steadymqtt

import (
	"crypto/tls"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestNewRejectsInvalidOptions(t *testing.T) {
	tests := []struct {
		name   string
		opts   []Option
		option string // the option the message must name
		is     error
	}{
		{"no broker", nil, "WithBroker", ErrInvalidOption},
		{"empty broker list", []Option{WithBroker()}, "WithBroker", ErrInvalidOption},
		{"unknown scheme", []Option{WithBroker("http://h:1883")}, "WithBroker", ErrInvalidOption},
		{"no scheme", []Option{WithBroker("h:1883")}, "WithBroker", ErrInvalidOption},
		{"no host", []Option{WithBroker("tcp://:1883")}, "WithBroker", ErrInvalidOption},
		{"port 0", []Option{WithBroker("tcp://h:0")}, "WithBroker", ErrInvalidOption},
		{"port 65536", []Option{WithBroker("tcp://h:65536")}, "WithBroker", ErrInvalidOption},
		{"port 99999", []Option{WithBroker("tcp://h:99999")}, "WithBroker", ErrInvalidOption},
		{"max packet size below a packet", []Option{WithBroker("tcp://h"), WithMaxPacketSize(3)}, "WithMaxPacketSize", ErrInvalidOption},
		{"keepalive below 1s", []Option{WithBroker("tcp://h"), WithKeepAlive(500 * time.Millisecond)}, "WithKeepAlive", ErrInvalidOption},
		{"keepalive fractional", []Option{WithBroker("tcp://h"), WithKeepAlive(1500 * time.Millisecond)}, "WithKeepAlive", ErrInvalidOption},
		{"keepalive too long", []Option{WithBroker("tcp://h"), WithKeepAlive(70000 * time.Second)}, "WithKeepAlive", ErrInvalidOption},
		{"negative connect timeout", []Option{WithBroker("tcp://h"), WithConnectTimeout(-time.Second)}, "WithConnectTimeout", ErrInvalidOption},
		{"zero stable period", []Option{WithBroker("tcp://h"), WithStableAfter(0)}, "WithStableAfter", ErrInvalidOption},
		{"nil backoff", []Option{WithBroker("tcp://h"), WithBackoff(nil)}, "WithBackoff", ErrInvalidOption},
		{"nil logger", []Option{WithBroker("tcp://h"), WithLogger(nil)}, "WithLogger", ErrInvalidOption},
		{"empty client id", []Option{WithBroker("tcp://h"), WithClientID("")}, "WithClientID", ErrInvalidOption},
		{"zero event buffer", []Option{WithBroker("tcp://h"), WithEventBuffer(0)}, "WithEventBuffer", ErrInvalidOption},
		{"will with wildcard", []Option{WithBroker("tcp://h"), WithWill("a/#", nil, 1, false)}, "WithWill", ErrInvalidTopic},
		{"will qos 3", []Option{WithBroker("tcp://h"), WithWill("a", nil, 3, false)}, "WithWill", ErrInvalidOption},
		{"tls config with plaintext url", []Option{WithBroker("tcp://h"), WithTLSConfig(&tls.Config{})}, "TLS options", ErrInvalidOption},
		{"tls option with plain websocket", []Option{WithBroker("ws://h/mqtt"), WithServerName("broker")}, "TLS options", ErrInvalidOption},
		{"tls config skipping verification", []Option{WithBroker("ssl://h"), WithTLSConfig(&tls.Config{InsecureSkipVerify: true})}, "WithInsecureSkipVerify", ErrInvalidOption},
		{"tls 1.1", []Option{WithBroker("ssl://h"), WithMinTLSVersion(tls.VersionTLS11)}, "WithMinTLSVersion", ErrInvalidOption},
		{"bad pin", []Option{WithBroker("ssl://h"), WithPinnedKeys("nope")}, "WithPinnedKeys", ErrInvalidOption},
		{"missing CA file", []Option{WithBroker("ssl://h"), WithCAFile("/nonexistent/ca.pem")}, "WithCAFile", ErrTLSFiles},
		{"CA without certificate", []Option{WithBroker("ssl://h"), WithCA([]byte("not pem"))}, "WithCA", ErrTLSFiles},
		{"missing client cert", []Option{WithBroker("ssl://h"), WithClientCertFiles("/nonexistent/c.pem", "/nonexistent/k.pem")}, "WithClientCertFiles", ErrTLSFiles},
		{"empty server name", []Option{WithBroker("ssl://h"), WithServerName("")}, "WithServerName", ErrInvalidOption},
		{"no interface", []Option{WithBroker("tcp://h"), WithInterfaces()}, "WithInterfaces", ErrInvalidOption},
		{"repeated interface", []Option{WithBroker("tcp://h"), WithInterfaces("eth0", "eth0")}, "WithInterfaces", ErrInvalidOption},
		{"interfaces and source ip", []Option{WithBroker("tcp://h"), WithInterfaces("eth0"), WithSourceIP(net.IPv4(10, 0, 0, 1))}, "WithSourceIP", ErrInvalidOption},
		{"zero failback", []Option{WithBroker("tcp://h"), WithFailback(0)}, "WithFailback", ErrInvalidOption},
		{"unknown family", []Option{WithBroker("tcp://h"), WithAddressFamily(7)}, "WithAddressFamily", ErrInvalidOption},
		{"unspecified source ip", []Option{WithBroker("tcp://h"), WithSourceIP(nil)}, "WithSourceIP", ErrInvalidOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.opts...)
			require.Nil(t, c)
			require.Error(t, err)
			require.ErrorIs(t, err, ErrInvalidOption)
			require.ErrorIs(t, err, tt.is)
			require.Contains(t, err.Error(), tt.option)
		})
	}
}

func TestErrorsNeverShowPasswords(t *testing.T) {
	for _, raw := range []string{"http://user:s3cret@h:1", "tcp://user:s3cret@:1883", "tcp://user:s3cret@h:bad port",
		"gateway:s3cret@broker:1883", "user:s3cret@broker"} {
		_, err := New(WithBroker(raw))
		require.Error(t, err)
		require.NotContains(t, err.Error(), "s3cret", raw)
	}
}

func TestDefaults(t *testing.T) {
	c, err := New(WithBroker("mqtt://broker.example"))
	require.NoError(t, err)
	require.Equal(t, DefaultKeepAlive, c.cfg.keepAlive)
	require.Equal(t, DefaultConnectTimeout, c.cfg.connectTimeout)
	require.Equal(t, DefaultStableAfter, c.cfg.stableAfter)
	require.Equal(t, "broker.example:1883", c.cfg.brokers[0].Host)
	require.Regexp(t, `^steadymqtt-[0-9a-f]{12}$`, c.ClientID())
	b, ok := c.cfg.backoff.(*FullJitterBackOff)
	require.True(t, ok)
	require.Equal(t, time.Second, b.Initial)
	require.Equal(t, 2*time.Minute, b.Max)
	require.Equal(t, StateIdle, c.State())
	// New does no I/O, and a client never connected closes at once.
	require.NoError(t, c.Close(t.Context()))
	require.Equal(t, StateClosed, c.State())
}

func TestStableClientID(t *testing.T) {
	a, err := StableClientID("gateway")
	require.NoError(t, err)
	b, err := StableClientID("gateway")
	require.NoError(t, err)
	c, err := StableClientID("gateway-replica-2")
	require.NoError(t, err)
	require.Equal(t, a, b, "the same on every call")
	require.Regexp(t, `^gateway-[0-9a-f]{16}$`, a)
	require.NotEqual(t, a[len("gateway-"):], c[len("gateway-replica-2-"):], "a prefix of its own gives an ID of its own")
}

func TestBrokerURLForms(t *testing.T) {
	tests := []struct {
		url  string
		want string // the URL the client dials; "" for refused
	}{
		{"tcp://broker", "tcp://broker:1883"},
		{"mqtt://broker:1884", "mqtt://broker:1884"},
		{"MQTTS://broker", "mqtts://broker:8883"},
		{"ssl://10.0.0.1", "ssl://10.0.0.1:8883"},
		{"tls://[::1]:8883", "tls://[::1]:8883"},
		{"tcp://broker/", "tcp://broker:1883"},
		{"tcp://user:secret@broker:1", "tcp://user:secret@broker:1"},
		{"ws://broker", "ws://broker:80"},
		{"wss://broker:443/mqtt?token=x", "wss://broker:443/mqtt?token=x"},
		{"tcp://broker:65535", "tcp://broker:65535"},
		{"tcp://broker:0", ""},
		{"tcp://broker:65536", ""},
		{"tcp://broker:99999", ""},
		{"tcp://broker:-1", ""},
		{"tcp://broker:http", ""},
		{"tcp://broker:", ""},
		{"tcp://:1883", ""},
		{"tcp://", ""},
		{"tcp:broker:1883", ""},
		{"tcp://broker/path", ""},
		{"tcp://broker?x=1", ""},
		{"tcp://broker#frag", ""},
		{"http://broker", ""},
		{"broker:1883", ""},
		{"", ""},
		{"tcp://bro ker", ""},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			u, err := parseBroker(tt.url)
			if tt.want == "" {
				require.ErrorIs(t, err, ErrInvalidOption)
				require.NotContains(t, err.Error(), "secret")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, u.String())
		})
	}
}

// What WithBroker accepts is a URL the client can dial: a known scheme, a
// host, a port in 1–65535. Nothing panics.
func FuzzWithBroker(f *testing.F) {
	for _, s := range []string{"tcp://h:1883", "ws://h/mqtt", "tcp://h:0", "ssl://[::1]:99999", "tcp://u:p@h", "mqtt://%zz", "tcp://h:+1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := parseBroker(raw)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalidOption)
			return
		}
		require.NotEmpty(t, u.Hostname())
		port, perr := strconv.Atoi(u.Port())
		require.NoError(t, perr, u.String())
		require.True(t, port >= 1 && port <= 65535, u.String())
		require.Contains(t, []string{"tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss"}, u.Scheme)
		if u.Scheme != "ws" && u.Scheme != "wss" {
			require.Empty(t, u.Path+u.RawQuery+u.Fragment, u.String())
		}
	})
}
