package slogcore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// recorder is a slog.Handler that keeps every record with the attributes
// given to it by WithAttrs.
type recorder struct {
	mu      *sync.Mutex
	records *[]recorded
	pre     []slog.Attr
	level   slog.Level
	err     error
}

type recorded struct {
	r   slog.Record
	pre []slog.Attr
}

func newRecorder(level slog.Level) *recorder {
	return &recorder{mu: new(sync.Mutex), records: new([]recorded), level: level}
}

func (h *recorder) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *recorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.records = append(*h.records, recorded{r: r.Clone(), pre: h.pre})
	return h.err
}

func (h *recorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	h2 := *h
	h2.pre = append(append([]slog.Attr(nil), h.pre...), attrs...)
	return &h2
}

func (h *recorder) WithGroup(string) slog.Handler { panic("not used by these tests") }

func (h *recorder) all() []recorded {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]recorded(nil), *h.records...)
}

func attrsOf(r slog.Record) []slog.Attr {
	var out []slog.Attr
	r.Attrs(func(a slog.Attr) bool { out = append(out, a); return true })
	return out
}

func keys(attrs []slog.Attr) []string {
	out := make([]string, len(attrs))
	for i, a := range attrs {
		out[i] = a.Key
	}
	return out
}

// jsonLog is a JSON handler on a buffer, decoded line by line.
type jsonLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (j *jsonLog) Write(p []byte) (int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.buf.Write(p)
}

func (j *jsonLog) lines(t *testing.T) []map[string]any {
	t.Helper()
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(j.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		out = append(out, m)
	}
	return out
}

func jsonLogger(level slog.Level) (*zap.Logger, *jsonLog) {
	j := &jsonLog{}
	return zap.New(New(slog.NewJSONHandler(j, &slog.HandlerOptions{Level: level}))), j
}

type stringer string

func (s stringer) String() string { return "S:" + string(s) }

func TestFields(t *testing.T) {
	h := newRecorder(slog.LevelDebug)
	at := time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC)
	logger := zap.New(New(h))
	logger.Info("hello",
		zap.String("s", "v"),
		zap.Int("i", 3),
		zap.Duration("d", 1500*time.Millisecond),
		zap.Bool("b", true),
		zap.Error(errors.New("boom")),
		zap.Stringer("st", stringer("x")),
		zap.Strings("arr", []string{"a", "b"}),
		zap.Any("any", struct{ A int }{1}),
		zap.Time("t", at),
		zap.Float64("f", 0.5),
		zap.Uint8("u", 7),
		zap.Error(nil), // skipped, as zap skips it
	)
	recs := h.all()
	require.Len(t, recs, 1)
	r := recs[0].r
	require.Equal(t, "hello", r.Message)
	require.Equal(t, slog.LevelInfo, r.Level)
	require.Zero(t, r.PC)

	attrs := attrsOf(r)
	require.Equal(t, []string{"s", "i", "d", "b", "error", "st", "arr", "any", "t", "f", "u"}, keys(attrs), "fields keep their order")
	byKey := map[string]slog.Value{}
	for _, a := range attrs {
		byKey[a.Key] = a.Value
	}
	require.Equal(t, "v", byKey["s"].String())
	require.Equal(t, slog.KindInt64, byKey["i"].Kind())
	require.EqualValues(t, 3, byKey["i"].Int64())
	require.Equal(t, slog.KindDuration, byKey["d"].Kind())
	require.Equal(t, 1500*time.Millisecond, byKey["d"].Duration())
	require.Equal(t, slog.KindBool, byKey["b"].Kind())
	require.True(t, byKey["b"].Bool())
	require.Equal(t, slog.KindString, byKey["error"].Kind())
	require.Equal(t, "boom", byKey["error"].String())
	require.Equal(t, "S:x", byKey["st"].String())
	require.Equal(t, []any{"a", "b"}, byKey["arr"].Any())
	require.Equal(t, struct{ A int }{1}, byKey["any"].Any())
	require.Equal(t, slog.KindTime, byKey["t"].Kind())
	require.True(t, at.Equal(byKey["t"].Time()))
	require.Equal(t, slog.KindFloat64, byKey["f"].Kind())
	require.Equal(t, slog.KindUint64, byKey["u"].Kind())
}

