package paho5

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/stretchr/testify/require"

	"github.com/steadymqtt/steadymqtt/internal/engine"
	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/testsupport/broker"
	"github.com/steadymqtt/steadymqtt/internal/wire"
)

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// QoS 0, 1 and 2 go out and come back with their properties, on both
// brokers; the acknowledgements are counted.
func TestPublishAndReceiveWithProperties(t *testing.T) {
	leakCheck(t)
	brokers(t, broker.MosquittoConfig{}, func(t *testing.T, b target) {
		box := subscriber(t, b.addr, "sub", "props/#", 2)
		s := connect(t, newEngine(t), b.addr, engine.Options{ClientID: "pub", CleanSession: true, KeepAlive: 30 * time.Second})
		require.EqualValues(t, 5, s.Version())
		require.False(t, s.SessionPresent())
		props := &engine.Properties{
			ContentType:     "application/json",
			ResponseTopic:   "props/reply",
			CorrelationData: []byte{1, 2, 3},
			MessageExpiry:   time.Hour,
			User:            []engine.UserProperty{{Key: "k", Value: "v1"}, {Key: "k", Value: "v2"}, {Key: "id", Value: "abc"}},
		}
		var ps []engine.Pending
		for qos := byte(0); qos <= 2; qos++ {
			ps = append(ps, s.Publish(engine.Message{Topic: fmt.Sprintf("props/%d", qos), Payload: []byte{'0' + qos}, QoS: qos, Props: props}))
		}
		for _, p := range ps {
			waitDone(t, p, 5*time.Second)
			require.NoError(t, p.Err())
			require.True(t, p.Acked())
			require.False(t, p.Refused())
		}
		require.EqualValues(t, 2, s.Acks(), "one PUBACK, one PUBCOMP")

		got := box.wait(t, 3, 5*time.Second)
		byTopic := map[string]engine.Message{}
		for _, m := range got {
			byTopic[m.Topic] = m
		}
		for qos := byte(0); qos <= 2; qos++ {
			m := byTopic[fmt.Sprintf("props/%d", qos)]
			require.Equal(t, []byte{'0' + qos}, m.Payload)
			require.Equal(t, qos, m.QoS)
			require.NotNil(t, m.Props)
			require.Equal(t, props.ContentType, m.Props.ContentType)
			require.Equal(t, props.ResponseTopic, m.Props.ResponseTopic)
			require.Equal(t, props.CorrelationData, m.Props.CorrelationData)
			require.Equal(t, props.User, m.Props.User, "user properties in order, repeated keys kept")
			require.Greater(t, m.Props.MessageExpiry, 50*time.Minute)
			require.LessOrEqual(t, m.Props.MessageExpiry, time.Hour)
		}

		// Without properties, none come back.
		p := s.Publish(engine.Message{Topic: "props/plain", Payload: []byte("x"), QoS: 1})
		waitDone(t, p, 5*time.Second)
		require.True(t, p.Acked())
		m := box.wait(t, 4, 5*time.Second)[3]
		require.Equal(t, "props/plain", m.Topic)
		if m.Props != nil {
			// mochi gives every message its maximum message expiry (a day).
			require.Equal(t, engine.Properties{MessageExpiry: m.Props.MessageExpiry}, *m.Props)
		}
	})
}

// A wrong password is a CONNACK refusal that matches errs.NotAuthorized:
// 0x87 from Mosquitto, 0x86 from mochi.
func TestWrongPasswordIsNotAuthorized(t *testing.T) {
	leakCheck(t)
	check := func(t *testing.T, addr string, code byte) {
		conn := dial(t, addr)
		_, err := connectErr(newEngine(t), conn, engine.Options{ClientID: "c", Username: "u", Password: "wrong", CleanSession: true})
		require.ErrorIs(t, err, errs.NotAuthorized)
		require.ErrorIs(t, err, errs.Refused)
		var rc *errs.ReasonCodeError
		require.ErrorAs(t, err, &rc)
		require.Equal(t, "CONNACK", rc.Packet)
		require.Equal(t, code, rc.Code)
		<-conn.Done() // closed on error
	}
	t.Run("mochi", func(t *testing.T) {
		check(t, mochiServer(t, nil, false, &gate{password: "right"}), 0x86)
	})
	t.Run("mosquitto", func(t *testing.T) {
		p := startMosquitto(t, broker.MosquittoConfig{Users: map[string]string{"u": "right"}})
		check(t, p.Addr(), 0x87)
		// The right password gets in.
		connect(t, newEngine(t), p.Addr(), engine.Options{ClientID: "c", Username: "u", Password: "right", CleanSession: true})
	})
}

