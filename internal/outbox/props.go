package outbox

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/steadymqtt/steadymqtt/internal/engine"
)

// The MQTT 5 properties of a record: content type, response topic,
// correlation data (each uvarint len + bytes), message expiry (uvarint
// seconds), the number of user properties, then each key and value.

func propsSize(p *engine.Properties) int {
	if p == nil {
		return 0
	}
	n := len(p.ContentType) + len(p.ResponseTopic) + len(p.CorrelationData) + 5*binary.MaxVarintLen64
	for _, u := range p.User {
		n += len(u.Key) + len(u.Value) + 2*binary.MaxVarintLen64
	}
	return n
}

func encodeProps(b []byte, p *engine.Properties) []byte {
	str := func(s []byte) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	str([]byte(p.ContentType))
	str([]byte(p.ResponseTopic))
	str(p.CorrelationData)
	b = binary.AppendUvarint(b, uint64(p.MessageExpiry/time.Second))
	b = binary.AppendUvarint(b, uint64(len(p.User)))
	for _, u := range p.User {
		str([]byte(u.Key))
		str([]byte(u.Value))
	}
	return b
}

func decodeProps(b []byte) (*engine.Properties, error) {
	bad := fmt.Errorf("%w: properties past the end of the record", errCorrupt)
	uv := func() (uint64, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 {
			return 0, bad
		}
		b = b[k:]
		return n, nil
	}
	str := func() ([]byte, error) {
		n, err := uv()
		if err != nil || n > uint64(len(b)) {
			return nil, bad
		}
		s := append([]byte(nil), b[:n]...)
		b = b[n:]
		return s, nil
	}
	var p engine.Properties
	ct, err := str()
	if err != nil {
		return nil, err
	}
	rt, err := str()
	if err != nil {
		return nil, err
	}
	if p.CorrelationData, err = str(); err != nil {
		return nil, err
	}
	p.ContentType, p.ResponseTopic = string(ct), string(rt)
	exp, err := uv()
	if err != nil || exp > 1<<32 {
		return nil, bad
	}
	p.MessageExpiry = time.Duration(exp) * time.Second
	n, err := uv()
	if err != nil || n > uint64(len(b)) {
		return nil, bad
	}
	for i := uint64(0); i < n; i++ {
		k, err := str()
		if err != nil {
			return nil, err
		}
		v, err := str()
		if err != nil {
			return nil, err
		}
		p.User = append(p.User, engine.UserProperty{Key: string(k), Value: string(v)})
	}
	if len(b) != 0 {
		return nil, bad
	}
	if len(p.CorrelationData) == 0 {
		p.CorrelationData = nil
	}
	return &p, nil
}
