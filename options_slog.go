package steadymqtt

import (
	"log/slog"

	"go.uber.org/zap"

	"github.com/steadymqtt/steadymqtt/internal/slogcore"
)

// WithSlogLogger sends the client's log lines to a log/slog logger. zap
// stays the library's logger; this writes the same messages and fields
// through l's handler: each field becomes an attribute (client_id on
// every line; from, to, broker, attempt and error on the connection
// lines), zap's Debug, Info, Warn and Error become slog's levels of those
// names, and the handler's Enabled decides what is written. The records
// carry no source location. Of WithLogger and WithSlogLogger, the last
// one given wins.
func WithSlogLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return optionError("WithSlogLogger", "nil logger")
		}
		c.logger = zap.New(slogcore.New(l.Handler()))
		return nil
	}
}
