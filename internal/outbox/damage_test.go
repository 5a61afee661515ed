package outbox

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/steadymqtt/steadymqtt/internal/errs"
)

const pageSize = 4096

// sound writes an outbox of n messages (and a settled key) and closes it.
func sound(t *testing.T, dir string, n int) string {
	t.Helper()
	o, err := Open(Config{MaxCount: 1000, MaxBytes: 1 << 30, KeyWindow: time.Hour, KeyCount: 100, Dir: dir})
	require.NoError(t, err)
	for i := range n {
		_, err := o.Add(Message{Topic: fmt.Sprintf("t/%d", i), Payload: make([]byte, 600), QoS: 1, Key: fmt.Sprintf("k%d", i)})
		require.NoError(t, err)
	}
	e := o.Next(nil)
	require.NoError(t, o.Ack(e))
	_, err = o.Close(errors.New("closed"))
	require.NoError(t, err)
	return filepath.Join(dir, fileName)
}

func scramble(t *testing.T, path string, from, to int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	fi, err := f.Stat()
	require.NoError(t, err)
	to = min(to, fi.Size())
	junk := make([]byte, to-from)
	_, _ = rand.Read(junk)
	_, err = f.WriteAt(junk, from)
	require.NoError(t, err)
}

// rewrite changes the stored bytes of the first message record.
func rewrite(t *testing.T, path string, f func(v []byte) []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMsgs)
		k, v := b.Cursor().First()
		return b.Put(append([]byte(nil), k...), f(append([]byte(nil), v...)))
	}))
	require.NoError(t, db.Close())
}

var damages = []struct {
	name   string
	damage func(t *testing.T, path string)
}{
	{"truncated to half", func(t *testing.T, p string) {
		fi, _ := os.Stat(p)
		require.NoError(t, os.Truncate(p, fi.Size()/2))
	}},
	{"truncated to one page", func(t *testing.T, p string) { require.NoError(t, os.Truncate(p, pageSize)) }},
	{"zero length", func(t *testing.T, p string) { require.NoError(t, os.Truncate(p, 0)) }},
	{"data pages scrambled", func(t *testing.T, p string) { scramble(t, p, 2*pageSize, 1<<40) }},
	{"meta pages scrambled", func(t *testing.T, p string) { scramble(t, p, 0, 2*pageSize) }},
	{"random bytes", func(t *testing.T, p string) { scramble(t, p, 0, 1<<40) }},
	{"record cut short", func(t *testing.T, p string) { rewrite(t, p, func(v []byte) []byte { return v[:3] }) }},
	{"bad QoS", func(t *testing.T, p string) { rewrite(t, p, func(v []byte) []byte { v[0] = 7; return v }) }},
	{"length past the end", func(t *testing.T, p string) {
		rewrite(t, p, func(v []byte) []byte {
			return append(append(v[:2:2], binary.AppendUvarint(nil, 1<<15)...), "short"...)
		})
	}},
}

// Each damaged file is opened in a child process, so that a panic fails
// the test instead of ending it: the child must exit normally with the
// classified error, or, salvaging, with an outbox and a count.
func TestDamagedOutboxGivesAClassifiedError(t *testing.T) {
	if os.Getenv("OUTBOX_CHILD_DIR") != "" {
		t.Skip("skipping: runs only in the parent")
	}
	for _, d := range damages {
		for _, salvage := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/salvage=%v", d.name, salvage), func(t *testing.T) {
				dir := t.TempDir()
				path := sound(t, dir, 50)
				d.damage(t, path)
				out, err := child(t, dir, salvage)
				require.NoError(t, err, "the process did not survive: %s", out)
				if !salvage {
					require.Contains(t, out, "CORRUPT ", out)
					require.Contains(t, out, path, "the error names the file")
					return
				}
				require.Contains(t, out, "SALVAGED ", out)
				var recovered, lost int
				var damaged string
				_, err = fmt.Sscanf(out[strings.Index(out, "SALVAGED "):], "SALVAGED %d %d %s", &recovered, &lost, &damaged)
				require.NoError(t, err, out)
				require.FileExists(t, damaged, "the damaged file is kept")
				t.Logf("%s: %d recovered, %d lost", d.name, recovered, lost)
				if strings.HasPrefix(d.name, "record") || d.name == "bad QoS" || d.name == "length past the end" {
					require.Equal(t, 48, recovered, "every sound record is kept")
					require.Equal(t, 1, lost)
				}
				// The new file is sound: it opens without salvage.
				out, err = child(t, dir, false)
				require.NoError(t, err, out)
				require.Contains(t, out, fmt.Sprintf("LOADED %d", recovered), out)
			})
		}
	}
}

