package tomltext

import (
	"context"
	"errors"
	"testing"

	"gotest.tools/v3/assert"

	"github.com/kata-deploy/kata-deploy/runtime"
)

func TestConfigError(t *testing.T) {
	_, err := Decode(context.Background(), []byte("a = 1\nb = \n"))
	assert.Assert(t, err != nil)
	var ce *runtime.ConfigError
	assert.Assert(t, errors.As(ConfigError("/etc/x.toml", err), &ce))
	assert.Equal(t, ce.Path, "/etc/x.toml")
	assert.Equal(t, ce.Line, 2)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = ConfigError("/etc/x.toml", ctx.Err())
	assert.Assert(t, !errors.As(err, &ce), "a cancelled read is not the file's fault")
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorContains(t, err, "read /etc/x.toml")
}
