package artifacts

import (
	"testing"

	"gotest.tools/v3/assert"
)

// WithLogger(nil) means discard, as in every package, never a nil logger
// that panics at the first log line.
func TestNilLoggerDiscards(t *testing.T) {
	c := newConfig([]Option{WithLogger(nil)})
	assert.Assert(t, c.log != nil)
	c.log.Info("goes nowhere")
}