// A publish the broker's ACL denies gets PUBACK (QoS 1) or PUBREC (QoS 2)
// 0x87: a definite refusal with the code; allowed with no subscriber
// (0x10 on Mosquitto) is a success.
func TestPublishRefusedByACL(t *testing.T) {
	leakCheck(t)
	check := func(t *testing.T, addr string) {
		s := connect(t, newEngine(t), addr, engine.Options{ClientID: "pub", CleanSession: true})
		for qos, packet := range map[byte]string{1: "PUBACK", 2: "PUBREC"} {
			p := s.Publish(engine.Message{Topic: "denied/x", Payload: []byte("no"), QoS: qos})
			waitDone(t, p, 5*time.Second)
			require.False(t, p.Acked())
			var rc *errs.ReasonCodeError
			require.ErrorAs(t, p.Err(), &rc)
			require.Equal(t, byte(0x87), rc.Code)
			require.Equal(t, packet, rc.Packet)
			require.ErrorIs(t, p.Err(), errs.NotAuthorized)
			require.True(t, survives(p), "its outcome is in Done")
		}
		for qos := byte(1); qos <= 2; qos++ {
			p := s.Publish(engine.Message{Topic: "allowed/x", Payload: []byte("yes"), QoS: qos})
			waitDone(t, p, 5*time.Second)
			require.NoError(t, p.Err())
			require.True(t, p.Acked(), "no matching subscribers is a success")
		}
		select {
		case err := <-s.Lost():
			require.FailNow(t, "the refusals ended the connection", "%v", err)
		default:
		}
	}
	t.Run("mochi", func(t *testing.T) { check(t, mochiServer(t, nil, false, &gate{denied: "denied/"})) })
	t.Run("mosquitto", func(t *testing.T) {
		check(t, startMosquitto(t, broker.MosquittoConfig{Extra: []string{"acl_file " + aclFile(t)}}).Addr())
	})
}

// A SUBACK refusal is an *errs.ReasonCodeError that matches
// errs.SubscriptionRefused. (Mosquitto 2.0's acl_file grants the
// subscription and filters what it delivers, so only mochi refuses.)
func TestSubscribeRefused(t *testing.T) {
	leakCheck(t)
	check := func(t *testing.T, addr string) {
		s := connect(t, newEngine(t), addr, engine.Options{ClientID: "sub", CleanSession: true})
		granted, err := s.Subscribe(ctx5(t), "denied/#", 1)
		require.ErrorIs(t, err, errs.SubscriptionRefused)
		var rc *errs.ReasonCodeError
		require.ErrorAs(t, err, &rc)
		require.Equal(t, "SUBACK", rc.Packet)
		require.Equal(t, byte(0x87), rc.Code)
		require.Equal(t, byte(0x87), granted)

		granted, err = s.Subscribe(ctx5(t), "allowed/#", 2)
		require.NoError(t, err)
		require.Equal(t, byte(2), granted)
		require.NoError(t, s.Unsubscribe(ctx5(t), "allowed/#"))
		require.NoError(t, s.Unsubscribe(ctx5(t), "allowed/never"), "0x11, no subscription existed, is a success")
	}
	check(t, mochiServer(t, nil, false, &gate{denied: "denied/"}))
}