func child(t *testing.T, dir string, salvage bool) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestOpenDamagedChild$", "-test.v")
	cmd.Env = append(os.Environ(), "OUTBOX_CHILD_DIR="+dir, fmt.Sprintf("OUTBOX_CHILD_SALVAGE=%v", salvage))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestOpenDamagedChild is the child of TestDamagedOutboxGivesAClassifiedError.
func TestOpenDamagedChild(t *testing.T) {
	dir := os.Getenv("OUTBOX_CHILD_DIR")
	if dir == "" {
		t.Skip("skipping: runs only as the child of TestDamagedOutboxGivesAClassifiedError")
	}
	o, err := Open(Config{MaxCount: 1000, MaxBytes: 1 << 30, KeyWindow: time.Hour, KeyCount: 100, Dir: dir,
		Salvage: os.Getenv("OUTBOX_CHILD_SALVAGE") == "true"})
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	switch {
	case errors.Is(err, errs.OutboxCorrupt):
		fmt.Fprintf(w, "\nCORRUPT %v\n", err)
	case err != nil:
		fmt.Fprintf(w, "\nOTHER %v\n", err)
	case o.Salvaged() != nil:
		s := o.Salvaged()
		fmt.Fprintf(w, "\nSALVAGED %d %d %s\n", s.Recovered, s.Lost, s.Damaged)
		_, _ = o.Close(errors.New("closed"))
	default:
		fmt.Fprintf(w, "\nLOADED %d\n", o.Len())
		_, _ = o.Close(errors.New("closed"))
	}
}

// A second process on the same directory is told at once.
func TestHeldOutboxIsRefusedAtOnce(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{MaxCount: 10, MaxBytes: 1 << 20, KeyWindow: time.Hour, KeyCount: 10, Dir: dir}
	first, err := Open(cfg)
	require.NoError(t, err)
	start := time.Now()
	_, err = Open(cfg)
	require.ErrorIs(t, err, errs.OutboxLocked)
	require.Contains(t, err.Error(), dir)
	require.Less(t, time.Since(start), 100*time.Millisecond)
	_, _ = first.Close(errors.New("closed"))
	second, err := Open(cfg)
	require.NoError(t, err, "free again once the first closed")
	_, _ = second.Close(errors.New("closed"))
}

// No stored record makes decode panic, and what it accepts is a message
// the outbox could have written.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(encode(&Message{Topic: "a/b", Payload: []byte("x"), QoS: 1, Key: "k"}))
	f.Add([]byte{7, 0})
	f.Add([]byte{1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, rec []byte) {
		m, err := decode(rec)
		if err != nil {
			require.ErrorIs(t, err, errCorrupt)
			return
		}
		require.LessOrEqual(t, m.QoS, byte(2))
		require.NotEmpty(t, m.Topic)
		again, err := decode(encode(&m))
		require.NoError(t, err)
		require.Equal(t, m, again)
	})
}

// A damaged bucket name must not pass for an empty outbox.
func TestMissingBucketIsDamage(t *testing.T) {
	dir := t.TempDir()
	path := sound(t, dir, 5)
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketMsgs) }))
	require.NoError(t, db.Close())
	_, err = Open(Config{MaxCount: 10, MaxBytes: 1 << 20, KeyWindow: time.Hour, KeyCount: 10, Dir: dir})
	require.ErrorIs(t, err, errs.OutboxCorrupt)
}

// A salvage that cannot write its new file puts the damaged one back.
func TestFailedSalvageLeavesTheDamagedFileInPlace(t *testing.T) {
	dir := t.TempDir()
	path := sound(t, dir, 5)
	rewrite(t, path, func(v []byte) []byte { v[0] = 7; return v })
	// The new file's temporary name is taken by a directory: writing fails.
	require.NoError(t, os.Mkdir(path+".salvage", 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(path+".salvage", "x"), nil, 0o600))
	_, err := Open(Config{MaxCount: 10, MaxBytes: 1 << 20, KeyWindow: time.Hour, KeyCount: 10, Dir: dir, Salvage: true})
	require.Error(t, err)
	_, err = Open(Config{MaxCount: 10, MaxBytes: 1 << 20, KeyWindow: time.Hour, KeyCount: 10, Dir: dir})
	require.ErrorIs(t, err, errs.OutboxCorrupt, "the damaged file is back in place, not an empty outbox")
}
