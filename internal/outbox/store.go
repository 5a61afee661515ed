package outbox

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/steadymqtt/steadymqtt/internal/errs"
	"github.com/steadymqtt/steadymqtt/internal/topic"
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

type store struct {
	db   *bolt.DB
	lock io.Closer // the directory lock, held while the store is open
}

type storedMsg struct {
	seq uint64
	msg Message
}

type storedKey struct {
	key    string
	at     time.Time
	digest [32]byte
}

// fileName is the outbox file in its directory.
const fileName = "outbox.db"

// Salvage says what a damaged outbox gave back when it was moved aside.
type Salvage struct {
	Damaged   string // where the damaged file is now; it is never deleted
	Recovered int    // messages read back and kept
	Lost      int    // message records that could not be read back; -1 when unknown (the file could not be read at all)
	LostKeys  int    // idempotency keys that could not be read back: a retry of their message is sent again
	Cause     error  // what was wrong with it
}

// openStore opens (or creates) the outbox file in dir and reads it back.
// Damage is reported as errs.OutboxCorrupt, never as a panic: bbolt
// panics on some damaged files, inside Open and on the first read of a
// scrambled page, and every record is checked as it is read. With
// salvage, a damaged file is renamed aside and a new one starts with what
// could be read.
func openStore(dir string, salvage bool) (*store, []storedMsg, []storedKey, *Salvage, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("durable outbox %s: %w", dir, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	path := filepath.Join(dir, fileName)
	db, msgs, keys, err := load(path)
	if err == nil {
		return &store{db: db, lock: lock}, msgs, keys, nil, nil
	}
	if !errors.Is(err, errs.OutboxCorrupt) || !salvage {
		_ = lock.Close()
		return nil, nil, nil, nil, err
	}
	st, msgs, keys, report, err := quarantine(path, err)
	if err != nil {
		_ = lock.Close()
		return nil, nil, nil, nil, err
	}
	st.lock = lock
	return st, msgs, keys, report, nil
}

// corrupt is the error of a damaged outbox file.
func corrupt(path string, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", errs.OutboxCorrupt, path, fmt.Sprintf(format, args...))
}

// load opens path and reads every record, validating each. A panic or a
// memory fault inside bbolt is turned into errs.OutboxCorrupt.
func load(path string) (db *bolt.DB, msgs []storedMsg, keys []storedKey, err error) {
	fi, serr := os.Stat(path)
	if serr == nil && fi.Size() == 0 {
		// bbolt would take an empty file for a new one; one the outbox
		// made is never empty, so its content is gone.
		return nil, nil, nil, corrupt(path, "the file is empty")
	}
	existed := serr == nil
	var file *os.File
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				_ = db.Close()
			} else if file != nil {
				_ = file.Close() // releases bbolt's lock on it
			}
			db, msgs, keys, err = nil, nil, nil, corrupt(path, "%v", r)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout: 100 * time.Millisecond, // the directory lock is ours: nobody else should hold the file
		OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, mode)
			file = f
			return f, err
		},
	})
	if err != nil {
		// The system's errors (permissions, a full disk) are what they are;
		// anything bbolt itself objects to is the file's content.
		var pe *fs.PathError
		if errors.As(err, &pe) || errors.Is(err, bolt.ErrTimeout) {
			return nil, nil, nil, fmt.Errorf("durable outbox %s: %w", path, err)
		}
		return nil, nil, nil, corrupt(path, "%v", err)
	}
	var bad error
	err = db.View(func(tx *bolt.Tx) error {
		if existed && (tx.Bucket(bucketMsgs) == nil || tx.Bucket(bucketKeys) == nil) {
			// The outbox makes both when it makes the file: a damaged
			// name must not pass for an empty outbox.
			return corrupt(path, "a bucket of the outbox is missing")
		}
		msgs, keys, _, _, bad = readAll(tx, path)
		return bad
	})
	if err == nil {
		err = db.Update(func(tx *bolt.Tx) error { // a new file: make its buckets
			if _, err := tx.CreateBucketIfNotExists(bucketMsgs); err != nil {
				return err
			}
			_, err := tx.CreateBucketIfNotExists(bucketKeys)
			return err
		})
	}
	if err != nil {
		_ = db.Close()
		if !errors.Is(err, errs.OutboxCorrupt) {
			err = fmt.Errorf("durable outbox %s: %w", path, err)
		}
		return nil, nil, nil, err
	}
	return db, msgs, keys, nil
}

// readAll reads and validates every record. It returns what reads back
// sound, how many records did not, and the first of those.
func readAll(tx *bolt.Tx, path string) (msgs []storedMsg, keys []storedKey, lost, lostKeys int, bad error) {
	reject := func(err error) {
		lost++
		bad = cmp.Or(bad, err)
	}
	if mb := tx.Bucket(bucketMsgs); mb != nil {
		_ = mb.ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				reject(corrupt(path, "message key of %d bytes", len(k)))
				return nil
			}
			seq := binary.BigEndian.Uint64(k)
			m, err := decode(v)
			if err != nil {
				reject(corrupt(path, "message %d: %v", seq, err))
				return nil
			}
			msgs = append(msgs, storedMsg{seq: seq, msg: m})
			return nil
		})
	}
	if kb := tx.Bucket(bucketKeys); kb != nil {
		_ = kb.ForEach(func(k, v []byte) error {
			if len(v) != 8+32 || len(k) == 0 {
				lostKeys++
				bad = cmp.Or(bad, corrupt(path, "idempotency key record of %d bytes", len(v)))
				return nil
			}
			sk := storedKey{key: string(k), at: time.Unix(0, int64(binary.BigEndian.Uint64(v)))}
			copy(sk.digest[:], v[8:])
			keys = append(keys, sk)
			return nil
		})
	}
	return msgs, keys, lost, lostKeys, bad
}