// A broker that speaks only 3.1.1 answers with a 3.1.1 CONNACK code 1,
// which paho.golang reports as a bare read error: the engine reads the
// bytes and says errs.BadProtocolVersion.
func TestV311OnlyBrokerIsBadProtocolVersion(t *testing.T) {
	leakCheck(t)
	check := func(t *testing.T, addr string) {
		_, err := connectErr(newEngine(t), dial(t, addr), engine.Options{ClientID: "c", CleanSession: true})
		require.ErrorIs(t, err, errs.BadProtocolVersion)
		var refused *errs.ConnectRefusedError
		require.ErrorAs(t, err, &refused)
		require.Equal(t, byte(1), refused.Code)
	}
	t.Run("stub", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer l.Close()
		go func() {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			buf := make([]byte, 256)
			_, _ = c.Read(buf)
			_, _ = c.Write([]byte{0x20, 0x02, 0x00, 0x01})
		}()
		check(t, l.Addr().String())
	})
	t.Run("nats-server", func(t *testing.T) {
		p, err := broker.StartNATS(t.TempDir())
		needBroker(t, err)
		t.Cleanup(func() { _ = p.Kill() })
		check(t, p.Addr())
	})
	t.Run("silent close stays a read error", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer l.Close()
		go func() {
			c, err := l.Accept()
			if err == nil {
				buf := make([]byte, 256)
				_, _ = c.Read(buf)
				_ = c.Close()
			}
		}()
		_, err = connectErr(newEngine(t), dial(t, l.Addr().String()), engine.Options{ClientID: "c", CleanSession: true})
		require.ErrorIs(t, err, io.EOF)
		require.NotErrorIs(t, err, errs.BadProtocolVersion)
	})
}

// A second client with the same ID takes the session over: mochi tells
// the first with DISCONNECT 0x8E, which reaches OnDisconnect and Lost.
func TestSessionTakenOver(t *testing.T) {
	leakCheck(t)
	addr := startEmbedded(t).addr
	type disc struct {
		rc  *errs.ReasonCodeError
		ref string
	}
	got := make(chan disc, 1)
	s1 := connect(t, newEngine(t), addr, engine.Options{ClientID: "same", CleanSession: true,
		OnDisconnect: func(rc *errs.ReasonCodeError, ref string) { got <- disc{rc, ref} }})
	connect(t, newEngine(t), addr, engine.Options{ClientID: "same", CleanSession: true})
	lost := waitLost(t, s1, 5*time.Second)
	var d disc
	select {
	case d = <-got:
	default:
		require.FailNow(t, "OnDisconnect was not called before Lost")
	}
	require.Equal(t, byte(0x8E), d.rc.Code)
	require.Equal(t, "DISCONNECT", d.rc.Packet)
	var rc *errs.ReasonCodeError
	require.ErrorAs(t, lost, &rc)
	require.Equal(t, byte(0x8E), rc.Code)
	require.Contains(t, lost.Error(), "session taken over")
	select {
	case err := <-s1.Lost():
		require.FailNow(t, "Lost delivered twice", "%v", err)
	case <-time.After(200 * time.Millisecond):
	}
}

// Mosquitto 2.0.11 closes the old connection without a DISCONNECT: Lost
// reports it all the same, once.
func TestSessionTakenOverMosquitto(t *testing.T) {
	leakCheck(t)
	addr := startMosquitto(t, broker.MosquittoConfig{}).Addr()
	s1 := connect(t, newEngine(t), addr, engine.Options{ClientID: "same", CleanSession: true})
	connect(t, newEngine(t), addr, engine.Options{ClientID: "same", CleanSession: true})
	lost := waitLost(t, s1, 5*time.Second)
	require.Error(t, lost)
	var rc *errs.ReasonCodeError
	if errors.As(lost, &rc) { // a later Mosquitto may say why
		require.Equal(t, byte(0x8E), rc.Code)
	}
	select {
	case err := <-s1.Lost():
		require.FailNow(t, "Lost delivered twice", "%v", err)
	case <-time.After(200 * time.Millisecond):
	}
}