func TestEntryTime(t *testing.T) {
	h := newRecorder(slog.LevelDebug)
	at := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	c := New(h)
	require.NoError(t, c.Write(zapcore.Entry{Level: zapcore.WarnLevel, Time: at, Message: "m"}, nil))
	r := h.all()[0].r
	require.True(t, at.Equal(r.Time))
	require.Equal(t, slog.LevelWarn, r.Level)
	require.Zero(t, r.PC)
}

func TestWith(t *testing.T) {
	h := newRecorder(slog.LevelDebug)
	base := zap.New(New(h))
	logger := base.With(zap.String("client_id", "gw-1"), zap.Int("n", 2))
	logger.Info("one")
	logger.Warn("two", zap.String("k", "v"))
	base.Info("three")

	recs := h.all()
	require.Len(t, recs, 3)
	for _, rec := range recs[:2] {
		require.Equal(t, []string{"client_id", "n"}, keys(rec.pre), "With's fields are the handler's attributes")
		require.Equal(t, "gw-1", rec.pre[0].Value.String())
	}
	require.Empty(t, attrsOf(recs[0].r), "With's fields are not repeated on the record")
	require.Equal(t, []string{"k"}, keys(attrsOf(recs[1].r)))
	require.Empty(t, recs[2].pre, "the logger With was called on is unchanged")

	require.Same(t, base.Core(), base.Core().With(nil), "With of nothing is the same core")
}

func TestWithJSON(t *testing.T) {
	logger, j := jsonLogger(slog.LevelDebug)
	logger = logger.With(zap.String("client_id", "gw-1"))
	logger.Info("mqtt connection", zap.Stringer("from", stringer("a")), zap.String("broker", "tcp://b:1883"))
	lines := j.lines(t)
	require.Len(t, lines, 1)
	require.Equal(t, "mqtt connection", lines[0]["msg"])
	require.Equal(t, "INFO", lines[0]["level"])
	require.Equal(t, "gw-1", lines[0]["client_id"])
	require.Equal(t, "S:a", lines[0]["from"])
	require.Equal(t, "tcp://b:1883", lines[0]["broker"])
	require.NotContains(t, lines[0], "source")
}

func TestLevels(t *testing.T) {
	for zl, want := range map[zapcore.Level]slog.Level{
		zapcore.DebugLevel - 1: slog.LevelDebug,
		zapcore.DebugLevel:     slog.LevelDebug,
		zapcore.InfoLevel:      slog.LevelInfo,
		zapcore.WarnLevel:      slog.LevelWarn,
		zapcore.ErrorLevel:     slog.LevelError,
		zapcore.DPanicLevel:    slog.LevelError,
		zapcore.PanicLevel:     slog.LevelError,
		zapcore.FatalLevel:     slog.LevelError,
	} {
		require.Equal(t, want, Level(zl), "%v", zl)
	}

	h := newRecorder(slog.LevelDebug)
	logger := zap.New(New(h))
	logger.Debug("d")
	logger.Info("i")
	logger.Warn("w")
	logger.Error("e")
	var got []slog.Level
	for _, rec := range h.all() {
		got = append(got, rec.r.Level)
	}
	require.Equal(t, []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}, got)
}

func TestEnabledFiltering(t *testing.T) {
	logger, j := jsonLogger(slog.LevelWarn)
	c := logger.Core()
	require.False(t, c.Enabled(zapcore.DebugLevel))
	require.False(t, c.Enabled(zapcore.InfoLevel))
	require.True(t, c.Enabled(zapcore.WarnLevel))
	require.True(t, c.Enabled(zapcore.ErrorLevel))
	require.Nil(t, logger.Check(zapcore.InfoLevel, "dropped"), "a disabled level is not even checked out")

	logger.Debug("d")
	logger.Info("i")
	logger.Warn("w")
	logger.With(zap.String("k", "v")).Info("i2")
	logger.With(zap.String("k", "v")).Error("e")
	var msgs []any
	for _, l := range j.lines(t) {
		msgs = append(msgs, l["msg"])
	}
	require.Equal(t, []any{"w", "e"}, msgs)
}

type verboseErr struct{}

func (verboseErr) Error() string { return "short" }

func (verboseErr) Format(s fmt.State, verb rune) {
	if verb == 'v' && s.Flag('+') {
		_, _ = io.WriteString(s, "short\nwith detail")
		return
	}
	_, _ = io.WriteString(s, "short")
}