// quarantine moves a damaged file aside, reads what it can of it, and
// starts a new file with that. The new file is written under a temporary
// name and renamed into place only when complete; on any failure the
// damaged file goes back where it was, so nothing that could be read is
// left only beside an empty outbox.
func quarantine(path string, cause error) (*store, []storedMsg, []storedKey, *Salvage, error) {
	damaged := fmt.Sprintf("%s.damaged-%s", path, time.Now().UTC().Format("20060102T150405.000000000Z"))
	if err := os.Rename(path, damaged); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("durable outbox: moving the damaged %s aside: %w", path, err)
	}
	report := &Salvage{Damaged: damaged, Cause: cause}
	msgs, keys, lost, lostKeys := salvageFrom(damaged)
	report.Recovered, report.Lost, report.LostKeys = len(msgs), lost, lostKeys
	fresh := path + ".salvage"
	_ = os.Remove(fresh)
	if err := writeSalvaged(fresh, msgs, keys); err != nil {
		_ = os.Remove(fresh)
		_ = os.Rename(damaged, path)
		return nil, nil, nil, nil, fmt.Errorf("durable outbox %s: writing what was salvaged: %w", path, err)
	}
	if err := os.Rename(fresh, path); err != nil {
		_ = os.Remove(fresh)
		_ = os.Rename(damaged, path)
		return nil, nil, nil, nil, fmt.Errorf("durable outbox %s: %w", path, err)
	}
	db, msgs, keys, err := load(path)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return &store{db: db}, msgs, keys, report, nil
}

// writeSalvaged writes a complete outbox file of msgs and keys at path.
func writeSalvaged(path string, msgs []storedMsg, keys []storedKey) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 100 * time.Millisecond})
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		mb, err := tx.CreateBucketIfNotExists(bucketMsgs)
		if err != nil {
			return err
		}
		kb, err := tx.CreateBucketIfNotExists(bucketKeys)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if err := mb.Put(seqKey(m.seq), encode(&m.msg)); err != nil {
				return err
			}
		}
		for _, k := range keys {
			v := make([]byte, 8, 8+32)
			binary.BigEndian.PutUint64(v, uint64(k.at.UnixNano()))
			if err := kb.Put([]byte(k.key), append(v, k.digest[:]...)); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

// salvageFrom reads the valid records of a damaged file, read-only, and
// counts the others; lost is -1 when the file cannot be read at all.
func salvageFrom(path string) (msgs []storedMsg, keys []storedKey, lost, lostKeys int) {
	var file *os.File
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			lost = -1 // cut short: how much more there was is unknown
			if file != nil {
				_ = file.Close()
			}
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 100 * time.Millisecond,
		OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, mode)
			file = f
			return f, err
		}})
	if err != nil {
		return nil, nil, -1, 0
	}
	defer db.Close()
	_ = db.View(func(tx *bolt.Tx) error {
		msgs, keys, lost, lostKeys, _ = readAll(tx, path)
		return nil
	})
	return msgs, keys, lost, lostKeys
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

func (s *store) close() error {
	err := s.db.Close()
	if s.lock != nil {
		_ = s.lock.Close()
	}
	return err
}

// encode: qos, flags (1: retain, 2: properties follow the topic), uvarint
// len + key, uvarint len + topic, [uvarint len + properties], payload. A
// record without properties is what every earlier version wrote.
func encode(m *Message) []byte {
	b := make([]byte, 0, 3+3*binary.MaxVarintLen64+len(m.Key)+len(m.Topic)+len(m.Payload)+propsSize(m.Props))
	var flags byte
	if m.Retain {
		flags |= 1
	}
	if m.Props != nil {
		flags |= 2
	}
	b = append(b, m.QoS, flags)
	b = binary.AppendUvarint(b, uint64(len(m.Key)))
	b = append(b, m.Key...)
	b = binary.AppendUvarint(b, uint64(len(m.Topic)))
	b = append(b, m.Topic...)
	if m.Props != nil {
		p := encodeProps(nil, m.Props)
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	return append(b, m.Payload...)
}

var errCorrupt = errors.New("corrupt record")

// decode reads a record back and checks it is one the outbox could have
// written: QoS 0 to 2, only the retain flag, lengths inside the record, a
// valid topic. The payload is copied out of bbolt's memory map.
func decode(b []byte) (Message, error) {
	if len(b) < 2 {
		return Message{}, fmt.Errorf("%w: %d bytes", errCorrupt, len(b))
	}
	if b[0] > 2 || b[1]&^3 != 0 {
		return Message{}, fmt.Errorf("%w: QoS %d, flags %#x", errCorrupt, b[0], b[1])
	}
	m := Message{QoS: b[0], Retain: b[1]&1 != 0}
	hasProps := b[1]&2 != 0
	b = b[2:]
	str := func(what string, limit int) (string, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(limit) || uint64(len(b)-k) < n {
			return "", fmt.Errorf("%w: %s length past the end of the record", errCorrupt, what)
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, nil
	}
	var err error
	if m.Key, err = str("key", 1<<16); err != nil {
		return Message{}, err
	}
	if m.Topic, err = str("topic", 65535); err != nil {
		return Message{}, err
	}
	if err := topic.Validate(m.Topic); err != nil {
		return Message{}, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	if hasProps {
		raw, err := str("properties", 1<<20)
		if err != nil {
			return Message{}, err
		}
		if m.Props, err = decodeProps([]byte(raw)); err != nil {
			return Message{}, err
		}
	}
	m.Payload = append([]byte(nil), b...)
	return m, nil
}