// The engine never pings: the keepalive monitor's PINGREQ (SendPing)
// crosses between packets and its PINGRESP passes through paho.golang.
func TestNoPingsOfItsOwnAndPingrespPassesThrough(t *testing.T) {
	leakCheck(t)
	addr := startEmbedded(t).addr
	conn := dial(t, addr)
	var mu sync.Mutex
	sent := map[byte]int{}
	conn.Observe(func(d wire.Dir, h wire.Header) {
		if d == wire.Sent {
			mu.Lock()
			sent[h.Type]++
			mu.Unlock()
		}
	})
	s, err := connectErr(newEngine(t), conn, engine.Options{ClientID: "quiet", CleanSession: true, KeepAlive: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { s.Disconnect(0) })
	require.Equal(t, 2*time.Second, s.KeepAlive())
	// paho.golang's own pinger would have pinged after the keepalive;
	// mochi drops a silent client after one and a half.
	time.Sleep(2300 * time.Millisecond)
	mu.Lock()
	require.Zero(t, sent[wire.PINGREQ], "paho.golang must not ping")
	mu.Unlock()

	require.NoError(t, conn.SendPing(time.Second))
	eventually(t, 2*time.Second, "PINGRESP", func() bool { return conn.Stats().RTT > 0 && conn.Stats().PingOutstanding == 0 })
	p := s.Publish(engine.Message{Topic: "t", Payload: []byte("after ping"), QoS: 1})
	waitDone(t, p, 5*time.Second)
	require.True(t, p.Acked())
}

// CONNACK values reach the session: Server Keep Alive, Receive Maximum,
// an assigned client ID.
func TestConnackValues(t *testing.T) {
	leakCheck(t)
	addr := mochiServer(t, func(c *mqtt.Capabilities) { c.ReceiveMaximum = 7 }, true, &serverKeepAlive{seconds: 9})
	s := connect(t, newEngine(t), addr, engine.Options{CleanSession: true, KeepAlive: 60 * time.Second})
	require.Equal(t, 9*time.Second, s.KeepAlive(), "the Server Keep Alive replaces the one asked for")
	require.Equal(t, 7, s.ReceiveMaximum())
	require.NotEmpty(t, s.ClientID(), "the broker assigned one")
	require.Zero(t, s.SessionExpiry())

	s2 := connect(t, newEngine(t), startEmbedded(t).addr, engine.Options{ClientID: "persistent", KeepAlive: 60 * time.Second})
	require.Equal(t, time.Duration(NeverExpires)*time.Second, s2.SessionExpiry(), "a persistent session without an interval never expires")
	require.Equal(t, "persistent", s2.ClientID())
	require.Equal(t, 60*time.Second, s2.KeepAlive())
}

// With a small Receive Maximum, many more messages at once queue and all
// get acknowledged; the broker (which enforces it) never sees more.
func TestReceiveMaximumQueues(t *testing.T) {
	leakCheck(t)
	check := func(t *testing.T, addr string, want int) {
		s := connect(t, newEngine(t), addr, engine.Options{ClientID: "many", CleanSession: true})
		require.Equal(t, want, s.ReceiveMaximum())
		var ps []engine.Pending
		for i := range 60 {
			ps = append(ps, s.Publish(engine.Message{Topic: "rm/x", Payload: []byte(fmt.Sprint(i)), QoS: byte(1 + i%2)}))
		}
		for _, p := range ps {
			waitDone(t, p, 10*time.Second)
			require.NoError(t, p.Err())
			require.True(t, p.Acked())
		}
		select {
		case err := <-s.Lost():
			require.FailNow(t, "connection lost", "%v", err)
		default:
		}
	}
	t.Run("mochi", func(t *testing.T) {
		check(t, mochiServer(t, func(c *mqtt.Capabilities) { c.ReceiveMaximum = 2 }, true), 2)
	})
	t.Run("mosquitto", func(t *testing.T) {
		check(t, startMosquitto(t, broker.MosquittoConfig{Extra: []string{"max_inflight_messages 2"}}).Addr(), 2)
	})
}

// Messages handed over one after the other arrive in that order, QoS 0
// and 1 mixed.
func TestOrderKept(t *testing.T) {
	leakCheck(t)
	// Mosquitto: 300 QoS 1 deliveries to one subscriber meet a lock
	// inversion of mochi 2.7.9's in-flight table (Inflight.NextImmediate
	// read-locks twice) often enough to hang the broker.
	addr := startMosquitto(t, broker.MosquittoConfig{}).Addr()
	box := subscriber(t, addr, "sub", "order", 1)
	s := connect(t, newEngine(t), addr, engine.Options{ClientID: "pub", CleanSession: true})
	const n = 300
	var last engine.Pending
	for i := range n {
		last = s.Publish(engine.Message{Topic: "order", Payload: []byte(fmt.Sprint(i)), QoS: byte(i % 2)})
	}
	waitDone(t, last, 10*time.Second)
	got := box.wait(t, n, 10*time.Second)
	for i, m := range got {
		require.Equal(t, fmt.Sprint(i), string(m.Payload))
	}
}

// The will goes with its properties when the connection dies.
func TestWillWithProperties(t *testing.T) {
	leakCheck(t)
	brokers(t, broker.MosquittoConfig{}, func(t *testing.T, b target) {
		box := subscriber(t, b.addr, "sub", "will/#", 1)
		conn := dial(t, b.addr)
		_, err := connectErr(newEngine(t), conn, engine.Options{ClientID: "dies", CleanSession: true, KeepAlive: 30 * time.Second,
			Will: &engine.Message{Topic: "will/dies", Payload: []byte("gone"), QoS: 1,
				Props: &engine.Properties{ContentType: "text/plain", User: []engine.UserProperty{{Key: "why", Value: "crash"}}}}})
		require.NoError(t, err)
		_ = conn.Close() // no DISCONNECT
		m := box.wait(t, 1, 5*time.Second)[0]
		require.Equal(t, "gone", string(m.Payload))
		require.NotNil(t, m.Props)
		require.Equal(t, []engine.UserProperty{{Key: "why", Value: "crash"}}, m.Props.User)
		if b.name == "mosquitto" { // mochi keeps only a will's user properties
			require.Equal(t, "text/plain", m.Props.ContentType)
		}
	})
}

// Disconnect sends DISCONNECT: no will, and Lost reports the end.
func TestDisconnectSendsDisconnect(t *testing.T) {
	leakCheck(t)
	addr := startEmbedded(t).addr
	box := subscriber(t, addr, "sub", "will/#", 1)
	conn := dial(t, addr)
	var mu sync.Mutex
	var types []byte
	conn.Observe(func(d wire.Dir, h wire.Header) {
		if d == wire.Sent {
			mu.Lock()
			types = append(types, h.Type)
			mu.Unlock()
		}
	})
	s, err := connectErr(newEngine(t), conn, engine.Options{ClientID: "polite", CleanSession: true,
		Will: &engine.Message{Topic: "will/polite", Payload: []byte("gone"), QoS: 1}})
	require.NoError(t, err)
	p := s.Publish(engine.Message{Topic: "x", Payload: []byte("last"), QoS: 1})
	s.Disconnect(time.Second)
	require.True(t, p.Acked(), "quiesce waited for the PUBACK")
	<-conn.Done()
	mu.Lock()
	require.Equal(t, wire.DISCONNECT, types[len(types)-1])
	mu.Unlock()
	waitLost(t, s, 5*time.Second)
	time.Sleep(200 * time.Millisecond)
	require.Empty(t, box.all(), "no will after DISCONNECT 0x00")

	// A message handed over after the end is settled at once.
	p = s.Publish(engine.Message{Topic: "x", Payload: []byte("late"), QoS: 1})
	waitDone(t, p, time.Second)
	require.False(t, p.Acked())
	require.ErrorIs(t, p.Err(), errs.NotConnected)
	require.False(t, survives(p), "to be sent again")
}

// A Connect on a closed engine fails and closes the connection.
func TestClosedEngine(t *testing.T) {
	leakCheck(t)
	e := New()
	require.NoError(t, e.Close())
	// A listener that never answers: nothing is sent. (mochi v2.7.9 races
	// on a connection it accepts while it stops.)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	conn := dial(t, l.Addr().String())
	_, err = connectErr(e, conn, engine.Options{ClientID: "c"})
	require.ErrorIs(t, err, errs.Closed)
	<-conn.Done()
	c, err := l.Accept()
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(time.Second)))
	n, _ := c.Read(make([]byte, 1))
	require.Zero(t, n, "no CONNECT")
	c.Close()
}