func TestErrors(t *testing.T) {
	h := newRecorder(slog.LevelDebug)
	logger := zap.New(New(h))
	logger.Warn("failed", zap.Error(verboseErr{}), zap.NamedError("cause", errors.New("inner")), zap.Int("after", 1))
	attrs := attrsOf(h.all()[0].r)
	require.Equal(t, []string{"error", "errorVerbose", "cause", "after"}, keys(attrs))
	require.Equal(t, "short", attrs[0].Value.String())
	require.Equal(t, "short\nwith detail", attrs[1].Value.String())
	require.Equal(t, "inner", attrs[2].Value.String())
}

func TestLoggerNameAndStack(t *testing.T) {
	h := newRecorder(slog.LevelDebug)
	logger := zap.New(New(h), zap.AddStacktrace(zapcore.ErrorLevel)).Named("mqtt").Named("sender")
	logger.Info("x", zap.Int("n", 1))
	logger.Error("y")
	zap.New(New(h)).Info("unnamed")

	recs := h.all()
	a := attrsOf(recs[0].r)
	require.Equal(t, []string{"logger", "n"}, keys(a))
	require.Equal(t, "mqtt.sender", a[0].Value.String())
	b := attrsOf(recs[1].r)
	require.Equal(t, []string{"logger", "stacktrace"}, keys(b))
	require.Contains(t, b[1].Value.String(), "TestLoggerNameAndStack")
	require.Empty(t, attrsOf(recs[2].r))
}

func TestNamespacesAndObjects(t *testing.T) {
	logger, j := jsonLogger(slog.LevelDebug)
	logger.Info("ns", zap.String("a", "1"), zap.Namespace("inner"), zap.Int("b", 2), zap.Namespace("deeper"), zap.Bool("c", true))
	logger.With(zap.String("top", "t"), zap.Namespace("req"), zap.String("id", "r1")).Info("with ns", zap.Int("n", 1))
	logger.Info("obj", zap.Object("o", zapcore.ObjectMarshalerFunc(func(enc zapcore.ObjectEncoder) error {
		enc.AddString("z", "last")
		enc.AddInt("a", 1)
		return nil
	})), zap.Namespace("empty"))

	lines := j.lines(t)
	require.Len(t, lines, 3)
	require.Equal(t, "1", lines[0]["a"])
	require.Equal(t, map[string]any{"b": 2.0, "deeper": map[string]any{"c": true}}, lines[0]["inner"])

	require.Equal(t, "t", lines[1]["top"])
	require.Equal(t, map[string]any{"id": "r1", "n": 1.0}, lines[1]["req"])

	require.Equal(t, map[string]any{"a": 1.0, "z": "last"}, lines[2]["o"])
	require.NotContains(t, lines[2], "empty")

	// an object becomes a group with its keys sorted
	h := newRecorder(slog.LevelDebug)
	zap.New(New(h)).Info("obj", zap.Object("o", zapcore.ObjectMarshalerFunc(func(enc zapcore.ObjectEncoder) error {
		enc.AddString("z", "last")
		enc.AddInt("a", 1)
		return nil
	})))
	o := attrsOf(h.all()[0].r)[0]
	require.Equal(t, slog.KindGroup, o.Value.Kind())
	require.Equal(t, []string{"a", "z"}, keys(o.Value.Group()))
}

func TestHandleErrorIsReturned(t *testing.T) {
	h := newRecorder(slog.LevelDebug)
	h.err = errors.New("disk full")
	c := New(h)
	err := c.Write(zapcore.Entry{Level: zapcore.InfoLevel, Time: time.Now(), Message: "m"}, []zapcore.Field{zap.String("k", "v")})
	require.ErrorIs(t, err, h.err)
	require.NoError(t, c.Sync())
}

func TestConcurrent(t *testing.T) {
	logger, j := jsonLogger(slog.LevelDebug)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := logger.With(zap.Int("g", g))
			for i := 0; i < 50; i++ {
				l.Info("line", zap.Int("i", i), zap.Strings("s", []string{"x"}))
			}
		}()
	}
	wg.Wait()
	lines := j.lines(t)
	require.Len(t, lines, 400)
	for _, l := range lines {
		require.Contains(t, l, "g")
		require.Contains(t, l, "i")
	}
}
