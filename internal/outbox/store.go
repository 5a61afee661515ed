package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The durable outbox is one bbolt file. Every change is a transaction that
// bbolt commits with fsync before Add, Ack or Fail return: a message
// accepted by Publish is on disk, and a message acknowledged is gone from
// it together with its key recorded, even if the process is killed right
// after.
var (
	bucketMsgs = []byte("messages") // seq (8 bytes, big endian) → encoded Message
	bucketKeys = []byte("keys")     // idempotency key → delivery time (8 bytes, unix ns) + content digest (32 bytes)
)

type store struct{ db *bolt.DB }

type storedMsg struct {
	seq uint64
	msg Message
}

type storedKey struct {
	key    string
	at     time.Time
	digest [32]byte
}

func openStore(dir string) (*store, []storedMsg, []storedKey, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, nil, err
	}
	db, err := bolt.Open(filepath.Join(dir, "outbox.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("durable outbox %s: %w", dir, err)
	}
	var msgs []storedMsg
	var keys []storedKey
	err = db.Update(func(tx *bolt.Tx) error {
		mb, err := tx.CreateBucketIfNotExists(bucketMsgs)
		if err != nil {
			return err
		}
		kb, err := tx.CreateBucketIfNotExists(bucketKeys)
		if err != nil {
			return err
		}
		if err := mb.ForEach(func(k, v []byte) error {
			m, err := decode(v)
			if err != nil {
				return err
			}
			msgs = append(msgs, storedMsg{seq: binary.BigEndian.Uint64(k), msg: m})
			return nil
		}); err != nil {
			return err
		}
		return kb.ForEach(func(k, v []byte) error {
			if len(v) == 8+32 {
				sk := storedKey{key: string(k), at: time.Unix(0, int64(binary.BigEndian.Uint64(v)))}
				copy(sk.digest[:], v[8:])
				keys = append(keys, sk)
			}
			return nil
		})
	})
	if err != nil {
		_ = db.Close()
		return nil, nil, nil, fmt.Errorf("durable outbox %s: %w", dir, err)
	}
	return &store{db: db}, msgs, keys, nil
}

func seqKey(seq uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	return b[:]
}

// put stores message seq and deletes the messages it pushed out.
func (s *store) put(seq uint64, m *Message, drop []uint64) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMsgs)
		for _, d := range drop {
			if err := b.Delete(seqKey(d)); err != nil {
				return err
			}
		}
		return b.Put(seqKey(seq), encode(m))
	})
}

// remove deletes message seq and, when key is not empty, records it as
// delivered at with its content digest, in one transaction; it also
// deletes the keys the memory forgot.
func (s *store) remove(seq uint64, key string, digest [32]byte, at time.Time, forget []string) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketMsgs).Delete(seqKey(seq)); err != nil {
			return err
		}
		kb := tx.Bucket(bucketKeys)
		for _, k := range forget {
			if err := kb.Delete([]byte(k)); err != nil {
				return err
			}
		}
		if key == "" {
			return nil
		}
		v := make([]byte, 8, 8+32)
		binary.BigEndian.PutUint64(v, uint64(at.UnixNano()))
		return kb.Put([]byte(key), append(v, digest[:]...))
	})
}

// forget deletes keys.
func (s *store) forget(keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		kb := tx.Bucket(bucketKeys)
		for _, k := range keys {
			if err := kb.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *store) close() error { return s.db.Close() }

// encode: qos, retain, uvarint len + key, uvarint len + topic, payload.
func encode(m *Message) []byte {
	b := make([]byte, 0, 2+2*binary.MaxVarintLen64+len(m.Key)+len(m.Topic)+len(m.Payload))
	var flags byte
	if m.Retain {
		flags = 1
	}
	b = append(b, m.QoS, flags)
	b = binary.AppendUvarint(b, uint64(len(m.Key)))
	b = append(b, m.Key...)
	b = binary.AppendUvarint(b, uint64(len(m.Topic)))
	b = append(b, m.Topic...)
	return append(b, m.Payload...)
}

var errCorrupt = errors.New("durable outbox: corrupt record")

func decode(b []byte) (Message, error) {
	if len(b) < 2 {
		return Message{}, errCorrupt
	}
	m := Message{QoS: b[0], Retain: b[1]&1 != 0}
	b = b[2:]
	str := func() (string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return "", false
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, true
	}
	var ok1, ok2 bool
	m.Key, ok1 = str()
	m.Topic, ok2 = str()
	if !ok1 || !ok2 {
		return Message{}, errCorrupt
	}
	m.Payload = append([]byte(nil), b...)
	return m, nil
}