// The context bounds the wait for CONNACK.
func TestConnectTimeout(t *testing.T) {
	leakCheck(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			accepted <- c
		}
	}()
	conn := dial(t, l.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = New().Connect(ctx, conn, engine.Options{ClientID: "c"})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	<-conn.Done()
	(<-accepted).Close()
}

func TestSecondsAndSizes(t *testing.T) {
	require.Zero(t, seconds(0))
	require.Equal(t, uint32(1), seconds(time.Millisecond))
	require.Equal(t, uint32(60), seconds(time.Minute))
	require.Equal(t, uint32(NeverExpires), seconds(1<<62))
	require.Equal(t, uint16(1), keepAliveSeconds(time.Millisecond))
	require.Equal(t, uint16(65535), keepAliveSeconds(100*time.Hour))
	require.Equal(t, uint32(NeverExpires), sessionExpiry(engine.Options{}))
	require.Zero(t, sessionExpiry(engine.Options{CleanSession: true}))
	require.Equal(t, uint32(90), sessionExpiry(engine.Options{CleanSession: true, SessionExpiry: 90 * time.Second}))

	pb := outgoing(engine.Message{Topic: "a/b", Payload: make([]byte, 300), QoS: 1})
	pb.PacketID = 1
	var buf countWriter
	_, err := pb.WriteTo(&buf)
	require.NoError(t, err)
	require.Equal(t, buf.n, packetSize(pb))
}

