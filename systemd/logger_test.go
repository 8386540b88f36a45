package systemd

import (
	"log/slog"
	"testing"

	"gotest.tools/v3/assert"
)

// WithLogger(nil) means discard, as in every package, never a nil logger
// that panics at the first log line.
func TestNilLoggerDiscards(t *testing.T) {
	o := options{log: slog.New(slog.DiscardHandler)} // Dial's default
	WithLogger(nil)(&o)
	assert.Assert(t, o.log != nil)
	newClient(&fakeBus{}, o.log).log.Info("goes nowhere")
	newClient(&fakeBus{}, nil).log.Info("goes nowhere")
}
