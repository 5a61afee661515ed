package outbox

import (
	"crypto/sha256"
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// A message without a key is never compared by content, so it is not
// hashed; a keyed one is, and conflicts are still found.
func TestDigestOnlyForKeyedMessages(t *testing.T) {
	o, err := Open(Config{MaxCount: 10, MaxBytes: 1 << 20, KeyWindow: time.Hour, KeyCount: 10})
	require.NoError(t, err)
	defer o.Close(ErrClosed)
	plain := add(t, o, Message{Topic: "t", Payload: []byte("p"), QoS: 1})
	require.Zero(t, plain.digest, "no key: no digest")
	keyed := add(t, o, Message{Topic: "t", Payload: []byte("p"), QoS: 1, Key: "k"})
	require.NotZero(t, keyed.digest, "a key is checked against its content")

	// Two messages without keys and the same content are two messages.
	again := add(t, o, Message{Topic: "t", Payload: []byte("p"), QoS: 1})
	require.NotSame(t, plain, again)
	_, err = o.Add(Message{Topic: "t", Payload: []byte("other"), QoS: 1, Key: "k"})
	require.ErrorIs(t, err, ErrConflict)

	// The digest covers every field a retry must repeat.
	base := Message{Topic: "t", Payload: []byte("p"), QoS: 1, Key: "k"}
	for name, m := range map[string]Message{
		"topic":   {Topic: "u", Payload: []byte("p"), QoS: 1, Key: "k"},
		"payload": {Topic: "t", Payload: []byte("q"), QoS: 1, Key: "k"},
		"qos":     {Topic: "t", Payload: []byte("p"), QoS: 2, Key: "k"},
		"retain":  {Topic: "t", Payload: []byte("p"), QoS: 1, Retain: true, Key: "k"},
	} {
		require.NotEqual(t, base.digest(), m.digest(), name)
	}
}

// legacyDigest is the content digest as files written before this change
// hold it in their key records: SHA-256 over QoS, retain, topic, a zero
// byte and the payload.
func legacyDigest(m Message) [32]byte {
	h := sha256.New()
	retain := byte(0)
	if m.Retain {
		retain = 1
	}
	h.Write([]byte{m.QoS, retain})
	h.Write([]byte(m.Topic))
	h.Write([]byte{0})
	h.Write(m.Payload)
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// A durable outbox written before keeps its meaning: its delivered keys
// (time + digest records) still answer retries and still catch conflicts,
// and its pending keyed and unkeyed messages are sent and joined as before.
func TestOldDurableFileReadsTheSame(t *testing.T) {
	dir := t.TempDir()
	delivered := Message{Topic: "t/a", Payload: []byte("done"), QoS: 1, Key: "delivered"}
	pendingKeyed := Message{Topic: "t/b", Payload: []byte("wait"), QoS: 2, Key: "pending"}
	pendingPlain := Message{Topic: "t/c", Payload: []byte("plain"), QoS: 1}

	db, err := bolt.Open(filepath.Join(dir, fileName), 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		mb, err := tx.CreateBucket(bucketMsgs)
		require.NoError(t, err)
		kb, err := tx.CreateBucket(bucketKeys)
		require.NoError(t, err)
		require.NoError(t, mb.Put(seqKey(7), encode(&pendingKeyed)))
		require.NoError(t, mb.Put(seqKey(8), encode(&pendingPlain)))
		v := make([]byte, 8, 8+32)
		binary.BigEndian.PutUint64(v, uint64(time.Now().Add(-time.Minute).UnixNano()))
		d := legacyDigest(delivered)
		return kb.Put([]byte(delivered.Key), append(v, d[:]...))
	}))
	require.NoError(t, db.Close())

	o, err := Open(Config{MaxCount: 10, MaxBytes: 1 << 20, KeyWindow: time.Hour, KeyCount: 10, Dir: dir})
	require.NoError(t, err)
	defer o.Close(ErrClosed)
	require.Equal(t, 2, o.Len())

	r, err := o.Add(delivered)
	require.NoError(t, err)
	require.True(t, r.Settled, "a key delivered by the old file is still known")
	_, err = o.Add(Message{Topic: "t/a", Payload: []byte("changed"), QoS: 1, Key: "delivered"})
	require.ErrorIs(t, err, ErrConflict, "the old record's digest still catches a conflict")

	r, err = o.Add(pendingKeyed)
	require.NoError(t, err)
	require.True(t, r.Joined, "a retry joins the pending keyed message read back")
	_, err = o.Add(Message{Topic: "t/b", Payload: []byte("other"), QoS: 2, Key: "pending"})
	require.ErrorIs(t, err, ErrConflict)

	first, second := o.Next(nil), o.Next(nil)
	require.Equal(t, pendingKeyed, first.Message)
	require.Equal(t, pendingPlain, second.Message)
	require.Zero(t, second.digest)
	require.NoError(t, o.Ack(first))
	require.NoError(t, o.Ack(second))
	_, err = o.Close(ErrClosed)
	require.NoError(t, err)

	// What this version writes reads back the same way.
	o, err = Open(Config{MaxCount: 10, MaxBytes: 1 << 20, KeyWindow: time.Hour, KeyCount: 10, Dir: dir})
	require.NoError(t, err)
	r, err = o.Add(pendingKeyed)
	require.NoError(t, err)
	require.True(t, r.Settled)
	_, err = o.Add(Message{Topic: "t/b", Payload: []byte("other"), QoS: 2, Key: "pending"})
	require.ErrorIs(t, err, ErrConflict)
	require.Equal(t, legacyDigest(pendingKeyed), pendingKeyed.digest(), "the digest itself is unchanged")
}

// What Add costs, with and without a key (64-byte payloads, in memory).
func BenchmarkAdd(b *testing.B) {
	payload := make([]byte, 64)
	for _, keyed := range []bool{false, true} {
		name := "nokey"
		if keyed {
			name = "key"
		}
		b.Run(name, func(b *testing.B) {
			o, err := Open(Config{MaxCount: 1 << 30, MaxBytes: 1 << 40, KeyWindow: time.Hour, KeyCount: 10})
			require.NoError(b, err)
			defer o.Close(ErrClosed)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				m := Message{Topic: "bench/t", Payload: payload, QoS: 1}
				if keyed {
					m.Key = "k" + string(rune('a'+i%26)) + string(binary.AppendUvarint(nil, uint64(i)))
				}
				r, err := o.Add(m)
				if err != nil {
					b.Fatal(err)
				}
				e := o.Next(nil)
				_ = o.Ack(e)
				_ = r
			}
		})
	}
}