type countWriter struct{ n int }

func (w *countWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// survives asks a Pending what a sender asks after a loss.
func survives(p engine.Pending) bool { return p.(interface{ Survives() bool }).Survives() }

// The engine's own CONNECT is paho.golang's but for the will properties.
func TestConnectBytes(t *testing.T) {
	delay := uint32(5)
	expiry := uint32(60)
	o := engine.Options{ClientID: "c", Username: "u", Password: "p", KeepAlive: 30 * time.Second,
		Will: &engine.Message{Topic: "w", Payload: []byte("gone"), QoS: 1, Retain: true}}
	cp := connectPacket(o)
	// Without the properties paho.golang drops, the bytes are the same.
	cp.WillProperties = &paho.WillProperties{WillDelayInterval: &delay, User: paho.UserProperties{{Key: "k", Value: "v"}}}
	require.False(t, willNeedsOwnConnect(cp.WillProperties))
	ccp := cp.Packet()
	ccp.ProtocolName, ccp.ProtocolVersion = "MQTT", 5
	var theirs bytes.Buffer
	_, err := ccp.WriteTo(&theirs)
	require.NoError(t, err)
	require.Equal(t, theirs.Bytes(), connectBytes(cp))

	cp.WillProperties.ContentType, cp.WillProperties.ResponseTopic = "text/plain", "r"
	cp.WillProperties.CorrelationData, cp.WillProperties.MessageExpiry = []byte{9}, &expiry
	require.True(t, willNeedsOwnConnect(cp.WillProperties))
	got, err := packets.ReadPacket(bytes.NewReader(connectBytes(cp)))
	require.NoError(t, err)
	c := got.Content.(*packets.Connect)
	require.Equal(t, "c", c.ClientID)
	require.Equal(t, "u", c.Username)
	require.Equal(t, []byte("p"), c.Password)
	require.EqualValues(t, 30, c.KeepAlive)
	require.Equal(t, uint32(NeverExpires), *c.Properties.SessionExpiryInterval)
	require.True(t, c.WillFlag)
	require.True(t, c.WillRetain)
	require.Equal(t, "w", c.WillTopic)
	require.Equal(t, []byte("gone"), c.WillMessage)
	wp := c.WillProperties
	require.Equal(t, "text/plain", wp.ContentType)
	require.Equal(t, "r", wp.ResponseTopic)
	require.Equal(t, []byte{9}, wp.CorrelationData)
	require.Equal(t, expiry, *wp.MessageExpiry)
	require.Equal(t, delay, *wp.WillDelayInterval)
	require.Equal(t, []packets.User{{Key: "k", Value: "v"}}, wp.User)
}

// A refusing CONNACK's server reference can be read from the error, which
// stays an *errs.ReasonCodeError.
func TestConnackServerReference(t *testing.T) {
	s := &session{pc: newPacketConn(wire.NewConn(nil, nil))}
	err := s.connectError(&paho.Connack{ReasonCode: 0x9C, Properties: &paho.ConnackProperties{ServerReference: "other:1883", ReasonString: "go away"}}, errors.New("failed"))
	var rc *errs.ReasonCodeError
	require.ErrorAs(t, err, &rc)
	require.Equal(t, byte(0x9C), rc.Code)
	require.Equal(t, "go away", rc.Reason)
	require.ErrorIs(t, err, errs.Refused)
	require.Equal(t, "other:1883", ServerReference(err))
	require.Contains(t, err.Error(), "use another server")

	err = s.connectError(&paho.Connack{ReasonCode: 0x87, Properties: &paho.ConnackProperties{}}, errors.New("failed"))
	require.ErrorIs(t, err, errs.NotAuthorized)
	require.Empty(t, ServerReference(err))
}

// recorder is a net.Conn that keeps every write.
type recorder struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
	fail   error
	closed bool
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return 0, r.fail
	}
	r.writes = append(r.writes, append([]byte(nil), p...))
	return len(p), nil
}

