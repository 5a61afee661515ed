// Package slogcore is a zapcore.Core that writes through a slog.Handler, so
// that the library, which logs with zap, can hand its lines to a user's
// log/slog setup with the same messages and fields.
package slogcore

import (
	"context"
	"log/slog"
	"sort"

	"go.uber.org/zap/zapcore"
)

// New returns a core that writes every entry to h as a slog.Record:
//
//   - levels: Debug (and below) → slog.LevelDebug, Info → LevelInfo,
//     Warn → LevelWarn, Error and above (DPanic, Panic, Fatal) →
//     LevelError; h.Enabled decides what is written;
//   - fields become attributes in their order; fields added with With
//     become the handler's own attributes (h.WithAttrs), once;
//   - zap.Namespace opens a group: the fields after it are nested in it
//     (With(zap.Namespace(…)) is h.WithGroup, so everything logged through
//     that core, the "logger" attribute included, lands in the group);
//   - a named logger's name is the attribute "logger", a captured stack
//     trace the attribute "stacktrace".
//
// The record's PC is 0: a zap entry carries a caller only when the logger
// was built with zap.AddCaller, and even then it names a line inside the
// library, not the user's code; with PC 0 a handler with AddSource leaves
// the source out instead of pointing somewhere misleading.
//
// Sync does nothing: a slog.Handler has no flush; a handler that buffers
// is flushed by its owner.
func New(h slog.Handler) zapcore.Core {
	return &core{h: h}
}

type core struct {
	h slog.Handler
}

// Level maps a zap level to the slog level it is written at.
func Level(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (c *core) Enabled(l zapcore.Level) bool {
	return c.h.Enabled(context.Background(), Level(l))
}

func (c *core) With(fields []zapcore.Field) zapcore.Core {
	if len(fields) == 0 {
		return c
	}
	h := c.h
	var attrs []slog.Attr
	for _, f := range fields {
		if f.Type == zapcore.NamespaceType {
			if len(attrs) > 0 {
				h = h.WithAttrs(attrs)
				attrs = nil
			}
			h = h.WithGroup(f.Key)
			continue
		}
		attrs = appendField(attrs, f)
	}
	if len(attrs) > 0 {
		h = h.WithAttrs(attrs)
	}
	return &core{h: h}
}

func (c *core) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

func (c *core) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(ent.Time, Level(ent.Level), ent.Message, 0)
	if ent.LoggerName != "" {
		r.AddAttrs(slog.String("logger", ent.LoggerName))
	}
	r.AddAttrs(convert(fields)...)
	if ent.Stack != "" {
		r.AddAttrs(slog.String("stacktrace", ent.Stack))
	}
	return c.h.Handle(context.Background(), r)
}

func (c *core) Sync() error { return nil }

// convert turns fields into attributes in their order; a namespace nests
// the fields after it in a group of that name.
func convert(fields []zapcore.Field) []slog.Attr {
	type frame struct {
		key   string
		attrs []slog.Attr
	}
	stack := []frame{{}}
	for _, f := range fields {
		if f.Type == zapcore.NamespaceType {
			stack = append(stack, frame{key: f.Key})
			continue
		}
		top := &stack[len(stack)-1]
		top.attrs = appendField(top.attrs, f)
	}
	for i := len(stack) - 1; i > 0; i-- {
		if len(stack[i].attrs) > 0 { // slog handlers drop an empty group anyway
			stack[i-1].attrs = append(stack[i-1].attrs, slog.Attr{Key: stack[i].key, Value: slog.GroupValue(stack[i].attrs...)})
		}
	}
	return stack[0].attrs
}

// appendField encodes one field with zap's own map encoder, so that every
// field type (errors, stringers, arrays, objects, reflected values) comes
// out as zap would write it, and appends the resulting attributes. Most
// fields give one key; an error may also give "<key>Verbose" and
// "<key>Causes", which follow the field's own key.
func appendField(attrs []slog.Attr, f zapcore.Field) []slog.Attr {
	enc := zapcore.NewMapObjectEncoder()
	f.AddTo(enc) // a marshaling failure is itself recorded as a "<key>Error" field
	switch len(enc.Fields) {
	case 0: // zap.Skip, a nil error
		return attrs
	case 1:
		for k, v := range enc.Fields {
			attrs = append(attrs, attr(k, v))
		}
		return attrs
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if (keys[i] == f.Key) != (keys[j] == f.Key) {
			return keys[i] == f.Key
		}
		return keys[i] < keys[j]
	})
	for _, k := range keys {
		attrs = append(attrs, attr(k, enc.Fields[k]))
	}
	return attrs
}

// attr makes an attribute of a value produced by zapcore.MapObjectEncoder:
// a nested object (map) becomes a group with its keys sorted, since the
// map lost their order; everything else is slog.AnyValue's (strings,
// numbers, bools, durations and times keep their kinds; arrays, []any,
// and reflected values stay as they are for the handler to render).
func attr(key string, v any) slog.Attr {
	if m, ok := v.(map[string]any); ok {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		group := make([]slog.Attr, 0, len(keys))
		for _, k := range keys {
			group = append(group, attr(k, m[k]))
		}
		return slog.Attr{Key: key, Value: slog.GroupValue(group...)}
	}
	return slog.Any(key, v)
}
