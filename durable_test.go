package steadymqtt

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// The crash test runs this test binary again as a child publisher
// (TestMain, in example_test.go, calls ChildPublisher when
// STEADYMQTT_CHILD=<phase> is set); it reports progress on stdout, one
// word a line.
var ChildPublisher = childPublisher

func childPublisher(phase string) int {
	url, dir := os.Getenv("STEADYMQTT_BROKER"), os.Getenv("STEADYMQTT_DIR")
	switch phase {
	case "presence":
		return childPresence(url)
	case "expiry-first", "expiry-second":
		return childExpiry(phase, url, dir)
	}
	c, err := New(append(protocolUnderTest(), WithBroker(url), WithClientID("crash-child"), WithDurableOutbox(dir),
		WithBackoff(backoff.NewConstantBackOff(50*time.Millisecond)))...)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	ctx := context.Background()
	switch phase {
	case "publish":
		// Ten messages acknowledged while the broker is up…
		if err := c.Connect(ctx); err != nil {
			fmt.Println("error", err)
			return 1
		}
		for i := 0; i < 10; i++ {
			if err := c.Publish(ctx, "crash/t", []byte("acked-"+strconv.Itoa(i)), WithQoS(1), WithIdempotencyKey("a"+strconv.Itoa(i))); err != nil {
				fmt.Println("error", err)
				return 1
			}
		}
		fmt.Println("acked")
		// …then, once the parent took the broker down, ten that wait.
		in := bufio.NewScanner(os.Stdin)
		in.Scan()
		for i := 0; i < 10; i++ {
			go func() {
				_ = c.Publish(ctx, "crash/t", []byte("queued-"+strconv.Itoa(i)), WithQoS(1), WithIdempotencyKey("q"+strconv.Itoa(i)))
			}()
		}
		for c.Health().Outbox < 10 {
			time.Sleep(5 * time.Millisecond)
		}
		fmt.Println("queued")
		select {} // until SIGKILL
	case "drain":
		if err := c.Connect(ctx); err != nil {
			fmt.Println("error", err)
			return 1
		}
		for c.Health().Outbox > 0 {
			time.Sleep(5 * time.Millisecond)
		}
		if err := c.Close(ctx); err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println("drained")
	}
	return 0
}

func TestDurableOutboxSurvivesSIGKILL(t *testing.T) {
	leakCheck(t)
	b := startEmbedded(t)
	dir := t.TempDir()
	child := func(phase string) (*exec.Cmd, *bufio.Scanner, func(string)) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "STEADYMQTT_CHILD="+phase, "STEADYMQTT_BROKER="+b.URL(), "STEADYMQTT_DIR="+dir)
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		require.NoError(t, err)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		lines := bufio.NewScanner(stdout)
		send := func(s string) { _, _ = fmt.Fprintln(stdin, s) }
		return cmd, lines, send
	}
	expect := func(lines *bufio.Scanner, want string) {
		t.Helper()
		require.True(t, lines.Scan(), "child ended before %q", want)
		require.Equal(t, want, strings.TrimSpace(lines.Text()))
	}

	cmd, lines, send := child("publish")
	expect(lines, "acked")
	require.NoError(t, b.Stop())
	send("go")
	expect(lines, "queued")
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()

	// A fresh broker (it lost everything) and a subscriber, then the next
	// process on the same outbox.
	require.NoError(t, b.Start())
	k := subscriber(t, b.URL(), "crash/t")
	cmd, lines, _ = child("drain")
	expect(lines, "drained")
	require.NoError(t, cmd.Wait())

	require.Eventually(t, func() bool { return k.n.Load() >= 10 }, 5*time.Second, 10*time.Millisecond)
	// The drain process has exited, its sends all acknowledged: a marker
	// published now reaches the subscriber after anything it sent.
	marker := newClient(t, WithBroker(b.URL()))
	connect(t, marker)
	fence(t, marker, "crash/t")
	require.Eventually(t, func() bool { return k.has("fence") }, 5*time.Second, 10*time.Millisecond)
	got := map[string]int{}
	for _, p := range k.payloads() {
		got[p]++
	}
	for i := 0; i < 10; i++ {
		require.Equal(t, 1, got["queued-"+strconv.Itoa(i)], "queued-%d: %v", i, got)
		require.Zero(t, got["acked-"+strconv.Itoa(i)], "an acknowledged message was sent again")
	}
	delete(got, "fence")
	require.Len(t, got, 10)
}

// queueOffline leaves n QoS 1 messages in a durable outbox at dir.
func queueOffline(t *testing.T, dir string, n int) {
	t.Helper()
	c, err := New(WithBroker("tcp://127.0.0.1:1"), WithDurableOutbox(dir))
	require.NoError(t, err)
	for i := range n {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		require.ErrorIs(t, c.Publish(ctx, "salvage/t", []byte(strconv.Itoa(i)), WithQoS(1)), context.DeadlineExceeded)
		cancel()
	}
	require.ErrorIs(t, c.Close(t.Context()), ErrNotDelivered)
}

// A damaged outbox stops New with ErrOutboxCorrupt naming the file and
// changes nothing on disk; WithOutboxSalvage moves it aside and starts
// with what could be read, and says so in an event.
func TestDamagedOutboxIsReportedOrSalvaged(t *testing.T) {
	leakCheck(t)
	dir := t.TempDir()
	queueOffline(t, dir, 5)
	path := filepath.Join(dir, "outbox.db")
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("messages"))
		k, v := b.Cursor().First()
		v = append([]byte(nil), v...)
		v[0] = 7 // a QoS no message has
		return b.Put(append([]byte(nil), k...), v)
	}))
	require.NoError(t, db.Close())

	_, err = New(WithBroker("tcp://127.0.0.1:1"), WithDurableOutbox(dir))
	require.ErrorIs(t, err, ErrOutboxCorrupt)
	require.NotErrorIs(t, err, ErrInvalidOption)
	require.Contains(t, err.Error(), path)
	require.FileExists(t, path, "nothing moved without being asked")

	b := startEmbedded(t)
	k := subscriber(t, b.URL(), "salvage/t")
	c := newClient(t, WithBroker(b.URL()), WithDurableOutbox(dir), WithOutboxSalvage())
	require.Equal(t, 4, c.Stats().Outbox, "the four sound messages are kept")
	rec := record(c)
	connect(t, c)
	ev := rec.next(t, time.Second, "salvaged", func(ev Event) bool { return ev.Kind == KindOutboxSalvaged })
	require.ErrorIs(t, ev.Err, ErrOutboxCorrupt)
	require.Contains(t, ev.Err.Error(), "4 messages recovered, 1 lost")
	require.Eventually(t, func() bool { return k.n.Load() == 4 }, 5*time.Second, 10*time.Millisecond)
	damaged, err := filepath.Glob(path + ".damaged-*")
	require.NoError(t, err)
	require.Len(t, damaged, 1, "the damaged file is kept beside the new one")
}

// A second client on a held outbox directory is told at once.
func TestHeldOutboxDirectoryIsRefusedAtOnce(t *testing.T) {
	leakCheck(t)
	dir := t.TempDir()
	first := newClient(t, WithBroker("tcp://127.0.0.1:1"), WithDurableOutbox(dir))
	start := time.Now()
	_, err := New(WithBroker("tcp://127.0.0.1:1"), WithDurableOutbox(dir))
	require.ErrorIs(t, err, ErrOutboxLocked)
	require.Contains(t, err.Error(), dir)
	require.Less(t, time.Since(start), 100*time.Millisecond)
	require.NoError(t, first.Close(t.Context()))
}