func (r *recorder) Close() error { r.mu.Lock(); r.closed = true; r.mu.Unlock(); return nil }

// A packet paho.golang writes in pieces, and a burst of the engine's
// PUBLISH packets, each cross the connection in one write; a large payload
// goes as it is; a failed write breaks the stream for good.
func TestPacketsCrossInOneWrite(t *testing.T) {
	rec := &recorder{}
	pc := newPacketConn(wire.NewConn(rec, nil))

	ack := &packets.Puback{PacketID: 7, ReasonCode: 0x10, Properties: &packets.Properties{ReasonString: "none"}}
	_, err := ack.WriteTo(pc) // locks pc, writes several pieces
	require.NoError(t, err)
	require.Len(t, rec.writes, 1)

	var batch []*pending
	for i := range 3 {
		batch = append(batch, &pending{pkt: outgoing(engine.Message{Topic: "t", Payload: []byte{byte(i)}, QoS: 0})})
	}
	require.NoError(t, pc.writePackets(batch))
	require.Len(t, rec.writes, 2, "three PUBLISH packets, one write")
	var parsed []byte
	var ps wire.Parser
	ps.Feed(rec.writes[1], func(h wire.Header) { parsed = append(parsed, h.Type) })
	require.Equal(t, []byte{wire.PUBLISH, wire.PUBLISH, wire.PUBLISH}, parsed)

	big := &pending{pkt: outgoing(engine.Message{Topic: "t", Payload: make([]byte, 3*coalesceLimit), QoS: 0})}
	require.NoError(t, pc.writePackets([]*pending{big}))
	total := 0
	for _, w := range rec.writes[2:] {
		total += len(w)
	}
	require.Equal(t, packetSize(big.pkt), total)

	rec.mu.Lock()
	rec.fail = errors.New("broken pipe")
	rec.mu.Unlock()
	require.Error(t, pc.writePackets(batch[:1]))
	rec.mu.Lock()
	rec.fail = nil
	require.True(t, rec.closed, "a failed write closes the connection")
	rec.mu.Unlock()
	require.Error(t, pc.writePackets(batch[:1]), "nothing is written after a failed write")
}
