package paho5

import (
	"math"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/steadymqtt/steadymqtt/internal/engine"
)

// seconds converts d to whole seconds for a four-byte MQTT interval,
// rounding a fraction up (a positive interval never becomes 0, "none") and
// saturating at the largest value.
func seconds(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	s := (d + time.Second - 1) / time.Second
	if s > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(s)
}

// keepAliveSeconds is the two-byte CONNECT field.
func keepAliveSeconds(d time.Duration) uint16 {
	if d <= 0 {
		return 0
	}
	s := d / time.Second
	if s == 0 {
		s = 1
	}
	if s > math.MaxUint16 {
		return math.MaxUint16
	}
	return uint16(s)
}

// outgoing builds the PUBLISH packet of m.
func outgoing(m engine.Message) *packets.Publish {
	pb := &packets.Publish{
		QoS:        m.QoS,
		Retain:     m.Retain,
		Topic:      m.Topic,
		Payload:    m.Payload,
		Properties: &packets.Properties{},
	}
	if p := m.Props; p != nil {
		pp := pb.Properties
		pp.ContentType = p.ContentType
		pp.ResponseTopic = p.ResponseTopic
		pp.CorrelationData = p.CorrelationData
		if s := seconds(p.MessageExpiry); s > 0 {
			pp.MessageExpiry = &s
		}
		if len(p.User) > 0 {
			pp.User = make([]packets.User, len(p.User))
			for i, u := range p.User {
				pp.User[i] = packets.User{Key: u.Key, Value: u.Value}
			}
		}
	}
	return pb
}

// incoming converts a received PUBLISH. Props is nil when the message
// carries none of the properties engine.Properties has.
func incoming(p *paho.Publish) engine.Message {
	m := engine.Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain, Duplicate: p.Duplicate()}
	pp := p.Properties
	if pp == nil || (pp.ContentType == "" && pp.ResponseTopic == "" && pp.CorrelationData == nil &&
		pp.MessageExpiry == nil && len(pp.User) == 0) {
		return m
	}
	props := &engine.Properties{ContentType: pp.ContentType, ResponseTopic: pp.ResponseTopic, CorrelationData: pp.CorrelationData}
	if pp.MessageExpiry != nil {
		props.MessageExpiry = time.Duration(*pp.MessageExpiry) * time.Second
	}
	if len(pp.User) > 0 {
		props.User = make([]engine.UserProperty, len(pp.User))
		for i, u := range pp.User {
			props.User[i] = engine.UserProperty{Key: u.Key, Value: u.Value}
		}
	}
	m.Props = props
	return m
}

// will builds the CONNECT's will message and its properties.
func will(w *engine.Message) (*paho.WillMessage, *paho.WillProperties) {
	if w == nil {
		return nil, nil
	}
	wm := &paho.WillMessage{Retain: w.Retain, QoS: w.QoS, Topic: w.Topic, Payload: w.Payload}
	if w.Props == nil {
		return wm, nil
	}
	p := w.Props
	wp := &paho.WillProperties{ContentType: p.ContentType, ResponseTopic: p.ResponseTopic, CorrelationData: p.CorrelationData}
	if s := seconds(p.MessageExpiry); s > 0 {
		wp.MessageExpiry = &s
	}
	for _, u := range p.User {
		wp.User = append(wp.User, paho.UserProperty{Key: u.Key, Value: u.Value})
	}
	return wm, wp
}

// packetSize is the size of pb on the wire, for the broker's Maximum
// Packet Size.
func packetSize(pb *packets.Publish) int {
	n := 0
	for _, b := range pb.Buffers() {
		n += len(b)
	}
	vbi := 1
	for l := n; l > 127; l >>= 7 {
		vbi++
	}
	return 1 + vbi + n
}
